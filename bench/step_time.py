"""Per-step time of one recurrent configuration, mpsrnn next to PyTorch, for each launch strategy.

    python bench/step_time.py --arch cuda --cell lstm --hidden 512 --batch 16 --steps 100

Both run in this process on the same device (PyTorch: cuDNN on a GPU, its CPU
kernels otherwise), alternately, after warm-up, synchronised; see
mpsrnn/benchmark.py for the method and the FLOP count.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mpsrnn  # noqa: E402
from mpsrnn.benchmark import Config, format_row, time_config  # noqa: E402
from mpsrnn.scheduler import STRATEGIES  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default=None)
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    p.add_argument("--input", type=int, default=None)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--launch", nargs="*", default=sorted(STRATEGIES))
    p.add_argument("--recurrence", nargs="*", default=[""], help="force recurrence kernels (default: the scheduler's)")
    p.add_argument("--json", default=None, help="append the records to this JSON-lines file")
    a = p.parse_args()
    arch = mpsrnn.init(a.arch)
    print(f"# {arch}: {mpsrnn.backend.device_name()}", flush=True)
    for recurrence in a.recurrence:
        os.environ["MPSRNN_RECURRENCE"] = recurrence
        for launch in a.launch:
            os.environ["MPSRNN_LAUNCH"] = launch
            r = time_config(Config(a.cell, a.input or a.hidden, a.hidden, a.batch, a.steps, a.layers),
                            repeats=a.repeats)
            print(format_row(r) + (f"   max|diff| vs torch {r['max_abs_diff_vs_torch']:.2e}"
                                   if "max_abs_diff_vs_torch" in r else ""), flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
