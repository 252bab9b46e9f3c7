"""The floor of a persistent kernel's step on this GPU: a grid barrier and nothing else.

    python bench/probes/barrier.py        # CUDA only

Runs a grid barrier T times in one launch on 1 .. 2 × SMs blocks of 256 threads and reports µs
per barrier: what a persistent step costs before any math. Four forms, side by side in one
process, the blocks' counts the same:

- ``counter``: ``kernels.sequence_persistent.grid_barrier``: every block's thread 0 counts
  itself in, then polls the same counter (an atomic read) until every block has arrived;
- ``release``: the count's last arrival (told by the count its own add returns) writes a
  separate release word, on its own cache line, that the others poll: the last block does not
  poll at all, and the others' polls do not queue at the counter with the arrivals;
- ``fence_once``: ``release`` with thread 0's fences only (after the block's barrier: a fence is
  cumulative), as CUDA's cooperative groups do, rather than every thread's.

H200, 2026-12-02 (µs a barrier, counter / release / fence_once): 1 block 0.79 / 0.70 / 0.94, 8 blocks
0.89 / 1.36 / 1.17, 132 blocks 1.16 / 1.40 / 1.54, 264 blocks 1.21 / 1.49 / 1.77. The release word
is a second round trip on the path (the last arrival's add, then its write, then the polls see
it), where the counter's polls see the last arrival itself; the polls' queueing cost less than that.

- ``counter_last``: ``counter`` where the last arrival, told by the count its add returns, does not
  poll. H200, 2026-12-03 (counter / counter_last): 1 block 0.86 / 0.71, 2 blocks 0.82 / 1.10, 8
  blocks 0.80 / 0.92, 132 blocks 1.17 / 1.16, 264 blocks 1.24 / 1.22; in the kernels (``ab_trees.py``,
  µs a step) LSTM 128 b1 t1000 2.40 / 2.47, b8 2.55 / 2.65, LSTM 512 b64 t100 21.7 / 21.4, GRU 1536
  b1 t187 11.9 / 11.7: no gain, so the kernels keep ``counter``.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import mpsrnn  # noqa: E402


F_RELEASE = 40   # the release word of the probe's own frame: a 128-byte line away from F_BARRIER (23)


def barrier_forms(ti, F_BARRIER, grid_barrier):
    def release_form(every_thread_fences):
        @ti.func
        def release(frame: ti.template(), tid, target):
            if ti.static(every_thread_fences):
                ti.simt.grid.memfence()
            ti.simt.block.sync()
            if tid == 0:
                if ti.static(not every_thread_fences):
                    ti.simt.grid.memfence()   # cumulative: the block's writes, ordered before it by the sync
                if ti.atomic_add(frame[F_BARRIER], 1) == target - 1:
                    ti.atomic_max(frame[F_RELEASE], target)
                else:
                    while ti.atomic_add(frame[F_RELEASE], 0) < target:
                        pass
                if ti.static(not every_thread_fences):
                    ti.simt.grid.memfence()
            ti.simt.block.sync()
        return release

    @ti.func
    def counter_last(frame: ti.template(), tid, target):
        ti.simt.grid.memfence()
        ti.simt.block.sync()
        if tid == 0:
            if ti.atomic_add(frame[F_BARRIER], 1) < target - 1:   # the last arrival does not poll
                while ti.atomic_add(frame[F_BARRIER], 0) < target:
                    pass
        ti.simt.block.sync()

    return {"counter": grid_barrier, "counter_last": counter_last, "release": release_form(True),
            "fence_once": release_form(False)}


def main():
    mpsrnn.init("cuda")
    import taichi as ti
    from mpsrnn.backend import gpu_multiprocessors
    from mpsrnn.kernels.layout import F_BARRIER, F_HEADER
    from mpsrnn.kernels.sequence_persistent import BLOCK, grid_barrier
    forms = barrier_forms(ti, F_BARRIER, grid_barrier)
    sms = gpu_multiprocessors()
    steps = 1000
    print(f"# µs a barrier, {steps} barriers a launch (launch included), blocks of {BLOCK} threads")
    print(f"{'blocks':>6s} " + " ".join(f"{name:>9s}" for name in forms))
    for nblocks in sorted({1, 2, 8, 32, sms, 2 * sms}):
        cells = []
        for form in forms.values():
            @ti.kernel
            def barriers(frame: ti.types.ndarray(dtype=ti.i32, ndim=1), steps: ti.i32):
                ti.loop_config(block_dim=BLOCK)
                for t in range(nblocks * BLOCK):
                    tid = t % BLOCK
                    for s in range(steps):
                        form(frame, tid, (s + 1) * nblocks)
            frame = ti.ndarray(ti.i32, (F_HEADER,))
            best = float("inf")
            for _ in range(4):   # the first compiles
                frame.fill(0)
                ti.sync()
                t0 = time.perf_counter()
                barriers(frame, steps)
                ti.sync()
                best = min(best, time.perf_counter() - t0)
            cells.append(f"{best / steps * 1e6:9.3f}")
        print(f"{nblocks:6d} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
