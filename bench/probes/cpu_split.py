"""Can a lone batch row's recurrence use both CPU threads? One thread, or two that split the units.

    python bench/probes/cpu_split.py [--hidden 256] [--steps 50] [--rounds 3]

At batch 1 the lanes kernel runs a row's whole sequence on one thread (``sequence_lanes``), and the
other core idles; PyTorch's CPU LSTM has both. Here a recurrence of the lanes kernel's shape (U·h
over 32-float lane vectors, as an LSTM's four gates of 8 units, then a tanh per unit) runs:

* ``one thread``: every step's unit blocks on the calling thread (a serialized loop);
* ``two threads``: the unit blocks in two halves, one per pool task. No barrier can wait on a thread
  that never starts (a pool may run both tasks on one thread, one after the other), so each step's
  halves are *claimed*: a thread takes its own half first, then the other's if no one has
  (``atomic_max`` on the half's step count returns the old count: the claim is the thread that
  moved it), counts each half done, and waits until both are before its next step. A late thread
  finds its steps taken and catches up; the last thread out resets the counts.

Both give the same states (checked). Prints µs a step (p20, median, p80 of 200 calls, including
the pool's wake-up for the two-thread kernel) and how the halves fell to the threads.

This project's 2-vCPU VM, 2026-12-02, hidden 256, 50 steps, medians: a first run of 3 rounds, one
thread 24.2 / 23.8 / 17.2, two 22.0 / 20.4 / 20.9; a second, one thread 25.1 / 25.2 / 25.6, two
26.0 / 17.3 / 19.4; a third of 4 rounds, one thread 19.1 / 23.3 / 25.2 / 22.7, two 27.2 / 29.7 /
28.1 / 29.3. In every round the second thread took only 35-60% of
its own half: it starts late (the pool's wake-up), or the VM gives it no core of its own. No
reliable gain here, so the lanes kernel keeps a lone row on one thread.
"""
import argparse
import time

import numpy as np
import taichi as ti

LANES = 32   # floats a lane vector: 8 units x 4 gates, as the LSTM's (kernels/lanes.py)
TASK = 512   # loop iterations Taichi gives a CPU thread at a time (kernels/grid.py)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    ti.init(arch=ti.cpu, real_matrix_scalarize=False, cpu_max_num_threads=2, log_level=ti.WARN)
    H, T = a.hidden, a.steps
    nb = H // 8
    vec = ti.types.vector(LANES, ti.f32)
    u_arr = ti.types.ndarray(dtype=vec, ndim=1)
    f_arr = ti.types.ndarray(dtype=ti.f32, ndim=1)
    i_arr = ti.types.ndarray(dtype=ti.i32, ndim=1)

    @ti.func
    def blocks(U: ti.template(), hist: ti.template(), s, lo, hi):
        """Unit blocks lo .. hi-1 of step s: their four gates' products, then a tanh of their sum."""
        for u in range(lo, hi):
            acc = ti.Vector([0.0] * LANES)
            for j in range(H):
                acc += U[u * H + j] * hist[s * H + j]
            for m in ti.static(range(8)):
                hist[(s + 1) * H + u * 8 + m] = ti.tanh(acc[m] + acc[8 + m] + acc[16 + m] + acc[24 + m])

    @ti.kernel
    def one_thread(U: u_arr, hist: f_arr):
        ti.loop_config(serialize=True)
        for _ in range(1):
            for s in range(T):
                blocks(U, hist, s, 0, nb)

    @ti.kernel
    def two_threads(U: u_arr, hist: f_arr, ctl: i_arr):
        # ctl: [0], [1] steps claimed of each half; [2] halves done; [3] threads out; [4..7] halves
        # taken by (thread, half)
        ti.loop_config(block_dim=1)
        for w in range(2 * TASK):
            if w % TASK == 0:
                me = w // TASK
                for s in range(T):
                    for k in ti.static(range(2)):
                        half = (me + k) % 2
                        if ti.atomic_max(ctl[half], s + 1) == s:
                            blocks(U, hist, s, half * nb // 2, (half + 1) * nb // 2)
                            ti.atomic_add(ctl[4 + 2 * me + half], 1)
                            ti.atomic_add(ctl[2], 1)
                    while ti.atomic_add(ctl[2], 0) < 2 * (s + 1):
                        pass
                if ti.atomic_add(ctl[3], 1) == 1:
                    for c in range(4):
                        ctl[c] = 0

    rng = np.random.default_rng(0)
    U = ti.Vector.ndarray(LANES, ti.f32, nb * H)
    U.from_numpy((rng.standard_normal((nb * H, LANES)) * 0.05).astype(np.float32))
    hist = ti.ndarray(ti.f32, (T + 1) * H)
    ctl = ti.ndarray(ti.i32, 8)
    start = np.full((T + 1) * H, np.nan, np.float32)
    start[:H] = rng.standard_normal(H)
    states = []
    for run in (lambda: one_thread(U, hist), lambda: two_threads(U, hist, ctl)):
        hist.from_numpy(start)
        run()
        states.append(hist.to_numpy())
    assert np.isfinite(states[0]).all() and np.array_equal(states[0], states[1]), "the two differ"

    def per_step(run, calls=200):
        run()
        ti.sync()
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            run()
            ti.sync()
            times.append(time.perf_counter() - t0)
        return " / ".join(f"{v:6.1f}" for v in np.percentile(times, [20, 50, 80]) / T * 1e6)

    print(f"U·h and a tanh, hidden {H}, {T} steps; µs a step, p20 / median / p80")
    for r in range(a.rounds):
        print(f"round {r}  one thread   {per_step(lambda: one_thread(U, hist))}")
        taken = ctl.to_numpy()[4:].copy()
        line = per_step(lambda: two_threads(U, hist, ctl))
        taken = ctl.to_numpy()[4:] - taken
        print(f"round {r}  two threads  {line}   halves (thread 0: own, other; thread 1: other, own) "
              f"{taken[0]} {taken[1]}; {taken[2]} {taken[3]}")


if __name__ == "__main__":
    main()
