"""What each kernel argument adds to a ``ti.graph`` dispatch's host time.

    python bench/probes/launch_args.py --arch cuda

Times ``graph.run`` (no synchronisation: on a GPU that is host time alone) of one dispatch of a
trivial kernel with no arguments, one int, 1, 3 and 6 float32 ndarrays, 6 ndarrays and 6 ints
(the recurrence kernels' arguments: x, ws, wts, prm, frame and the output, and the two views'
base, step and row stride). Median of 5 rounds of 2000 runs. H200 host, 2026-12-01: 11.5, 17.7,
20.4, 30.4, 38.7 and 50.1 µs: the argument buffer (any argument) ~6 µs, an ndarray ~3.5-4.5 µs,
an int ~2 µs, on Taichi's ~11.5 µs a dispatch. The last line passes the six ints as two vector
arguments of three (``ti.types.vector(3, ti.i32)``, one per view): whether a view as one argument
costs less than its three ints, before any kernel's signature is changed for it. This VM's CPU,
2026-12-02, three runs: 6 ndarrays 40.1-40.6 µs, with 6 ints 48.2-63.4, with 2 views 47.8-51.6.
H200 host, 2026-12-02: no arguments 9.0, 1 int 13.5, 1 ndarray 14.8, 3 ndarrays 20.2, 6 ndarrays
28.2, with 6 ints 47.0, with 2 views 41.2. The kernels then took the views from the frame instead
(sixteenth session): in a real call that saved less than this says, 4-6 µs a dispatch
(``host_time.py``'s launch, LSTM 512 b1 t25 31.5 -> 27.8, GRU 512 b1 t1 32.2 -> 26.6), and
the float parameters (prm) from the frame's tail (seventeenth session): five ndarrays a dispatch.
"""
import argparse
import timeit

import taichi as ti


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="cuda")
    a = p.parse_args()
    ti.init(arch=getattr(ti, a.arch), offline_cache=True, log_level=ti.WARN)
    arr = ti.types.ndarray(dtype=ti.f32, ndim=1)
    field = ti.field(ti.f32, 4)

    @ti.kernel
    def none_():
        for _ in range(1):
            field[0] += 1.0

    @ti.kernel
    def one_int(s: ti.i32):
        for _ in range(1):
            field[0] += s

    @ti.kernel
    def one(a: arr):
        for _ in range(1):
            a[0] += 1.0

    @ti.kernel
    def three(a: arr, b: arr, c: arr):
        for _ in range(1):
            a[0] += b[0] + c[0]

    @ti.kernel
    def six(a: arr, b: arr, c: arr, d: arr, e: arr, f: arr):
        for _ in range(1):
            a[0] += b[0] + c[0] + d[0] + e[0] + f[0]

    @ti.kernel
    def six_six(a: arr, b: arr, c: arr, d: arr, e: arr, f: arr, s1: ti.i32, s2: ti.i32, s3: ti.i32, s4: ti.i32,
                s5: ti.i32, s6: ti.i32):
        for _ in range(1):
            a[0] += b[0] + c[0] + d[0] + e[0] + f[0] + s1 + s2 + s3 + s4 + s5 + s6

    view = ti.types.vector(3, ti.i32)

    @ti.kernel
    def six_views(a: arr, b: arr, c: arr, d: arr, e: arr, f: arr, v1: view, v2: view):
        for _ in range(1):
            a[0] += b[0] + c[0] + d[0] + e[0] + f[0] + v1[0] + v1[1] + v1[2] + v2[0] + v2[1] + v2[2]

    arrays = [ti.ndarray(ti.f32, (16,)) for _ in range(6)]
    for label, kernel, n_arrays, n_ints in (("no arguments", none_, 0, 0), ("1 int", one_int, 0, 1),
                                            ("1 ndarray", one, 1, 0), ("3 ndarrays", three, 3, 0),
                                            ("6 ndarrays", six, 6, 0), ("6 ndarrays, 6 ints", six_six, 6, 6),
                                            ("6 ndarrays, 2 views", six_views, 6, 0)):
        syms = [ti.graph.Arg(ti.graph.ArgKind.NDARRAY, f"a{i}", ti.f32, ndim=1) for i in range(n_arrays)]
        syms += [ti.graph.Arg(ti.graph.ArgKind.SCALAR, f"s{i}", ti.i32) for i in range(n_ints)]
        if kernel is six_views:   # the six ints as two vector arguments of three
            syms += [ti.graph.Arg(ti.graph.ArgKind.MATRIX, f"v{i}", view) for i in range(2)]
        builder = ti.graph.GraphBuilder()
        builder.dispatch(kernel, *syms)
        graph = builder.compile()
        args = {f"a{i}": arrays[i] for i in range(n_arrays)}
        args.update({f"s{i}": i for i in range(n_ints)})
        if kernel is six_views:
            args.update({f"v{i}": ti.Vector([i, 1, 2], ti.i32) for i in range(2)})
        graph.run(args)
        ti.sync()
        rounds = sorted(timeit.timeit(lambda: graph.run(args), number=2000) / 2000 * 1e6 for _ in range(5))
        ti.sync()
        print(f"{label:20s} graph.run {rounds[2]:6.2f} us")


if __name__ == "__main__":
    main()
