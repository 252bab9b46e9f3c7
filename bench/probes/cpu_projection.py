"""Can the CPU's input projection (XW, the smoke suite's miss) go faster in Taichi? Seven layouts.

    python bench/probes/cpu_projection.py [--rounds 12] [--lanes 8|16]

The product of LSTM 256's W (1024 x 256, lane-packed as in ``kernels/lanes.py``) with 56 rows of x,
one thread, timed as:

* ``1 block x 8 rows``: the kernel's scheme before 2026-12-02: one weight vector (8 output rows)
  against 8 rows of x, each x element loaded through its own 32-bit index (Taichi sign-extends it
  at every load, and LLVM cannot hoist that, since the i32 sum may wrap);
* ``blocks outer``: the same with the loops swapped, each 8 KiB block of W against every row group
  in turn, so W streams from L3 once rather than once a row group (1 MiB, over this core's L2);
* ``4 blocks x 2 rows``: the kernel's scheme now (``projection.project_lanes``): four weight vectors
  against two rows, so each x element loaded serves 32 multiply-adds rather than 8; ``4 x 4``,
  ``4 x 8`` and ``8 x 4``: more accumulators, for CPUs with 32 vector registers (AVX-512);
* ``pre-broadcast``: x packed first (``pack``, timed apart) as vectors of 4 rows x 8 equal lanes,
  so the inner loop is two weight vectors and one x vector a step, 8 lane-wise products;
* ``numpy``: the same product by NumPy's BLAS on one thread (OPENBLAS_NUM_THREADS=1 is set here),
  for scale: it has FMA, which Taichi's CPU code cannot use without fast-math;
* the hand-off that giving the product to NumPy would need: ``x to numpy`` (``Ndarray.to_numpy``
  of x) and ``xw from numpy`` (a kernel copying a NumPy array into a Taichi ndarray, as the
  workspace would take the product; Taichi 1.7 gives no zero-copy view of an ndarray on the CPU).

The rows of x start at offsets read at run time (``starts``), as the kernels read them from the
frame: with offsets known when compiling, LLVM folds the index arithmetic away and the 8-row
scheme looks twice as fast as it runs in the kernel. Rounds alternate the layouts, so the VM's
drift shows as spread rather than as a difference; prints the min and median of each.

This project's 2-vCPU VM (min / median µs). 2026-12-01, offsets known when compiling: the 8-row
scheme 991 / 1352 and 841 / 869; pre-broadcast 917 / 1063 and 858 / 938, plus 210 / 230 and 179 /
215 to pack; numpy 433 / 507. The hand-off (twelfth session) costs about what NumPy's product saves.
2026-12-02, offsets at run time, 10 rounds: 1 block x 8 rows 1249 / 1817, blocks outer 1350 / 1850,
4 blocks x 2 rows 881 / 1042, pre-broadcast 824 / 1032 plus 187 / 243 to pack, numpy 361 / 482.
With fast-math on (FMA allowed) no layout ran faster. 2026-12-02 (twenty-first session), an Intel
Xeon VM with AVX-512 (Taichi's JIT emits zmm code there), 6 rounds: 1 block x 8 rows 880 / 895,
4 blocks x 2 rows 535 / 562, 4 x 4 666 / 682, 4 x 8 634 / 640, 8 x 4 663 / 674, pre-broadcast 533
/ 546, numpy 293 / 319: with 32 vector registers, more rows a weight load still lost.
2026-12-02 (twenty-second session), same VM type, 5 rounds, ``--lanes 16`` / 8 (min µs): 1 block x 8
rows 768 / 1017, 4 blocks x 2 rows 514 / 732, 4 x 4 617 / 778, 4 x 8 590 / 763, 2 x 2 540 / 804,
2 x 4 678 / 868, 8 x 4 615 / 834, pre-broadcast 586 / 639, numpy 338 / 374: 16 lanes take 30% off
the kernel's blocking, which stays the best of these. bench/analysis.md has the rest.
"""
import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import taichi as ti  # noqa: E402

G, H, K, N = 4, 256, 256, 56   # gates, hidden, inputs, rows (a multiple of 8)
O = G * H


