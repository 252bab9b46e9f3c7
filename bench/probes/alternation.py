"""What a call costs right after the peer's call, against calls back to back.

    python bench/probes/alternation.py --arch cuda --config gru:512:1:1 --config lstm:1024:1:25

``mpsrnn bench`` times our call and PyTorch's alternately. On the H200, GRU 512 b1 t1 took 75-130
µs a call there (``ab.py``), where ``host_time.py``'s calls back to back took 53-64 µs. This probe
asks where that difference comes from. For each config, medians over ``--calls`` calls (200), in
µs, of a call (its synchronisation included) of each side (on the CPU the peer is PyTorch's CPU
layer):

- ``back to back``: right after the same side's own call;
- ``after peer``: right after the other side's call (the benchmark's order);
- ``after idle``: after the host spins for as long as the other side's call takes, the GPU idle
  (the device's or driver's state after a gap);
- ``after sweep``: after the host reads 64 MiB (its caches emptied of the call's code and data).

A config is ``ab.py``'s cell:hidden:batch:steps[:layers] (input = hidden).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import mpsrnn  # noqa: E402
from ab import layer_calls  # noqa: E402   (bench/probes/ab.py, this script's folder)

SWEEP = np.ones(64 << 20, np.uint8)


def timed(call):
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def one_config(text, gpu, calls):
    cfg, ours, theirs = layer_calls(text, "cuda" if gpu else "cpu")
    sides = {"mpsrnn": (ours, theirs), "PyTorch": (theirs, ours)}
    for call, other in sides.values():
        for _ in range(10):
            call()
            other()
    other_s = {name: float(np.median([timed(other) for _ in range(50)])) for name, (_, other) in sides.items()}
    befores = {"back to back": lambda name, call, other: call(),
               "after peer": lambda name, call, other: other(),
               "after idle": lambda name, call, other: spin(other_s[name]),
               "after sweep": lambda name, call, other: int(SWEEP.sum(dtype=np.uint64))}
    got = {(name, b): [] for name in sides for b in befores}
    for _ in range(calls):   # the cases interleaved, so a drift of the machine reaches them all alike
        for before_name, before in befores.items():
            for name, (call, other) in sides.items():
                before(name, call, other)
                got[(name, before_name)].append(timed(call))
    print(f"# {cfg.label}: µs a call, median of {calls}")
    print(f"  {'':8s} " + " ".join(f"{b:>13s}" for b in befores))
    for name in sides:
        print(f"  {name:8s} " + " ".join(f"{np.median(got[(name, b)]) * 1e6:13.1f}" for b in befores), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="cuda")
    p.add_argument("--config", action="append", required=True)
    p.add_argument("--calls", type=int, default=200)
    a = p.parse_args()
    arch = mpsrnn.init(a.arch)
    for text in a.config:
        one_config(text, arch in ("cuda", "vulkan"), a.calls)


if __name__ == "__main__":
    main()
