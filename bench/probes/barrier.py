"""The floor of a persistent kernel's step on this GPU: a grid barrier and nothing else.

    python bench/probes/barrier.py        # CUDA only

Runs ``kernels.sequence_persistent.grid_barrier`` T times in one launch on one block
per SM (and on two an SM), and reports µs per barrier: what a persistent step costs before any math.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import mpsrnn  # noqa: E402


def main():
    mpsrnn.init("cuda")
    import taichi as ti
    from mpsrnn.backend import gpu_multiprocessors
    from mpsrnn.kernels.layout import F_BARRIER
    from mpsrnn.kernels.sequence_persistent import BLOCK, grid_barrier
    for nblocks in sorted({1, 2, 4, 8, gpu_multiprocessors(), 2 * gpu_multiprocessors()}):
        @ti.kernel
        def barriers(frame: ti.types.ndarray(dtype=ti.i32, ndim=1), steps: ti.i32):
            ti.loop_config(block_dim=BLOCK)
            for t in range(nblocks * BLOCK):
                tid = t % BLOCK
                for s in range(steps):
                    grid_barrier(frame, tid, (s + 1) * nblocks)
        frame = ti.ndarray(ti.i32, (F_BARRIER + 1,))
        for steps in (10, 1000):
            frame.fill(0)
            barriers(frame, steps)
            ti.sync()
            frame.fill(0)
            ti.sync()
            t0 = time.perf_counter()
            barriers(frame, steps)
            ti.sync()
            dt = time.perf_counter() - t0
            print(f"{nblocks:4d} blocks x {BLOCK}: {steps:5d} barriers in {dt * 1e6:9.1f} us "
                  f"-> {dt / steps * 1e6:6.2f} us each (launch included)", flush=True)


if __name__ == "__main__":
    main()
