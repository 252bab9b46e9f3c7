"""How much of cuDNN's speed is its TF32 tensor cores: PyTorch timed with TF32 on and off.

    python bench/probes/tf32.py            # CUDA with PyTorch; the stacks suite by default
    python bench/probes/tf32.py --config lstm:1024:4:25

PyTorch lets cuDNN run its float32 RNN products on TF32 tensor cores by default
(``torch.backends.cudnn.allow_tf32``); mpsrnn's kernels run float32 on the CUDA cores, since Taichi
has no way to the tensor cores. For each configuration this times both libraries (``mpsrnn bench``'s
timing) with TF32 allowed and then forbidden, alternating for ``--rounds`` rounds in one process,
and prints the medians: where cuDNN beats mpsrnn with TF32 but not without it, the gap on that
configuration is the tensor cores'; where it beats mpsrnn either way, the gap is elsewhere.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import mpsrnn  # noqa: E402
from mpsrnn.benchmark import SUITES, time_config  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab import parse_config  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", action="append", help="cell:hidden:batch:steps[:layers][:bidi]; default: stacks")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    mpsrnn.init("cuda")
    import torch
    configs = [parse_config(c) for c in a.config] if a.config else SUITES["stacks"]
    times = {}
    for rnd in range(a.rounds):
        for cfg in configs:
            for tf32 in (True, False):
                torch.backends.cudnn.allow_tf32 = tf32
                r = time_config(cfg, repeats=a.repeats, warmup=2)
                times.setdefault((cfg.label, tf32), []).append((r["mpsrnn"]["median_us"], r["torch"]["median_us"]))
                print(f"round {rnd}  {cfg.label:30s} TF32 {'on ' if tf32 else 'off'}  mpsrnn "
                      f"{r['mpsrnn']['median_us']:8.2f}  PyTorch {r['torch']['median_us']:8.2f} us/step", flush=True)
    torch.backends.cudnn.allow_tf32 = True
    print("\nmedian over rounds, us a step: mpsrnn | PyTorch TF32 on | PyTorch TF32 off")
    for cfg in configs:
        ours = np.median([t[0] for tf32 in (True, False) for t in times[(cfg.label, tf32)]])
        on = np.median([t[1] for t in times[(cfg.label, True)]])
        off = np.median([t[1] for t in times[(cfg.label, False)]])
        print(f"{cfg.label:30s} {ours:8.2f} | {on:8.2f} | {off:8.2f}")


if __name__ == "__main__":
    main()
