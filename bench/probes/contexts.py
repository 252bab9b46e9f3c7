"""Whether timing mpsrnn and PyTorch alternately costs either of them, and whether Taichi's CUDA
context is PyTorch's.

    python bench/probes/contexts.py --config lstm:512:1:25 --config gru:512:1:1

PyTorch runs in the device's primary context. This probe prints the context current after a
Taichi call and after a PyTorch call, next to the primary context, then times, for each config
(``ab.py``'s cell:hidden:batch:steps[:layers]), medians over 200 calls of a call and its
synchronisation, in µs: mpsrnn alone (back to back), PyTorch alone, then the two alternating as
``mpsrnn bench`` times them. A difference between alone and alternating is what one leaves to the
other (a context switch, or evicted caches). H200, 2026-12-01: Taichi 1.7.4 runs in the primary
context too, yet alternating costs each side 40-90 µs a call (``bench/analysis.md``).
"""
import argparse
import ctypes
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mpsrnn  # noqa: E402
from ab import parse_config  # noqa: E402   (this script's folder)
from host_time import medians_us  # noqa: E402   (this script's folder)
from mpsrnn.backend import sync  # noqa: E402
from mpsrnn.benchmark import build_pair  # noqa: E402


def contexts(cuda):
    """The current context and the device's primary one, as integers."""
    current, primary, device = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_int()
    cuda.cuCtxGetCurrent(ctypes.byref(current))
    cuda.cuDeviceGet(ctypes.byref(device), 0)
    cuda.cuDevicePrimaryCtxRetain(ctypes.byref(primary), device)
    cuda.cuDevicePrimaryCtxRelease(device)
    return current.value, primary.value


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", action="append", required=True)
    a = p.parse_args()
    import torch
    mpsrnn.init("cuda")
    cuda = ctypes.CDLL("libcuda.so.1")
    for text in a.config:
        cfg = parse_config(text)
        layer, tmod = build_pair(cfg, 0, "cuda")
        x = np.random.default_rng(1).standard_normal((cfg.steps, cfg.batch, cfg.input)).astype(np.float32)
        xs = mpsrnn.MatrixSequence.from_numpy(x)
        ys = layer.encode_sequence(xs)
        xt = torch.from_numpy(x).cuda()

        def ours():
            layer.encode_sequence(xs, ys)
            sync()

        def theirs():
            with torch.no_grad():
                tmod(xt)
            torch.cuda.synchronize()

        ours()
        after_ours = contexts(cuda)
        theirs()
        after_theirs = contexts(cuda)
        print(f"{cfg.label}: context after a Taichi call {after_ours[0]:#x}, after a PyTorch call "
              f"{after_theirs[0]:#x}, primary {after_ours[1]:#x}")
        for _ in range(20):
            ours()
            theirs()
        (alone_ours,), (alone_theirs,) = medians_us(ours), medians_us(theirs)
        both_ours, both_theirs = medians_us(ours, theirs)
        print(f"{cfg.label:28s} mpsrnn alone {alone_ours:8.1f}  alternating {both_ours:8.1f}   "
              f"PyTorch alone {alone_theirs:8.1f}  alternating {both_theirs:8.1f}  µs a call")


if __name__ == "__main__":
    main()
