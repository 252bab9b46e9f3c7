"""Taichi's CPU thread pool, each worker pinned to a core of its own.

Taichi runs a CPU kernel's parallel loop on a pool of worker threads, one per core, that sleep on
a condition variable between launches and take tasks as they wake (``taichi/system/threading.cpp``).
Linux may wake two of them on one core, where the second waits behind the first's whole task. The
lanes kernels' second task matters: the pipelined kernel's helper projects, then steps half of
each step's units (``kernels/sequence_lanes_pipelined.py``). This project's 2-core AMD EPYC VM,
2026-12-04, back-to-back calls of a two-task kernel whose first task steps 50 times: unpinned, the
second task started at step 50 (median of 90 calls), after the first had finished, pinned at step
0-1; ``bench/probes/cpu_split.py``'s two-thread recurrence, µs a step, median of 200 calls,
unpinned 11.4-11.6, pinned 5.5-7.6 (one thread 10.2). Layer calls back to back, µs a step, pinned
/ not (``bench/probes/cpu_pin.py``, three processes each): LSTM 256 b1 t50 7.4-7.7 / 8.0-8.7, single
gate 512 b1 8.6-8.7 / 14.1-15.6, single gate 128 b4 (rows on both threads) 3.7-4.7 / 5.7-5.8. Timed
after a PyTorch call, as ``mpsrnn bench`` does, they tie: its OpenMP threads spin after their work
and keep the cores awake.

Pinned, each worker wakes on its own core. ``pin_pool`` finds the workers among the threads that
``ti.init`` started (by the CPU time each gains while a kernel keeps every worker busy,
``kernels/pool.py``: its tasks wait for each other, so a worker that wakes behind another on one
core gets to run) and pins worker i to the i-th core the process may use. It pins only where it
finds one worker per core and the process may use every core, else it leaves the pool as it is:
pinning two workers to one core would be worse than not pinning. Linux only (``/proc``).
``MPSRNN_CPU_PIN=off`` leaves the pool alone.
"""
import os
import time

from .kernels.knobs import switch

SPIN_NS = 50_000   # CPU time a thread gains in a calibration call that marks it a worker
ATTEMPTS = 20      # calibration calls at most; a worker that starts late runs in a later one
CONFIRM = 2        # calls in which a thread must gain SPIN_NS to count as a worker
PINNED = {}        # {thread id: core} of the workers ``backend.init`` pinned


def thread_ids():
    """The ids of this process's threads (empty where ``/proc`` does not list them)."""
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def run_time_ns(tid):
    """CPU time thread ``tid`` has run, in ns (``/proc``'s schedstat), or None."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pool_workers(candidates, count):
    """Which of ``candidates`` (thread ids) run tasks of Taichi's pool: up to ``ATTEMPTS`` calls of a
    kernel of ``count`` tasks that wait for each other (a few ms at most), then each spin ~0.1 ms,
    until ``count`` of them have each gained SPIN_NS in CONFIRM calls. Those that have, and still
    exist. (A thread of Taichi's own that worked beside one call, and was gone by the end, was
    once taken for a worker on this project's VM, with a large offline cache: pinned in its place.)"""
    import numpy as np
    import taichi as ti
    from .kernels.pool import MAX_POOL_TASKS, meet_tasks
    met = ti.ndarray(ti.i32, 1 + MAX_POOL_TASKS)
    # A first call compiles the kernel, and Taichi's compile threads (started by ti.init too) would
    # gain CPU time in it: measured only after it.
    met.from_numpy(np.zeros(1 + MAX_POOL_TASKS, np.int32))
    meet_tasks(met, count, 0, 0)
    ti.sync()
    hits = {}   # {thread: calls in which it gained SPIN_NS}
    for _ in range(ATTEMPTS):
        met.from_numpy(np.zeros(1 + MAX_POOL_TASKS, np.int32))
        before = {t: run_time_ns(t) for t in candidates}
        meet_tasks(met, count, 500_000, 10_000)
        ti.sync()
        for t, ns in before.items():
            now = run_time_ns(t)
            if ns is not None and now is not None and now - ns >= SPIN_NS:
                hits[t] = hits.get(t, 0) + 1
        if sum(n >= CONFIRM for n in hits.values()) >= count:
            break
        time.sleep(0.002)   # an idle pool wakes every worker at once
    alive = thread_ids()
    return sorted(t for t, n in hits.items() if n >= CONFIRM and t in alive)


def pin_pool(candidates):
    """Pin Taichi's CPU pool workers, found among ``candidates`` (the threads ``ti.init`` started),
    one to a core. Returns {thread id: core} of those pinned (empty where it pinned none)."""
    from .kernels.pool import MAX_POOL_TASKS
    if not switch("MPSRNN_CPU_PIN", True) or not hasattr(os, "sched_setaffinity"):
        return {}
    cores = sorted(os.sched_getaffinity(0))
    count = os.cpu_count() or 1   # Taichi starts one worker per core the machine has
    if count < 2 or count > MAX_POOL_TASKS or len(cores) != count:
        return {}
    workers = pool_workers(candidates, count)
    if len(workers) != count:
        return {}
    pinned = {}
    for tid, core in zip(workers, cores):
        try:
            os.sched_setaffinity(tid, {core})
        except OSError:
            continue
        pinned[tid] = core
    return pinned
