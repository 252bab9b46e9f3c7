"""Where a layer call's time goes on the host: the Python before the launch, the launch, the wait.

    python bench/probes/host_time.py --arch cuda --config lstm:512:1:25 --config gru:512:1:1

For each config (``ab.py``'s cell:hidden:batch:steps[:layers], input = hidden), medians over 200 calls,
in µs: ``python``, ``encode_sequence`` with its plan's run stubbed out (argument checks, the plan
lookup, the bindings); ``launch``, the plan's run alone (``ti.graph``'s run: Taichi's launcher, one
pass per dispatch; on a GPU it returns before the kernels end); ``wait``, the synchronisation after
it (the kernels' remaining time); ``whole``, a call and its synchronisation as ``mpsrnn bench``
times it; ``idle wait``, a synchronisation with nothing queued. On a GPU the device starts only
when the first launch reaches it, so ``python`` and the first dispatch's share of ``launch`` add to
the kernels' time.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mpsrnn  # noqa: E402
from ab import parse_config  # noqa: E402   (bench/probes/ab.py, this script's folder)
from mpsrnn.backend import sync  # noqa: E402
from mpsrnn.benchmark import build_pair  # noqa: E402
from profile_call import plan_and_bindings  # noqa: E402   (bench/profile_call.py)

CALLS = 200


def medians_us(*calls):
    """Each call's median time over CALLS rounds, in µs; a round times the calls one after another."""
    times = [[] for _ in calls]
    for _ in range(CALLS):
        for call, t in zip(calls, times):
            t0 = time.perf_counter()
            call()
            t.append(time.perf_counter() - t0)
    return [float(np.median(t)) * 1e6 for t in times]


def median_us(call):
    return medians_us(call)[0]


def one_config(text):
    cfg = parse_config(text)
    if cfg.bidirectional:
        raise SystemExit(f"--config {text}: encode_sequence's calls only (no bidi)")
    layer, _ = build_pair(cfg)
    xs = mpsrnn.MatrixSequence.from_numpy(
        np.random.default_rng(0).standard_normal((cfg.steps, cfg.batch, cfg.input)).astype(np.float32))
    ys = layer.encode_sequence(xs)
    plan, values = plan_and_bindings(layer, xs, ys)
    run = plan.run
    plan.run = lambda v: None
    python = median_us(lambda: layer.encode_sequence(xs, ys))
    plan.run = run
    launch, wait = [], []
    for _ in range(CALLS):
        t0 = time.perf_counter()
        run(values)
        t1 = time.perf_counter()
        sync()
        launch.append(t1 - t0)
        wait.append(time.perf_counter() - t1)
    whole = median_us(lambda: (layer.encode_sequence(xs, ys), sync()))
    print(f"{cfg.label:28s} python {python:7.1f}  launch {np.median(launch) * 1e6:7.1f}  wait "
          f"{np.median(wait) * 1e6:7.1f}  whole {whole:7.1f}  idle wait {median_us(sync):5.1f}  "
          f"({len(plan.program.dispatches)} dispatches)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default=None)
    p.add_argument("--config", action="append", required=True)
    a = p.parse_args()
    mpsrnn.init(a.arch)
    for text in a.config:
        one_config(text)


if __name__ == "__main__":
    main()
