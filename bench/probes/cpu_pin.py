"""What pinning Taichi's CPU pool workers a core each does to layer calls made back to back.

    MPSRNN_CPU_PIN=on python bench/probes/cpu_pin.py; MPSRNN_CPU_PIN=off python bench/probes/cpu_pin.py

``mpsrnn bench`` times a layer's call after one of PyTorch's, whose OpenMP threads spin a while
after their work and keep the cores awake. A program that calls only mpsrnn, call after call,
wakes Taichi's pool from sleep each time, which is where pinning (``mpsrnn/cpu_threads.py``) shows.
Each configuration: 300 calls back to back, results left on the device, the median of the last
200 in µs a step. Run it with the pin on and off, in turns, in fresh processes (it is read at
start-up).

This project's 2-core AMD EPYC VM, 2026-12-04, three processes each, pinned / free: LSTM 256 b1 t50
7.4-7.7 / 8.0-8.7, single gate 512 b1 8.6-8.7 / 14.1-15.6, single gate 128 b4 (rows on both
threads) 3.7-4.7 / 5.7-5.8.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import mpsrnn as m  # noqa: E402
from mpsrnn import cpu_threads  # noqa: E402
from mpsrnn.benchmark import Config, build_pair  # noqa: E402

CONFIGS = (("lstm", 256, 1), ("rnn", 512, 1), ("rnn", 128, 4))
STEPS = 50


def main():
    m.init("cpu")
    line = []
    for cell, hidden, batch in CONFIGS:
        layer, _ = build_pair(Config(cell, hidden, hidden, batch, STEPS), 0, "cpu")
        x = np.random.default_rng(1).standard_normal((STEPS, batch, hidden)).astype(np.float32)
        xs = m.MatrixSequence.from_numpy(x)
        ys = layer.encode_sequence(xs)
        times = []
        for _ in range(300):
            t0 = time.perf_counter()
            layer.encode_sequence(xs, ys)
            m.backend.sync()
            times.append(time.perf_counter() - t0)
        line.append(f"{cell} {hidden} b{batch} {np.median(times[100:]) / STEPS * 1e6:6.2f}")
    print("pinned" if cpu_threads.PINNED else "free  ", " | ".join(line))


if __name__ == "__main__":
    main()
