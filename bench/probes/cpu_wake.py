"""What waking Taichi's CPU thread pool costs: one kernel of two tasks (one per pool thread), run
back to back or after the pool has idled.

    python bench/probes/cpu_wake.py [--threads 2]

Each task spins through ``n`` dependent sines, so two threads should take one task's time and one
thread two. A task is 512 loop iterations (``kernels/grid.py``: Taichi hands a CPU thread at least
that many), only the first of which works. Prints the median and min µs of 30 calls per idle time.

This project's VM, 2026-12-02 (twenty-first session: an Intel Xeon with AVX-512, 2 vCPUs on two
cores), median µs, back to back / after 2 ms idle / after 20 ms, two threads (one): n = 10 000,
366-384 / 325-356 / 567-580 (399 / 328 / 388); n = 40 000, 618-633 / 698-701 / 907-941 (1145 /
1156 / 1154). So the second thread starts ~200 µs late even back to back, later after an idle
pool, and a parallel dispatch pays only past ~400 µs of work a thread: the lanes kernel of RNN
128 b4 t50 (two rows a thread, ~580 µs a call) took 7.1-7.8 µs a step in some runs of ``mpsrnn
bench`` and 11-13 in others, 11.0-12.6 on one thread.
"""
import argparse
import time

import numpy as np
import taichi as ti


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    ti.init(arch=ti.cpu, cpu_max_num_threads=a.threads, log_level=ti.WARN, offline_cache=False, fast_math=False)

    @ti.kernel
    def two_tasks(out: ti.types.ndarray(ndim=1), n: ti.i32):
        ti.loop_config(block_dim=1)
        for t in range(1024):
            if t % 512 == 0:
                s = 0.0
                for _ in range(n):
                    s = ti.sin(s) + 1.0
                out[t // 512] = s

    out = ti.ndarray(ti.f32, 2)
    two_tasks(out, 10)
    ti.sync()
    for n in (10_000, 40_000):
        for idle in (0.0, 0.002, 0.02):
            times = []
            for _ in range(30):
                if idle:
                    time.sleep(idle)
                t0 = time.perf_counter()
                two_tasks(out, n)
                ti.sync()
                times.append((time.perf_counter() - t0) * 1e6)
            print(f"n={n:6d}  idle {idle * 1e3:4.0f} ms before: median {np.median(times):7.0f} µs, "
                  f"min {min(times):7.0f}")


if __name__ == "__main__":
    main()
