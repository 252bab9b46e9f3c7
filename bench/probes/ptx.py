"""Resource use of the GPU kernels: compile each once with Taichi's PTX dump on and
report registers, local memory (spills) and shared memory per kernel.

    python bench/probes/ptx.py > kernels.ptx.txt     # CUDA
"""
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def main():
    import io
    from contextlib import redirect_stdout

    import taichi as ti
    import mpsrnn
    from mpsrnn import backend
    backend._current = None
    ti.init(arch=ti.cuda, offline_cache=False, fast_math=False, print_kernel_nvptx=True, log_level=ti.WARN)
    backend._current = "cuda"
    from mpsrnn.benchmark import Config, time_config
    buf = io.StringIO()
    with redirect_stdout(buf):
        for cfg in (Config("lstm", 64, 64, 1, 20), Config("lstm", 512, 512, 4, 20), Config("gru", 512, 512, 4, 20)):
            time_config(cfg, repeats=1, warmup=0)
    text = buf.getvalue()
    for m in re.finditer(r"\.entry\s+(\w+)\((.*?)\n\}", text, re.S):
        name, body = m.group(1), m.group(2)
        regs = re.findall(r"\.reg\s+\.\w+\s+%\w+<(\d+)>", body)
        local = re.findall(r"\.local\s+\.align\s+\d+\s+\.b8\s+\w+\[(\d+)\]", body)
        shared = re.findall(r"\.shared\s+\.align\s+\d+\s+\.b8\s+\w+\[(\d+)\]", body)
        print(f"{name[:60]:60s} virtual regs {sum(map(int, regs)):5d}  local bytes {sum(map(int, local)):6d}  "
              f"shared bytes {sum(map(int, shared)):6d}  ld.local {body.count('ld.local')}  "
              f"lines {body.count(chr(10))}")
    sys.stderr.write(text[:200])


if __name__ == "__main__":
    main()
