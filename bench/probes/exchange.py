"""What a step's exchange of h between blocks costs: the grid barrier, or h words that carry their step.

    python bench/probes/exchange.py [--config blocks:H ...]   # CUDA; one block runs on any GPU

A spread or split step ends with every block's new h in global memory, then a grid barrier
(``sequence_persistent.grid_barrier``: a GPU-scope fence, an atomic add, polls of the count), then
each block loads the whole h. That is four round trips to L2 on the step's path, each ~0.25 µs.
Here two ways of the same exchange, timed alone in one launch of ``STEPS`` steps on ``blocks`` blocks
of 256 threads, each block owning H / blocks of H words (the next step's h depends on all of this
step's, as a cell's does):

- ``barrier``: h as float32, the kernels' grid barrier, then every block loads h;
- ``tagged``: each h word travels with its step, as one 64-bit word (the step in the high half, the
  float's bits in the low); a reader polls each of its words with an atomic read until it carries
  the step it waits for. No fence and no count: a word proves itself, and a block cannot run ahead,
  since it needs every block's words of a step before it can make its own for the next. Two slots,
  taken in turn (a slot is rewritten only after every block has read it: a block writes step s + 2
  only after reading all of step s + 1, which every block wrote after reading step s).

H200, 2026-12-03 (``results/h200-cuda-probe-exchange.txt``), µs a step, barrier / tagged: 8 blocks
x 128 words (LSTM 128 b1's exchange) 1.35 / 0.66, 2 x 256 1.14 / 0.70, 16 x 512 1.62 / 1.21, 8 x 1024
1.75 / 1.56, but 64 x 1024 2.00 / 2.88 (every block polls every word: the atomics queue at L2). A
plain 64-bit store of a tagged word was torn: readers saw the new step with the old float (checksum
errors 1e-5 to 3e-4, the barrier's 2e-6), so the words are written with an atomic max (one access;
a word's step only grows), whose checksums match the barrier's to the bit.

Prints µs a step for each form and how far each read h from a float64 run of the same steps (each
thread's checksum of every word it read, every step: a stale word changes it). Polls give up after
``SPIN`` tries and are counted (a bug then shows as failed polls, not a hung device). On lavapipe one
block matches the float64 run in both forms; two blocks read stale words in both (Vulkan promises
nothing across workgroups), as the spread kernels' one-block tests assume.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import mpsrnn  # noqa: E402
from mpsrnn.kernels.exchange import tagged_word, word_step, word_value  # noqa: E402   (the kernels' words)

STEPS = 2000
BLOCK = 256
SPIN = 1 << 16
WRITE = os.environ.get("EXCHANGE_WRITE", "max")   # "store": a plain 64-bit store (which may be split)


def kernels(ti, nblocks, H, grid_barrier, F_BARRIER):
    units = H // nblocks
    assert units * nblocks == H and units <= BLOCK, "a block's units: one a thread"
    words = (H + BLOCK - 1) // BLOCK   # h words a thread loads

    @ti.func
    def next_h(hs: ti.template(), u, s):
        """The new h of unit u from two units' h, kept in [-1, 1] (a cell reads all of them; here
        every word read is checked by the readers' checksums instead, which cost no time)."""
        return ti.sin(hs[u] * 0.5 + hs[(u * 7 + 1) % H] * 0.25 + ti.cast(s, ti.f32) * 0.001)

    @ti.kernel
    def barrier(frame: ti.types.ndarray(dtype=ti.i32, ndim=1), h: ti.types.ndarray(dtype=ti.f32, ndim=1),
                chk: ti.types.ndarray(dtype=ti.f32, ndim=1), steps: ti.i32):
        ti.loop_config(block_dim=BLOCK)
        for t in range(nblocks * BLOCK):
            blk = t // BLOCK
            tid = t % BLOCK
            hs = ti.simt.block.SharedArray((H,), ti.f32)
            acc = 0.0   # a checksum of every word this thread read: a stale word changes it
            for s in range(steps):
                for e in ti.static(range(words)):
                    if tid + e * BLOCK < H:
                        v = h[(s % 2) * H + tid + e * BLOCK]
                        hs[tid + e * BLOCK] = v
                        acc += v * ti.cast(s % 7 + 1, ti.f32)
                ti.simt.block.sync()
                if tid < units:
                    h[((s + 1) % 2) * H + blk * units + tid] = next_h(hs, blk * units + tid, s)
                grid_barrier(frame, tid, (s + 1) * nblocks)
            chk[t] = acc

    @ti.kernel
    def tagged(ex: ti.types.ndarray(dtype=ti.i64, ndim=1), chk: ti.types.ndarray(dtype=ti.f32, ndim=1),
               fails: ti.types.ndarray(dtype=ti.i32, ndim=1), steps: ti.i32):
        ti.loop_config(block_dim=BLOCK)
        for t in range(nblocks * BLOCK):
            blk = t // BLOCK
            tid = t % BLOCK
            hs = ti.simt.block.SharedArray((H,), ti.f32)
            acc = 0.0
            for s in range(steps):
                for e in ti.static(range(words)):
                    j = tid + e * BLOCK
                    if j < H:
                        v = ti.i64(0)
                        tries = 0
                        while tries < SPIN:
                            v = ti.atomic_add(ex[(s % 2) * H + j], ti.i64(0))
                            if word_step(v) == s + 1:
                                break
                            tries += 1
                        if tries == SPIN:
                            ti.atomic_add(fails[0], 1)
                        hv = word_value(v)
                        hs[j] = hv
                        acc += hv * ti.cast(s % 7 + 1, ti.f32)
                ti.simt.block.sync()
                if tid < units:
                    hv = next_h(hs, blk * units + tid, s)
                    word = tagged_word(s + 2, hv)
                    if ti.static(WRITE == "max"):   # one 64-bit access: the word's step only grows
                        ti.atomic_max(ex[((s + 1) % 2) * H + blk * units + tid], word)
                    else:
                        ex[((s + 1) % 2) * H + blk * units + tid] = word
                ti.simt.block.sync()   # hs is written again next step
            chk[t] = acc

    return barrier, tagged


