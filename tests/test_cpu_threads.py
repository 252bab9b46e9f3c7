"""Taichi's CPU pool workers, pinned one to a core (``mpsrnn.cpu_threads``)."""
import os
import threading

import pytest

import mpsrnn as m
from mpsrnn import cpu_threads
from mpsrnn.kernels.knobs import switch
from mpsrnn.kernels.pool import MAX_POOL_TASKS

ARCH = m.init()
pytestmark = pytest.mark.skipif(ARCH != "cpu", reason="Taichi's CPU thread pool")

PINNABLE = (hasattr(os, "sched_getaffinity") and 2 <= (os.cpu_count() or 1) <= MAX_POOL_TASKS
            and len(os.sched_getaffinity(0)) == os.cpu_count() and bool(cpu_threads.thread_ids())
            and switch("MPSRNN_CPU_PIN", True))


@pytest.mark.skipif(not PINNABLE, reason="pins only where the process may use every core (Linux), unless told not to")
def test_pool_workers_pinned_one_to_a_core():
    """``init`` pinned one thread to each core the process may use, the calling thread not among
    them (that they are the pool's workers: below)."""
    pinned = cpu_threads.PINNED
    assert len(pinned) == os.cpu_count()
    assert sorted(pinned.values()) == sorted(os.sched_getaffinity(0))
    assert threading.get_native_id() not in pinned
    for tid, core in pinned.items():
        assert os.sched_getaffinity(tid) == {core}


@pytest.mark.skipif(not PINNABLE, reason="pins only where the process may use every core (Linux), unless told not to")
def test_pool_workers_found_only_among_candidates():
    """The calibration names the threads that run the pool's tasks among those it is given: every
    thread but the calling one (which launches the kernels, so it gains CPU time too: ``init`` gives
    it only the threads ``ti.init`` started) gives the pinned workers; all but one worker gives the
    others."""
    me = threading.get_native_id()
    workers = cpu_threads.pool_workers(cpu_threads.thread_ids() - {me}, os.cpu_count())
    assert set(workers) == set(cpu_threads.PINNED)
    rest = set(workers[1:])
    assert cpu_threads.pool_workers(rest, os.cpu_count()) == sorted(rest)


def test_pin_off_leaves_the_pool(monkeypatch):
    """``MPSRNN_CPU_PIN=off``: no thread pinned, no affinity changed."""
    monkeypatch.setenv("MPSRNN_CPU_PIN", "off")
    threads = cpu_threads.thread_ids()
    before = {t: os.sched_getaffinity(t) for t in threads} if hasattr(os, "sched_getaffinity") else {}
    assert cpu_threads.pin_pool(threads) == {}
    assert all(os.sched_getaffinity(t) == a for t, a in before.items())
