"""How fast the persistent kernel's weight stream can run, by layout of the quads (CUDA).

    python bench/probes/stream_layout.py [--hidden 2816] [--gates 2] [--passes 20]

A kernel on the persistent kernel's grid (two blocks of 256 threads an SM) that does nothing but
the first phase's stream: block k owns ceil(H / blocks) units, its gates' rows are dealt to lanes
and each row's quads split across the threads of a lane, groups of ``--group`` 128-bit loads
summed into one accumulator (so nothing is optimised away). ``--passes`` sweeps of the weights
inside one launch, so the launch's own cost is spread over them. The same quads, at three
layouts:

- ``rows``: ``kernels/quads.py``'s layout (quad p of row o at p·rows + o), what the kernel reads
  now: a warp's lanes read their rows' quads, contiguous within a gate only;
- ``consumed``: each block's quads in the order its threads read them (block, group, quad of the
  group, split, lane), so every load instruction of a warp reads contiguous bytes and a block
  walks one contiguous run;
- ``thread``: each thread's run of quads contiguous (row-major U).

Prints TB/s of weights read (the quads' bytes, padding included) per layout, each the median of
``--rounds`` launches. No reference: the sums are read back only so the loads stay.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=2816)
    p.add_argument("--gates", type=int, default=2, help="gate rows a unit streams (GRU first phase: 2, LSTM: 4)")
    p.add_argument("--group", type=int, default=4)
    p.add_argument("--passes", type=int, default=20)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--per-sm", type=int, default=2)
    p.add_argument("--arch", default="cuda", help="cuda, or vulkan to check the probe itself (one SM)")
    a = p.parse_args()

    import taichi as ti
    ti.init(arch=getattr(ti, a.arch), offline_cache=True, log_level=ti.WARN, real_matrix_scalarize=a.arch != "cuda")
    nsm = 1
    if a.arch == "cuda":
        import torch
        nsm = torch.cuda.get_device_properties(0).multi_processor_count
    H, G, group = a.hidden, a.gates, a.group
    block = 256
    nblocks = nsm * a.per_sm
    units = -(-H // nblocks)
    rows_r = G * units
    lanes = rows_r
    n_split = block // lanes
    hq = -(-H // 4)
    ql = -(-hq // n_split)
    ql = -(-ql // group) * group          # whole groups (the probe reads a little padding)
    n_rows = G * H
    total = G * nblocks * units * ql * n_split   # room for every layout (runs padded to whole groups)
    read = n_rows * ql * n_split                 # quads a sweep reads
    print(f"H {H} gates {G} blocks {nblocks} units {units} lanes {lanes} splits {n_split} "
          f"quads a thread {ql} group {group}: {read * 16 / 2**20:.1f} MiB a sweep")

    wq = ti.ndarray(ti.types.vector(4, ti.f32), shape=(total + 64,))
    wq.from_numpy(np.random.default_rng(0).standard_normal((total + 64, 4)).astype(np.float32))
    out = ti.ndarray(ti.f32, shape=(nblocks * block,))
    stride = n_split * ql                 # quads of one row in the ``rows`` layout: q·n_rows + o

    @ti.kernel
    def stream(wq: ti.types.ndarray(dtype=ti.types.vector(4, ti.f32), ndim=1),
               out: ti.types.ndarray(dtype=ti.f32, ndim=1), layout: ti.i32, passes: ti.i32):
        ti.loop_config(block_dim=block)
        for t in range(nblocks * block):
            blk = t // block
            tid = t % block
            lane = tid % lanes
            split = tid // lanes
            g = lane // units
            i = blk * units + lane % units
            o = g * H + i
            acc = 0.0
            if split < n_split and i < H:
                for ps in range(passes):
                    for gr in range(ql // group):
                        w = ti.Vector([0.0] * (4 * group), ti.f32)
                        for u in ti.static(range(group)):
                            q = split * ql + gr * group + u          # the quad of the row
                            at = 0
                            if layout == 0:     # rows: quad q of row o at q·rows + o
                                at = q * n_rows + o
                            elif layout == 1:   # consumed: (block, group, u, split, lane)
                                at = (((blk * (ql // group) + gr) * group + u) * n_split + split) * lanes + lane
                            else:               # thread: row o's quads contiguous
                                at = o * stride + q
                            w4 = wq[at]
                            for e in ti.static(range(4)):
                                w[4 * u + e] = w4[e]
                        for e in ti.static(range(4 * group)):
                            acc += w[e]
            out[t] = acc

    names = ("rows", "consumed", "thread")
    for layout in range(3):   # compile and warm
        stream(wq, out, layout, 1)
    ti.sync()
    times = {n: [] for n in names}
    for _ in range(a.rounds):
        for layout, n in enumerate(names):
            t0 = time.perf_counter()
            stream(wq, out, layout, a.passes)
            ti.sync()
            times[n].append(time.perf_counter() - t0)
    for n in names:
        s = float(np.median(times[n]))
        print(f"{n:9s} {s / a.passes * 1e6:8.2f} us a sweep  {read * 16 * a.passes / s / 1e12:6.2f} TB/s")


if __name__ == "__main__":
    main()
