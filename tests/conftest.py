"""Test session set-up: one Taichi init per session, fresh random data per test.

The arch is MPSRNN_ARCH when set (``mpsrnn check --arch metal`` sets it), else the
best one here. Workspaces are poisoned with NaN so a kernel that reads memory no
step wrote shows up as NaN in the results.
"""
import os
import sys

import warnings
import zlib

import numpy as np
import pytest

warnings.filterwarnings("ignore", category=DeprecationWarning, module="taichi")  # Taichi's own, at import

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mpsrnn  # noqa: E402
from mpsrnn import backend  # noqa: E402
from mpsrnn import matrix  # noqa: E402
from mpsrnn.scheduler import plans  # noqa: E402

# On the CPU a cold run's time is Taichi compiling, nine tenths of it its own IR optimisations (the
# lanes LSTM kernel: 79 s with them, 8 s without, on a 2-core VM), and a fresh machine's cache is
# cold. So the CPU tests compile without them unless MPSRNN_ADVANCED_OPTIMIZATION says otherwise;
# test_optimised_kernels checks the kernels as users run them, with them (``backend._optimizes``).
if backend.resolve_arch() == "cpu":
    os.environ.setdefault("MPSRNN_ADVANCED_OPTIMIZATION", "off")

plans.POISON_WORKSPACES = True
matrix.RECYCLED.poison = True   # recycled output arrays start as NaN too: what a layer leaves unwritten shows


def pytest_report_header(config):
    return f"mpsrnn arch: {mpsrnn.init()}"


def pytest_collection_modifyitems(config, items):
    """``MPSRNN_TEST_SHARD=i/n`` keeps the i-th of n shards of the tests (by a hash of each test's
    id, the same in every process), so that n processes run a long suite side by side: on a GPU
    machine the time is mostly Taichi compiling on one core a process (``bench/device_session.sh``)."""
    shard = os.environ.get("MPSRNN_TEST_SHARD", "").strip()
    if not shard:
        return
    try:
        i, n = (int(v) for v in shard.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        raise pytest.UsageError(f"MPSRNN_TEST_SHARD: expected i/n with 0 <= i < n, got {shard!r}") from None
    keep, drop = [], []
    for item in items:
        (keep if zlib.crc32(item.nodeid.encode()) % n == i else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def arch():
    return mpsrnn.init()


@pytest.fixture
def rng(request):
    """A generator with a fresh seed (printed, so a failure can be replayed with MPSRNN_TEST_SEED)."""
    seed = int(os.environ.get("MPSRNN_TEST_SEED", np.random.SeedSequence().entropy % 2**32))
    print(f"random seed {seed} (replay: MPSRNN_TEST_SEED={seed})")
    return np.random.default_rng(seed)
