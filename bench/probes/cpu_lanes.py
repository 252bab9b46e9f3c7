"""The CPU's U·h in lanes: the LSTM's four gates in four vectors of 8, or side by side in one of 32.

    python bench/probes/cpu_lanes.py [--hidden 256] [--rounds 6]

The lanes kernel's recurrent product (``kernels/lanes.py``) for an LSTM of ``--hidden`` units, one
thread, as two layouts of the same U:

* ``apart``: a vector of 8 floats per (unit block, gate), the four gates' vectors of a column a
  gate's worth of columns apart: four loads a column, each with its own index arithmetic;
* ``together``: a vector of 32 floats per (unit block, column), the four gates side by side
  (``lanes.lane_group``): one load a column;
* ``two sums``: ``together`` with two partial sums, over even and odd columns, added at the end:
  each sum's chain of additions is half as long, and they overlap (without fast-math LLVM keeps
  one chain, each addition waiting on the one before).

``apart`` and ``together`` add the terms in the same order, so their results are equal; each is
checked against NumPy. Rounds alternate the layouts; prints µs per product, min and median of 15
timings of 50 products. At hidden 256, U (1 MiB) does not fit the Zen 3 VM's 512 KiB L2; it fits
the 2 MiB of the Xeon VM of 2026-12-02 (twenty-first session), where 4 rounds gave medians of
apart 14.30, together 10.75, two sums 10.66 µs: U read at ~100 GB/s, so the sums gained nothing.
"""
import argparse
import time

import numpy as np
import taichi as ti

REPEATS = 50   # products a timing


def build(hidden):
    G, H, nb = 4, hidden, hidden // 8
    rng = np.random.default_rng(0)
    U = rng.standard_normal((G * H, H)).astype(np.float32)
    h = rng.standard_normal(H).astype(np.float32)
    apart = U.reshape(G, nb, 8, H).transpose(1, 0, 3, 2).reshape(-1, 8).copy()
    together = U.reshape(G, nb, 8, H).transpose(1, 3, 0, 2).reshape(-1, 32).copy()
    arrays = {}
    for name, packed in (("apart", apart), ("together", together)):
        a = ti.Vector.ndarray(packed.shape[1], ti.f32, packed.shape[0])
        a.from_numpy(packed)
        arrays[name] = a
    v = ti.ndarray(ti.f32, H + 7)
    v.from_numpy(np.concatenate([np.zeros(7, np.float32), h]))   # h at a run-time offset, as in the kernel
    return arrays, v, (U.astype(np.float64) @ h).reshape(G, H)


@ti.kernel
def product_apart(lanes: ti.types.ndarray(ndim=1), v: ti.types.ndarray(dtype=ti.f32, ndim=1),
                  y: ti.types.ndarray(dtype=ti.f32, ndim=1), H: ti.i32, v0: ti.i32):
    ti.loop_config(serialize=True)
    for _ in range(1):
        for rep in range(REPEATS):
            for u in range(H // 8):
                acc = [ti.Vector([0.0] * 8) for _ in ti.static(range(4))]
                for j in range(H):
                    vj = v[v0 + j]
                    for g in ti.static(range(4)):
                        acc[g] += lanes[(u * 4 + g) * H + j] * vj
                for g in ti.static(range(4)):
                    for m in ti.static(range(8)):
                        y[g * H + u * 8 + m] = acc[g][m]


@ti.kernel
def product_together(lanes: ti.types.ndarray(ndim=1), v: ti.types.ndarray(dtype=ti.f32, ndim=1),
                     y: ti.types.ndarray(dtype=ti.f32, ndim=1), H: ti.i32, v0: ti.i32, parts: ti.template()):
    """``together`` with ``parts`` partial sums (column j into sum j % parts), added at the end."""
    ti.loop_config(serialize=True)
    for _ in range(1):
        for rep in range(REPEATS):
            for u in range(H // 8):
                acc = [ti.Vector([0.0] * 32) for _ in ti.static(range(parts))]
                for jj in range(H // parts):
                    for p in ti.static(range(parts)):
                        j = jj * parts + p
                        acc[p] += lanes[u * H + j] * v[v0 + j]
                for p in ti.static(range(1, parts)):
                    acc[0] += acc[p]
                for g in ti.static(range(4)):
                    for m in ti.static(range(8)):
                        y[g * H + u * 8 + m] = acc[0][g * 8 + m]


def timed(kernel, lanes, v, y, hidden, ref):
    kernel(lanes, v, y, hidden, 7)
    ti.sync()
    err = np.abs(y.to_numpy().reshape(ref.shape) - ref).max() / np.abs(ref).max()
    assert err < 1e-5, err
    times = []
    for _ in range(15):
        t0 = time.perf_counter()
        kernel(lanes, v, y, hidden, 7)
        ti.sync()
        times.append((time.perf_counter() - t0) / REPEATS * 1e6)
    return min(times), float(np.median(times))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--rounds", type=int, default=6)
    a = p.parse_args()
    assert a.hidden % 8 == 0, "--hidden: a multiple of 8"
    ti.init(arch=ti.cpu, fast_math=False, cpu_max_num_threads=1, log_level=ti.WARN, real_matrix_scalarize=False)
    arrays, v, ref = build(a.hidden)
    y = ti.ndarray(ti.f32, 4 * a.hidden)
    medians = {"apart": [], "together": [], "two sums": []}
    for rnd in range(a.rounds):
        for name, kernel in (("apart", product_apart), ("together", lambda *a: product_together(*a, 1)),
                             ("two sums", lambda *a: product_together(*a, 2))):
            lo, med = timed(kernel, arrays["together" if name == "two sums" else name], v, y, a.hidden, ref)
            medians[name].append(med)
            print(f"round {rnd}  {name:9s} min {lo:7.2f}  median {med:7.2f} us a product", flush=True)
    print("median of rounds' medians: " + ", ".join(f"{k} {np.median(m):.2f}" for k, m in medians.items()))


if __name__ == "__main__":
    main()
