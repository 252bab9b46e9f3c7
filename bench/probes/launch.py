"""What one call costs before any math: Taichi launches, graphs and the offline cache.

    python bench/probes/launch.py --arch cuda

Each setting runs in a fresh process (Taichi is initialised once per process), and
prints the median µs of:
- one trivial kernel (ndarray arguments), launched from Python;
- a captured ti.graph of 1 and of 4 such dispatches;
- 64 dispatches, each with its own scalar argument (as a graph of per-step kernels has), of the
  trivial kernel and of one over the per-step kernels' fixed grid of 1024 blocks of 256 threads
  (sequence_tiles.py), most of which have nothing to do;
- a kernel whose body starts with a serial statement before its loop (Taichi makes
  that a separate offloaded task, so a second launch on the device);
- the same graph with the offline cache off, to see whether kernels that came from
  the disk cache are loaded again on every graph run (Taichi 1.7.4 logs
  "Create kernel ... from cache" on every call for them).
"""
import argparse
import os
import subprocess
import sys
import time


def measure(arch, offline_cache, repeats=200):
    import numpy as np
    import taichi as ti
    ti.init(arch=getattr(ti, arch), offline_cache=offline_cache, log_level=ti.WARN)

    @ti.kernel
    def trivial(a: ti.types.ndarray(dtype=ti.f32, ndim=1), f: ti.types.ndarray(dtype=ti.i32, ndim=1)):
        for i in range(32):
            a[i] += f[i]

    @ti.kernel
    def serial_head(a: ti.types.ndarray(dtype=ti.f32, ndim=1), f: ti.types.ndarray(dtype=ti.i32, ndim=1)):
        n = f[0] + 32       # a top-level statement: its own offloaded task
        for i in range(n):
            a[i % 32] += 1.0

    @ti.kernel
    def stepped(a: ti.types.ndarray(dtype=ti.f32, ndim=1), f: ti.types.ndarray(dtype=ti.i32, ndim=1), s: ti.i32):
        for i in range(32):
            a[i] += f[i] + s

    @ti.kernel
    def wide(a: ti.types.ndarray(dtype=ti.f32, ndim=1), f: ti.types.ndarray(dtype=ti.i32, ndim=1), s: ti.i32):
        ti.loop_config(block_dim=256)
        for t in range(1024 * 256):
            if t < 32:
                a[t] += f[t] + s

    a = ti.ndarray(ti.f32, 64)
    f = ti.ndarray(ti.i32, 64)
    sa = ti.graph.Arg(ti.graph.ArgKind.NDARRAY, "a", ti.f32, ndim=1)
    sf = ti.graph.Arg(ti.graph.ArgKind.NDARRAY, "f", ti.i32, ndim=1)

    def graph(kernel, n):
        gb = ti.graph.GraphBuilder()
        for _ in range(n):
            gb.dispatch(kernel, sa, sf)
        return gb.compile()

    def timed(fn):
        for _ in range(20):
            fn()
        ti.sync()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ti.sync()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts)) * 1e6

    steps = {f"s{s}": s for s in range(64)}

    def stepped_graph(kernel, n):
        gb = ti.graph.GraphBuilder()
        for s in range(n):
            gb.dispatch(kernel, sa, sf, ti.graph.Arg(ti.graph.ArgKind.SCALAR, f"s{s}", ti.i32))
        return gb.compile()

    g1, g4, gs = graph(trivial, 1), graph(trivial, 4), graph(serial_head, 1)
    g64, w64 = stepped_graph(stepped, 64), stepped_graph(wide, 64)
    args = {"a": a, "f": f}
    rows = [("sync alone", timed(lambda: None)),
            ("kernel from Python", timed(lambda: trivial(a, f))),
            ("graph, 1 dispatch", timed(lambda: g1.run(args))),
            ("graph, 4 dispatches", timed(lambda: g4.run(args))),
            ("graph, 64 dispatches, step arg", timed(lambda: g64.run({**args, **steps}))),
            ("graph, 64 x 1024-block grid", timed(lambda: w64.run({**args, **steps}))),
            ("graph, 1 dispatch, serial head", timed(lambda: gs.run(args)))]
    for name, us in rows:
        print(f"{arch:7s} offline_cache={int(offline_cache)}  {name:32s} {us:9.1f} us")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="cuda")
    p.add_argument("--child", choices=["0", "1"])
    a = p.parse_args()
    if a.child is not None:
        measure(a.arch, a.child == "1")
        return
    # twice with the cache on: the first fills it, the second loads every kernel from disk
    for setting in ("1", "1", "0"):
        subprocess.run([sys.executable, os.path.abspath(__file__), "--arch", a.arch, "--child", setting], check=True)


if __name__ == "__main__":
    main()
