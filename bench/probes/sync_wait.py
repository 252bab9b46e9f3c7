"""What a synchronisation costs: Taichi's ti.sync with nothing queued, after one tiny kernel, after
twenty, after kernels of known length, twice in a row; then the same with a CUDA context open on
the same GPU, with CUDA work between, and PyTorch's own synchronisation for scale.

    python bench/probes/sync_wait.py --arch vulkan

Each line: percentiles of the wall time of one call in µs, the process's mean user and system
(kernel) time a call, and a histogram over fixed bins. On Vulkan, Taichi's ti.sync submits the
queued command list (an empty one with a barrier if none) with a fence it creates for it, then
waits for the device to go idle and destroys the fence; a wait that costs the same with nothing
queued is the floor of every call that reads its results. ``vulkan_fence.py`` takes it apart.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import mpsrnn  # noqa: E402
from call_timing import timed_calls  # noqa: E402   (bench/probes, this script's folder)

BINS = [0, 50, 100, 200, 400, 600, 800, 1000, 1200, 1500, 2000, 3000, np.inf]


def stats(name, call, reps=200):
    t, user, system = timed_calls(call, reps)
    hist = np.histogram(t, bins=BINS)[0]
    print(f"{name:40s} p10 {np.percentile(t, 10):8.1f} p50 {np.median(t):8.1f} p90 {np.percentile(t, 90):8.1f}"
          f"  user {user:6.1f} sys {system:6.1f}  counts {hist.tolist()}", flush=True)


def battery(tag, ti, spin):
    """The same calls, labelled ``tag``."""
    stats(f"{tag} idle sync", ti.sync)
    stats(f"{tag} spin(1)+sync", lambda: (spin(1), ti.sync()))
    stats(f"{tag} spin(1) launch only", lambda: spin(1), reps=50)
    ti.sync()
    stats(f"{tag} 20 x spin(1) + sync", lambda: ([spin(1) for _ in range(20)], ti.sync()), reps=50)
    for n in (10_000, 100_000, 300_000, 1_000_000):
        stats(f"{tag} spin({n})+sync", lambda: (spin(n), ti.sync()), reps=40)
    stats(f"{tag} spin(1)+sync+sync", lambda: (spin(1), ti.sync(), ti.sync()))
    stats(f"{tag} sleep 5ms then spin(1)+sync", lambda: (time.sleep(0.005), spin(1), ti.sync()), reps=60)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="vulkan")
    arch = p.parse_args().arch
    mpsrnn.init(arch)
    import taichi as ti

    out = ti.field(ti.f32, shape=1)

    @ti.kernel
    def spin(n: ti.i32):
        """One thread's chain of n dependent multiply-adds: a kernel of known length."""
        for _ in range(1):
            x = 0.0
            for _k in range(n):
                x = x * 0.999 + 1.0
            out[0] = x

    print(f"# bins of the counts (µs): {BINS[1:-1]} and past {BINS[-2]}")
    battery(arch, ti, spin)
    try:
        import torch
        if not torch.cuda.is_available():
            return
    except ImportError:
        return
    a = torch.randn(512, 512, device="cuda")
    torch.cuda.synchronize()
    battery(f"{arch}+cudactx", ti, spin)

    def cuda_then_taichi():
        (a @ a).sum()
        torch.cuda.synchronize()
        spin(1)
        ti.sync()
    stats("cuda work+sync then spin(1)+sync", cuda_then_taichi)
    stats("cuda work+sync alone", lambda: ((a @ a).sum(), torch.cuda.synchronize()))
    stats("torch idle sync", torch.cuda.synchronize)


if __name__ == "__main__":
    main()
