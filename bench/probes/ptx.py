"""Print the PTX of the GPU kernels (CUDA), to read their registers, spills and shared memory.

    python bench/probes/ptx.py > kernels.ptx 2>&1
    grep -E "^\\.(visible )?\\.entry|\\.reg|\\.local|\\.shared|ld\\.local" kernels.ptx

Compiles the kernels of three configurations with Taichi's assembly dump on and
the offline cache off (a cached kernel is not compiled, so it prints nothing).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def main():
    import taichi as ti

    from mpsrnn import backend
    ti.init(arch=ti.cuda, offline_cache=False, fast_math=False, print_kernel_asm=True, log_level=ti.WARN)
    backend._current = "cuda"   # started by hand above, with the dump on
    from mpsrnn.benchmark import Config, time_config
    for cfg in (Config("lstm", 64, 64, 1, 20), Config("lstm", 512, 512, 4, 20), Config("gru", 512, 512, 4, 20)):
        time_config(cfg, repeats=1, warmup=0)


if __name__ == "__main__":
    main()
