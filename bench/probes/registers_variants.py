"""The register-resident block kernel's variants side by side (``kernels/sequence_registers.py``):
with and without the one-step-ahead input loads, each timed like ``mpsrnn bench`` next to the plain
block kernel, in one process.

    python bench/probes/registers_variants.py --arch cuda --configs lstm:64:1:1000 gru:64:1:1000

A configuration is cell:hidden:batch:steps (input = hidden).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import mpsrnn
from mpsrnn.benchmark import Config, format_row, time_config
from mpsrnn.kernels import sequence_registers as sr
from mpsrnn.kernels.layout import CELL_GRU, CELL_LSTM, CELL_SINGLE_GATE
from mpsrnn.scheduler import recurrence

CELLS = {"lstm": CELL_LSTM, "gru": CELL_GRU, "rnn": CELL_SINGLE_GATE}
VARIANTS = {   # name: (rows per thread, or None for the scheduler's; the kernel's other options)
    "prefetch": (None, {"prefetch": True}),
    "no-prefetch": (None, {"prefetch": False}),
    "rho1-512": (1, {"block": 512}),
    "rho1-512-no-prefetch": (1, {"block": 512, "prefetch": False}),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default=None)
    p.add_argument("--gpu-max-reg", type=int, default=0, help="Taichi's register cap per thread (0: its own)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    p.add_argument("--configs", nargs="+", required=True, help="cell:hidden:batch:steps ...")
    a = p.parse_args()
    if a.gpu_max_reg:   # start Taichi by hand with the cap, as mpsrnn.init would otherwise
        import taichi as ti
        ti.init(arch=ti.cuda, fast_math=False, offline_cache=True, gpu_max_reg=a.gpu_max_reg, log_level=ti.WARN)
        mpsrnn.backend._current = "cuda"
    arch = mpsrnn.init(a.arch)
    print(f"# {arch}: {mpsrnn.backend.device_name()}", flush=True)
    kernels = {}
    for spec in a.configs:
        cell, hidden, batch, steps = spec.split(":")
        cfg = Config(cell, int(hidden), int(hidden), int(batch), int(steps))
        os.environ["MPSRNN_RECURRENCE"] = "blocks"
        print(format_row(time_config(cfg, repeats=a.repeats)), flush=True)
        os.environ["MPSRNN_RECURRENCE"] = "registers"
        for name in a.variants:
            rho, options = VARIANTS[name]
            rho = rho or sr.registers_rows(CELLS[cell], 0, int(hidden), True)
            key = (CELLS[cell], name)
            if key not in kernels:
                kernels[key] = sr._kernel(CELLS[cell], rho, **options)
            recurrence.registers_kernel = lambda *_, kernel=kernels[key]: kernel   # what emit_layer adds
            print(format_row(time_config(cfg, repeats=a.repeats)), name, flush=True)


if __name__ == "__main__":
    main()