def build(L):
    """The products, for weight vectors of L output rows (``kernels/lanes.py``'s LANES)."""
    BLOCKS = O // L
    ti.init(arch=ti.cpu, real_matrix_scalarize=False, fast_math=False, offline_cache=False,
            cpu_max_num_threads=1, log_level=ti.WARN)
    lane = ti.types.vector(L, ti.f32)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((O, K)).astype(np.float32)
    x = rng.standard_normal((N, K)).astype(np.float32)
    lanes = ti.ndarray(lane, BLOCKS * K)   # [block·K + j] = W[L·block .. L·block + L-1, j]
    lanes.from_numpy(w.reshape(BLOCKS, L, K).transpose(0, 2, 1).reshape(-1, L).copy())
    xs = ti.ndarray(ti.f32, N * K)
    xs.from_numpy(x.reshape(-1))
    starts = ti.ndarray(ti.i32, N)   # where each row of x starts
    starts.from_numpy((np.arange(N) * K).astype(np.int32))
    packed = ti.ndarray(ti.types.vector(4 * L, ti.f32), (N // 4) * K)
    out = ti.ndarray(ti.f32, N * O)
    product = (x @ w.T).reshape(-1)

    @ti.kernel
    def copy_in(src: ti.types.ndarray(), dst: ti.types.ndarray()):
        for k in range(src.shape[0]):
            dst[k] = src[k]

    @ti.func
    def blocks_against_rows(x: ti.template(), lanes: ti.template(), out: ti.template(), st: ti.template(),
                            b0, nb: ti.template(), r0, nr: ti.template()):
        """W's blocks b0 .. b0+nb-1 against the rows r0 .. r0+nr-1 of x, one pass over the inputs."""
        start = [st[r0 + r] for r in ti.static(range(nr))]
        acc = [ti.Vector([0.0] * L) for _ in ti.static(range(nb * nr))]
        for j in range(K):
            wv = [lanes[(b0 + h) * K + j] for h in ti.static(range(nb))]
            for r in ti.static(range(nr)):
                xr = x[start[r] + j]
                for h in ti.static(range(nb)):
                    acc[h * nr + r] += wv[h] * xr
        for r in ti.static(range(nr)):
            for h in ti.static(range(nb)):
                for m in ti.static(range(L)):
                    out[(r0 + r) * O + (b0 + h) * L + m] = acc[h * nr + r][m]

    @ti.kernel
    def rows_outer(x: ti.types.ndarray(), lanes: ti.types.ndarray(), out: ti.types.ndarray(),
                   st: ti.types.ndarray(), nb: ti.template(), nr: ti.template()):
        for _ in range(1):
            for grp in range(N // nr):
                for q in range(BLOCKS // nb):
                    blocks_against_rows(x, lanes, out, st, q * nb, nb, grp * nr, nr)

    @ti.kernel
    def blocks_outer(x: ti.types.ndarray(), lanes: ti.types.ndarray(), out: ti.types.ndarray(),
                     st: ti.types.ndarray(), nb: ti.template(), nr: ti.template()):
        for _ in range(1):
            for q in range(BLOCKS // nb):   # nb blocks of W (L·K floats each) against every row group
                for grp in range(N // nr):
                    blocks_against_rows(x, lanes, out, st, q * nb, nb, grp * nr, nr)

    @ti.kernel
    def pack(x: ti.types.ndarray(), packed: ti.types.ndarray()):
        for grp in range(N // 4):
            for j in range(K):
                s = ti.Vector([x[(grp * 4 + k) * K + j] for k in ti.static(range(4))])
                packed[grp * K + j] = ti.Vector([s[k] for k in ti.static(range(4)) for _ in ti.static(range(L))])

    @ti.kernel
    def pre_broadcast(packed: ti.types.ndarray(), lanes: ti.types.ndarray(), out: ti.types.ndarray()):
        for _ in range(1):
            for grp in range(N // 4):
                for pair in range(BLOCKS // 2):
                    acc = [ti.Vector([0.0] * L) for _ in ti.static(range(8))]
                    for j in range(K):
                        w0 = lanes[2 * pair * K + j]
                        w1 = lanes[(2 * pair + 1) * K + j]
                        xv = packed[grp * K + j]
                        for k in ti.static(range(4)):
                            xk = ti.Vector([xv[k * L + m] for m in ti.static(range(L))])
                            acc[k] += w0 * xk
                            acc[4 + k] += w1 * xk
                    for k in ti.static(range(4)):
                        for h in ti.static(range(2)):
                            for m in ti.static(range(L)):
                                out[(grp * 4 + k) * O + (2 * pair + h) * L + m] = acc[h * 4 + k][m]

    products = {"1 block x 8 rows": lambda: rows_outer(xs, lanes, out, starts, 1, 8),
                "blocks outer": lambda: blocks_outer(xs, lanes, out, starts, 1, 8),
                "4 blocks x 2 rows": lambda: rows_outer(xs, lanes, out, starts, 4, 2),
                "4 blocks x 4 rows": lambda: rows_outer(xs, lanes, out, starts, 4, 4),
                "4 blocks x 8 rows": lambda: rows_outer(xs, lanes, out, starts, 4, 8),
                "2 blocks x 2 rows": lambda: rows_outer(xs, lanes, out, starts, 2, 2),
                "2 blocks x 4 rows": lambda: rows_outer(xs, lanes, out, starts, 2, 4),
                "8 blocks x 4 rows": lambda: rows_outer(xs, lanes, out, starts, 8, 4),
                "pre-broadcast": lambda: (pack(xs, packed), pre_broadcast(packed, lanes, out))}
    expected = x @ w.T
    for name, run in products.items():
        out.fill(np.nan)
        run()
        err = np.abs(out.to_numpy().reshape(N, O) - expected).max()
        assert err < 1e-3, f"{name}: off by {err}"
    products["pre-broadcast"] = lambda: pre_broadcast(packed, lanes, out)
    return {**products, "pack": lambda: pack(xs, packed), "numpy": lambda: x @ w.T,
            "x to numpy": lambda: xs.to_numpy(), "xw from numpy": lambda: copy_in(product, out)}


def best_of(run, repeats=5):
    """The fastest of two timings of ``repeats`` runs, µs a run."""
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        for _ in range(repeats):
            run()
        ti.sync()
        best = min(best, (time.perf_counter() - t) / repeats * 1e6)
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--lanes", type=int, choices=(8, 16), default=8, help="output rows a weight vector holds")
    a = p.parse_args()
    runs = build(a.lanes)
    times = {name: [] for name in runs}
    for _ in range(a.rounds):
        for name, run in runs.items():
            times[name].append(best_of(run))
    flop = 2.0 * N * O * K
    print(f"W {O} x {K} against {N} rows, {a.lanes} lanes, one thread, {a.rounds} rounds: µs a product, min / median "
          "(GFLOP/s at min)")
    for name, t in times.items():
        rate = "" if name in ("pack", "x to numpy", "xw from numpy") else f" ({flop / min(t) / 1e3:.1f})"
        print(f"  {name:18s} {min(t):7.0f} / {np.median(t):7.0f}{rate}")


if __name__ == "__main__":
    main()
