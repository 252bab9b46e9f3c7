"""The timeline of one layer call on a GPU: host calls and device kernels, from PyTorch's profiler.

    python bench/probes/timeline.py --arch cuda --config lstm:1024:1:25 [--config ...] [--calls 3]

PyTorch's profiler records, through CUPTI, every CUDA driver call and kernel of the process, Taichi's
included: so the time from a call's start to each launch (``cuLaunchKernel``), each argument copy
and each kernel's start and end on the device shows where a call's time goes, which the per-kernel
figures of ``profile_call.py`` (each kernel replayed alone) cannot. Prints, for the last of
``--calls`` timed calls of each config, every event in the order it began, in µs from the call's
start, and the time the device sat idle (no kernel running) between the call's start and its end;
``--peer``: the same for PyTorch's call (cuDNN).
A config is ``ab.py``'s cell:hidden:batch:steps[:layers] (input = hidden).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import mpsrnn  # noqa: E402
from ab import layer_calls  # noqa: E402   (bench/probes/ab.py, this script's folder)


def one_config(text, calls, peer):
    cfg, ours, theirs = layer_calls(text)
    show(cfg, "mpsrnn", ours, calls)
    if peer:
        show(cfg, "PyTorch", theirs, calls)


def show(cfg, who, call, calls):
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function
    for _ in range(5):
        call()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for k in range(calls):
            with record_function(f"call{k}"):
                call()
    torch.cuda.synchronize()
    events = [e for e in prof.events() if e.time_range.end > e.time_range.start or e.name.startswith("cu")]
    last = [e for e in events if e.name == f"call{calls - 1}"][0]
    t0, t1 = last.time_range.start, last.time_range.end
    inside = sorted((e for e in events if t0 <= e.time_range.start <= t1 and e.name != last.name),
                    key=lambda e: e.time_range.start)
    print(f"# {cfg.label}, {who}: call {t1 - t0:.1f} us ({(t1 - t0) / cfg.steps:.2f} us a step)")
    busy = []
    for i, e in enumerate(inside):
        on_device = e.device_type == torch.autograd.DeviceType.CUDA
        start, end = e.time_range.start - t0, e.time_range.end - t0
        if on_device:
            busy.append((start, end))
        if 24 <= i < len(inside) - 8:   # a call of many kernels: its first and last events
            if i == 24:
                print(f"  ... {len(inside) - 32} more")
            continue
        where = "device" if on_device else "host  "
        print(f"  {where} {start:9.1f} .. {end:9.1f} us  {end - start:8.1f}  {e.name[:70]}")
    idle, reach = 0.0, 0.0
    for start, end in sorted(busy):
        idle += max(0.0, start - reach)
        reach = max(reach, end)
    idle += max(0.0, (t1 - t0) - reach)
    print(f"  device idle {idle:.1f} us of {t1 - t0:.1f}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default=None)
    p.add_argument("--config", action="append", required=True)
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--peer", action="store_true", help="also PyTorch's call of the same layer (cuDNN)")
    a = p.parse_args()
    mpsrnn.init(a.arch)
    for text in a.config:
        one_config(text, a.calls, a.peer)


if __name__ == "__main__":
    main()
