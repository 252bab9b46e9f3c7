"""Whether Taichi's CUDA context is PyTorch's.

    python bench/probes/contexts.py --config lstm:512:1:25 --config gru:512:1:1

PyTorch runs in the device's primary context. This probe prints, for each config (``ab.py``'s
cell:hidden:batch:steps[:layers]), the context current after a Taichi call and after a PyTorch
call, next to the primary context. H200, 2026-12-01: Taichi 1.7.4 runs in the primary context too,
so alternating the two in ``mpsrnn bench`` switches no context; what alternating costs each side
is ``alternation.py``'s question.
"""
import argparse
import ctypes
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mpsrnn  # noqa: E402
from ab import layer_calls  # noqa: E402   (this script's folder)


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
    mpsrnn.init("cuda")
    cuda = ctypes.CDLL("libcuda.so.1")
    for text in a.config:
        cfg, ours, theirs = layer_calls(text)
        ours()
        after_ours = contexts(cuda)
        theirs()
        after_theirs = contexts(cuda)
        print(f"{cfg.label}: context after a Taichi call {after_ours[0]:#x}, after a PyTorch call "
              f"{after_theirs[0]:#x}, primary {after_ours[1]:#x}")

if __name__ == "__main__":
    main()
