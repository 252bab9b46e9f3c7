"""Can Taichi's CPU code use SIMD without fast-math? A matrix-vector product three ways.

    python bench/probes/cpu_vector.py

The recurrence's dot products run scalar on the CPU (`dots.dot8`, ~8 GFLOP/s a
core: two loads per multiply-add). Fast-math would vectorise them, but it also
lets the compiler assume no NaN or infinity, which MPS's neurons produce on
purpose. This probe times y = U·h (4H × H, one thread) as:

* ``dot8``: eight scalar accumulators over a float32 array (what the kernels do);
* ``vec8 scalarized``: the same data as an array of 8-float vectors, with
  Taichi's default ``real_matrix_scalarize=True`` (vectors split into scalars);
* ``vec8 kept``: the same with ``real_matrix_scalarize=False``, so LLVM sees
  <8 x float> loads, multiplies and adds: lane-wise, no reassociation, the
  result depends only on the fixed order of the final horizontal sum.

Each runs in its own process (the option is set when Taichi starts).
"""
import os
import subprocess
import sys
import time

import numpy as np


def measure(mode, hidden=256, repeats=300):
    import taichi as ti
    ti.init(arch=ti.cpu, fast_math=False, cpu_max_num_threads=1, log_level=ti.WARN,
            real_matrix_scalarize=(mode != "vec8 kept"))
    gates = 4 * hidden
    rng = np.random.default_rng(0)
    y = ti.ndarray(ti.f32, gates)
    if mode == "dot8":
        w = ti.ndarray(ti.f32, gates * hidden)
        h = ti.ndarray(ti.f32, hidden)
        w.from_numpy(rng.random(gates * hidden, dtype=np.float32))
        h.from_numpy(rng.random(hidden, dtype=np.float32))

        @ti.kernel
        def matvec(w: ti.types.ndarray(dtype=ti.f32, ndim=1), h: ti.types.ndarray(dtype=ti.f32, ndim=1),
                   y: ti.types.ndarray(dtype=ti.f32, ndim=1), n: ti.i32, g: ti.i32):
            ti.loop_config(serialize=True)
            for rep in range(repeats):
                for o in range(g):
                    a = ti.Vector([0.0] * 8)
                    for jj in range(n // 8):
                        for m in ti.static(range(8)):
                            a[m] += w[o * n + jj * 8 + m] * h[jj * 8 + m]
                    y[o] = a.sum()
        args = (w, h, y, hidden, gates)
    else:
        v8 = ti.types.vector(8, ti.f32)
        w = ti.ndarray(v8, gates * hidden // 8)
        h = ti.ndarray(v8, hidden // 8)
        w.from_numpy(rng.random((gates * hidden // 8, 8), dtype=np.float32))
        h.from_numpy(rng.random((hidden // 8, 8), dtype=np.float32))

        @ti.kernel
        def matvec(w: ti.types.ndarray(dtype=v8, ndim=1), h: ti.types.ndarray(dtype=v8, ndim=1),
                   y: ti.types.ndarray(dtype=ti.f32, ndim=1), n8: ti.i32, g: ti.i32):
            ti.loop_config(serialize=True)
            for rep in range(repeats):
                for o in range(g):
                    a = ti.Vector([0.0] * 8)
                    for jj in range(n8):
                        a += w[o * n8 + jj] * h[jj]
                    y[o] = a.sum()
        args = (w, h, y, hidden // 8, gates)
    matvec(*args)
    ti.sync()
    t0 = time.perf_counter()
    matvec(*args)
    ti.sync()
    dt = time.perf_counter() - t0
    print(f"{mode:18s} hidden {hidden}: {2 * gates * hidden * repeats / dt / 1e9:6.2f} GFLOP/s", flush=True)


def main():
    if len(sys.argv) > 1:
        measure(sys.argv[1])
        return
    for mode in ("dot8", "vec8 scalarized", "vec8 kept"):
        subprocess.run([sys.executable, os.path.abspath(__file__), mode], check=True)


if __name__ == "__main__":
    main()
