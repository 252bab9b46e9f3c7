"""Dump the PTX of the GPU kernels (CUDA), to read their registers, spills and shared memory.

    mkdir -p /tmp/ptx && cd /tmp/ptx && python /path/to/bench/probes/ptx.py [--config lstm:1024:64:20 ...]
    for f in taichi_kernel_nvptx_*.ptx; do tr -d '\000' < $f > t.ptx; grep -o "entry [a-z_0-9]*" t.ptx;
        ptxas -arch=sm_90 -v t.ptx -o /dev/null 2>&1 | grep -E "registers|spill"; done

Compiles the kernels of four configurations with Taichi's assembly dump on and the offline cache off
(a cached kernel is not compiled, so it dumps nothing). Taichi writes one file per module,
``taichi_kernel_nvptx_NNNN.ptx``, into the working directory (nothing to standard output); each ends
in a NUL byte, hence ``tr`` (``strings`` drops the lines shorter than four characters, such as
``{``, and ``ptxas`` then rejects the file). Making the PTX needs a GPU, reading it does not: files
brought back from the device go through this project VM's ``ptxas`` (CUDA 13.0) too. Spills happen
in ``ptxas`` (its ``-v`` line gives their bytes), so the PTX shows none; ``ncu``'s
``smsp__sass_inst_executed_op_local_{ld,st}.sum`` count the executed ones on the device
(``kernels/sequence_registers.py`` says what they found).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    import argparse

    import taichi as ti

    from ab import parse_config   # bench/probes/ab.py: cell:hidden:batch:steps[:layers][:bidi]
    from mpsrnn import backend
    p = argparse.ArgumentParser()
    p.add_argument("--config", action="append", help="as ab.py's (default: four small and medium layers)")
    a = p.parse_args()
    # as backend.init starts CUDA (vectors whole unless MPSRNN_CUDA_SCALARIZE=on), with the dump on
    ti.init(arch=ti.cuda, offline_cache=False, fast_math=False, print_kernel_asm=True, log_level=ti.WARN,
            real_matrix_scalarize=backend._scalarizes("cuda"))
    backend._current = "cuda"   # started by hand above, with the dump on
    from mpsrnn.benchmark import Config, time_config
    configs = [parse_config(c) for c in a.config] if a.config else [
        Config("lstm", 64, 64, 1, 20), Config("gru", 64, 64, 1, 20), Config("lstm", 512, 512, 4, 20),
        Config("gru", 512, 512, 4, 20)]
    for cfg in configs:
        time_config(cfg, repeats=1, warmup=0)


if __name__ == "__main__":
    main()