def main():
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="cuda")
    p.add_argument("--config", action="append", help="blocks:H (default: 8:128, 8:1024, ... 128:1024)")
    p.add_argument("--steps", type=int, default=STEPS)
    a = p.parse_args()
    mpsrnn.init(a.arch)
    import taichi as ti
    from mpsrnn.kernels.layout import F_BARRIER, F_HEADER
    from mpsrnn.kernels.sequence_persistent import grid_barrier
    h0 = np.random.default_rng(0).uniform(-1, 1, 1024).astype(np.float32)
    steps = a.steps
    configs = [tuple(map(int, c.split(":"))) for c in a.config] if a.config else \
        [(8, 128), (8, 1024), (16, 1024), (64, 1024), (128, 1024)]
    print(f"# µs a step, {steps} steps a launch (launch included), blocks of {BLOCK} threads")
    print(f"{'blocks':>6s} {'H':>5s} {'barrier':>9s} {'tagged':>9s}  checksum error (barrier, tagged)  failed polls")
    for nblocks, H in configs:
        barrier, tagged = kernels(ti, nblocks, H, grid_barrier, F_BARRIER)
        frame = ti.ndarray(ti.i32, (F_HEADER,))
        h = ti.ndarray(ti.f32, (2 * H,))
        ex = ti.ndarray(ti.i64, (2 * H,))
        sums = [ti.ndarray(ti.f32, (nblocks * BLOCK,)) for _ in range(2)]
        fails = ti.ndarray(ti.i32, (1,))
        start = np.zeros(2 * H, np.int64)
        start[:H] = (np.int64(1) << 32) | h0[:H].view(np.int32).astype(np.int64) & 0xFFFFFFFF
        best = [float("inf"), float("inf")]
        for _ in range(4):   # the first compiles
            frame.fill(0)
            h.from_numpy(np.concatenate([h0[:H], np.zeros(H, np.float32)]))
            ti.sync()
            t0 = time.perf_counter()
            barrier(frame, h, sums[0], steps)
            ti.sync()
            best[0] = min(best[0], time.perf_counter() - t0)
            ex.from_numpy(start)
            fails.fill(0)
            ti.sync()
            t0 = time.perf_counter()
            tagged(ex, sums[1], fails, steps)
            ti.sync()
            best[1] = min(best[1], time.perf_counter() - t0)
        want = expected_checksums(h0[:H].astype(np.float64), nblocks, steps)
        err = [float(np.max(np.abs(c.to_numpy() - want) / (np.abs(want) + 1.0))) for c in sums]
        print(f"{nblocks:6d} {H:5d} {best[0] / steps * 1e6:9.3f} {best[1] / steps * 1e6:9.3f}  "
              f"{err[0]:9.1e} {err[1]:9.1e}  {fails.to_numpy()[0]}", flush=True)


def expected_checksums(h, nblocks, steps):
    """Every thread's checksum, from the same steps in float64."""
    H = len(h)
    want = np.zeros(nblocks * BLOCK)
    u = np.arange(H)
    for s in range(steps):
        for tid in range(BLOCK):
            got = h[tid::BLOCK].sum() * (s % 7 + 1)
            want[tid::BLOCK][:nblocks] += got
        h = np.sin(h * 0.5 + h[(u * 7 + 1) % H] * 0.25 + s * 0.001)
    return want


if __name__ == "__main__":
    main()
