"""Does turning back each step keep part of U in L2? One thread, U·h in the LSTM's lanes, two orders.

    python bench/probes/cpu_zigzag.py [--hidden 256] [--steps 50] [--rounds 5]

The lanes kernel walks U one unit block at a time (``kernels/lanes.py``: a block is 16 units' four
gates, 64 KiB at hidden 256). LSTM 256's U is 1 MiB, as large as a core's L2 on this project's VMs.
Walking the blocks in one order every step evicts each block before the next step wants it, so
every step streams all of U from L3. Walking back on odd steps (``lanes.zigzag_block``) starts each
step with the blocks the last one read most recently. Both orders give the same sums (checked);
prints µs a step (median of 50 calls) per round, each round timing both.

This project's AMD EPYC VM (AVX-512, 1 MiB L2 a core), 2026-12-04, hidden 256, µs a step: one order
9.7-10.5, turning back 8.1-8.8 (two processes); hidden 224 (U 0.875 MiB), 6.8-7.0 / 6.0-6.1.
"""
import argparse
import time

import numpy as np
import taichi as ti

UNITS = 16        # units of a block (a lane vector's width with AVX-512)
WIDTH = 4 * UNITS  # floats of a block's vector: its units' four gates


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    ti.init(arch=ti.cpu, real_matrix_scalarize=False, cpu_max_num_threads=2, log_level=ti.WARN)
    H, T = a.hidden, a.steps
    nb = H // UNITS
    vec = ti.types.vector(WIDTH, ti.f32)

    @ti.func
    def block(U: ti.template(), hist: ti.template(), s, u):
        acc = ti.Vector([0.0] * WIDTH)
        for j in range(H):
            acc += U[u * H + j] * hist[s * H + j]
        for m in ti.static(range(UNITS)):
            g = [acc[k * UNITS + m] for k in ti.static(range(4))]
            hist[(s + 1) * H + u * UNITS + m] = ti.tanh(g[0] + g[1] + g[2] + g[3])

    @ti.kernel
    def run(U: ti.types.ndarray(dtype=vec, ndim=1), hist: ti.types.ndarray(dtype=ti.f32, ndim=1), zigzag: ti.i32):
        ti.loop_config(serialize=True)
        for _ in range(1):
            for s in range(T):
                for k in range(nb):
                    u = k
                    if zigzag != 0 and s % 2 == 1:
                        u = nb - 1 - k
                    block(U, hist, s, u)

    rng = np.random.default_rng(0)
    U = ti.ndarray(vec, nb * H)
    U.from_numpy((rng.standard_normal((nb * H, WIDTH)) * 0.05).astype(np.float32))
    hist = ti.ndarray(ti.f32, (T + 1) * H)
    start = np.full((T + 1) * H, np.nan, np.float32)
    start[:H] = rng.standard_normal(H)
    states = []
    for zigzag in (0, 1):
        hist.from_numpy(start)
        run(U, hist, zigzag)
        states.append(hist.to_numpy())
    assert np.isfinite(states[0]).all() and np.array_equal(states[0], states[1]), "the two orders differ"

    print(f"U·h of an LSTM's lanes, hidden {H}, {T} steps, one thread: µs a step, median of 50 calls")
    for r in range(a.rounds):
        line = []
        for zigzag in (0, 1):
            times = []
            for i in range(60):
                t0 = time.perf_counter()
                run(U, hist, zigzag)
                times.append(time.perf_counter() - t0)
            line.append(f"{('one order', 'turning back')[zigzag]} {np.median(times[10:]) / T * 1e6:6.2f}")
        print(f"round {r}  " + "   ".join(line))


if __name__ == "__main__":
    main()
