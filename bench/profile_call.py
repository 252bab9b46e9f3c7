"""Where one encode_sequence call spends its time: each planned dispatch, and the host.

    python bench/profile_call.py --arch cuda --cell lstm --hidden 512 --batch 1 --steps 25

Times the whole call (as `mpsrnn bench` does), then replays the plan's dispatches
one at a time with a device synchronisation around each, so the per-kernel
figures are device time plus one launch each; the difference to the whole call
is host-side overhead (argument checks, plan lookup, launches).
"""
import argparse
import os
import sys
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mpsrnn  # noqa: E402
from mpsrnn.backend import sync  # noqa: E402
from mpsrnn.benchmark import Config, build_pair  # noqa: E402


def plan_and_bindings(layer, x, ys):
    """The plan of ``layer.encode_sequence(x, ys)`` and the values one such call binds to it (its
    slots: the arrays and views of x, ys, states), for running the plan, or its dispatches, alone."""
    layer.encode_sequence(x, ys)   # plans it, if not yet
    plan = next(iter(layer._plans._plans.values()))
    run = plan.run
    values = {}

    def keep(v):
        values.update(v)
        run(v)
    plan.run = keep
    try:
        layer.encode_sequence(x, ys)
    finally:
        plan.run = run
    sync()
    return plan, values


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default=None)
    p.add_argument("--cell", default="lstm")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cprofile", type=int, default=0, metavar="N",
                   help="also print the N host functions with the most own time over 100 calls")
    a = p.parse_args()
    arch = mpsrnn.init(a.arch)
    layer, _ = build_pair(Config(a.cell, a.hidden, a.hidden, a.batch, a.steps, a.layers))
    x = mpsrnn.MatrixSequence.from_numpy(
        np.random.default_rng(0).standard_normal((a.steps, a.batch, a.hidden)).astype(np.float32))
    ys = layer.encode_sequence(x)
    plan, captured = plan_and_bindings(layer, x, ys)
    whole = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        layer.encode_sequence(x, ys)
        sync()
        whole.append(time.perf_counter() - t0)
    per = defaultdict(list)
    for _ in range(a.repeats):
        for d in plan.program.dispatches:
            name = getattr(d.kernel, "__name__", None) or type(d.kernel).__name__
            sync()
            t0 = time.perf_counter()
            d.kernel(*d.bound_args(captured))
            sync()
            per[name].append(time.perf_counter() - t0)
    total = float(np.median(whole))
    print(f"# {arch} {a.cell} hidden={a.hidden} batch={a.batch} steps={a.steps} layers={a.layers} "
          f"recurrence={plan.recurrences} "
          f"launch={layer._launch.name}")
    print(f"whole call            {total * 1e6:10.1f} us  ({total / a.steps * 1e6:8.2f} us/step)")
    kernels = 0.0
    for name, ts in per.items():
        t = float(np.median(ts)) * len(ts) / a.repeats
        kernels += t
        print(f"  {name:20s}{t * 1e6:10.1f} us  ({t / a.steps * 1e6:8.2f} us/step, {len(ts) // a.repeats} launches)")
    print(f"  host and launches   {(total - kernels) * 1e6:10.1f} us (whole call minus the kernels above; "
          f"negative when replaying one by one costs more)")
    if a.cprofile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(100):
            layer.encode_sequence(x, ys)
            sync()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(a.cprofile)


if __name__ == "__main__":
    main()
