"""Recurrence kernels side by side: several configurations, each timed with every recurrence asked
for, in one process (one Taichi start-up, one compile per kernel), mpsrnn next to PyTorch.

    python bench/probes/recurrences.py --arch cuda --recurrence "" tiles --configs lstm:2048:1:25 gru:2816:4:187

A configuration is cell:hidden:batch:steps (input = hidden). An empty recurrence is the
scheduler's own choice. Each row is ``mpsrnn bench``'s format; the recurrence used is at its end.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import mpsrnn
from mpsrnn.benchmark import Config, format_row, time_config


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default=None)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--recurrence", nargs="*", default=[""])
    p.add_argument("--configs", nargs="+", required=True, help="cell:hidden:batch:steps ...")
    a = p.parse_args()
    arch = mpsrnn.init(a.arch)
    print(f"# {arch}: {mpsrnn.backend.device_name()}", flush=True)
    for spec in a.configs:
        cell, hidden, batch, steps = spec.split(":")
        cfg = Config(cell, int(hidden), int(hidden), int(batch), int(steps))
        for recurrence in a.recurrence:
            os.environ["MPSRNN_RECURRENCE"] = recurrence
            print(format_row(time_config(cfg, repeats=a.repeats)), flush=True)


if __name__ == "__main__":
    main()
