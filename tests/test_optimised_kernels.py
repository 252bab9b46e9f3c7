"""The CPU kernels as users run them: compiled with Taichi's own IR optimisations.

The CPU test session compiles without them (``conftest.py``: they are nine tenths of a cold
compile), so this test runs each cell's default plan in a fresh process that compiles with them
(``MPSRNN_ADVANCED_OPTIMIZATION=on``), against the float64 reference: a fault that only the
optimised IR has would show here. Where the session already compiles with them (a GPU, or the knob
set on) every other test covers this one's ground.
"""
import subprocess
import sys
import textwrap

import pytest

from builders import child_env
from mpsrnn import backend

OPTIMISED = textwrap.dedent("""
    import os, sys
    import numpy as np
    sys.path.insert(0, os.environ["MPSRNN_TESTS"])
    import mpsrnn as m
    import reference as R
    from builders import assert_seq_close, descriptor, sequence
    from mpsrnn import backend
    m.init("cpu")
    assert backend._optimizes("cpu")
    rng = np.random.default_rng(int(os.environ["MPSRNN_TEST_SEED"]))
    for kind, opts, n_in, hidden, rows in %r:
        d = descriptor(kind, rng, n_in, hidden, use_float32_weights=True, **opts)
        layer = m.RNNMatrixInferenceLayer(d)
        for _ in range(2):   # the plan again, on other inputs
            xs = sequence(rng, rows, n_in)
            assert_seq_close(layer.encode_sequence(xs), R.encode_sequence([d], xs)[0], what=f"{kind} {hidden} {opts}")
        print("ran", kind, [r for p in layer._plans._plans.values() for r in p.recurrences])
    print("passed")
""")


def test_default_cpu_plans_compiled_with_optimisations(arch, rng):
    if arch != "cpu" or backend._optimizes(arch):
        pytest.skip("this session's kernels are compiled with Taichi's optimisations already")
    # the usual neurons (vector gate math), a diagonal peephole, batches that shrink, hidden sizes
    # that leave a partial last block of lanes; and the kernel of other neurons (unit by unit) in its
    # smallest form, the single gate's
    scenarios = [("lstm", {"peephole": "diagonal"}, 9, 37, [3, 3, 1]), ("gru", {}, 6, 19, [3, 2, 2]),
                 ("single", {}, 4, 18, [4, 3, 1]), ("single", {"neurons": "rectified"}, 5, 11, [2, 2, 1])]
    env = child_env(MPSRNN_ADVANCED_OPTIMIZATION="on", MPSRNN_ARCH="cpu",
                    MPSRNN_TEST_SEED=str(int(rng.integers(1 << 30))))
    done = subprocess.run([sys.executable, "-c", OPTIMISED % (scenarios,)], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0 and "passed" in done.stdout, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.count("ran ") == len(scenarios)
