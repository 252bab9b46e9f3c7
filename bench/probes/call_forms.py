"""What a call costs by the form its data comes in: host arrays (a NumPy array in, a list of
matrices or a NumPy array out), a MatrixSequence in and out (what `mpsrnn bench` times), lists of
separate device matrices (MPS's own form: made from NumPy, written by a kernel, as destinations),
beside PyTorch's module called on the same host array (on the GPU beside a GPU arch: cuDNN, with
the copies to and from it). On the GPU both sides also take CUDA tensors already there, which
mpsrnn on the CUDA arch reads and writes in place with ``MPSRNN_CUDA_TENSORS=on``. "Matrices a
kernel wrote in" times two calls: another layer's (the copier's, a single gate) that writes them,
then this one's.

    python bench/probes/call_forms.py [--arch cpu] [--config lstm:64:2:25 ...] [--repeats 30]

A config is cell:hidden:batch:steps (input = hidden). Every figure is the median µs of a whole
call, device synchronisation included, and for the host forms the outputs read back to NumPy (a
NumPy array in the end, as PyTorch's ``out.numpy()``). The forms alternate within each repeat.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # its tree's


def forms(m, layer, x, torch, tmod):
    """(label, call) pairs; each call returns once its results are on the host or synchronised."""
    T, B, _ = x.shape
    xs = m.MatrixSequence.from_numpy(x)
    ys = layer.encode_sequence(xs)
    y = np.empty((T, B, layer.output_feature_channels), np.float32)
    mats = [m.Matrix.from_numpy(a) for a in x]
    outs = [m.Matrix(B, layer.output_feature_channels) for _ in range(T)]
    copier = m.RNNMatrixInferenceLayer(m.RNNSingleGateDescriptor(x.shape[2], x.shape[2]))
    written = [m.Matrix(B, x.shape[2]) for _ in range(T)]
    sync = m.backend.sync
    out = [
        ("MatrixSequence in and out", lambda: (layer.encode_sequence(xs, ys), sync())),
        ("MatrixSequence in, new out", lambda: (layer.encode_sequence(xs), sync())),
        ("NumPy in, NumPy out", lambda: layer.encode_sequence(x, y)),
        ("NumPy in, matrices out", lambda: np.stack([np.asarray(a) for a in layer.encode_sequence(x)])),
        ("matrices from NumPy in", lambda: (layer.encode_sequence(mats, ys), sync())),
        ("separate matrices out", lambda: (layer.encode_sequence(xs, outs), sync())),
        ("matrices a kernel wrote in", lambda: (copier.encode_sequence(xs, written), sync(),
                                                layer.encode_sequence(written, ys), sync())),
    ]
    if tmod is not None:
        device = next(tmod.parameters()).device

        def run_torch():
            with torch.no_grad():
                return tmod(torch.from_numpy(x).to(device))[0].cpu().numpy()
        out.append(("PyTorch, NumPy in and out", run_torch))
        if device.type == "cuda":   # both sides on tensors already on the GPU, synchronised
            xc = torch.from_numpy(x).to(device)
            yc = torch.empty((T, B, layer.output_feature_channels), device=device)

            def run_torch_gpu():
                with torch.no_grad():
                    r = tmod(xc)[0]
                torch.cuda.synchronize()
                return r
            out.append(("CUDA tensor in and out", lambda: (layer.encode_sequence(xc, yc), sync(),
                                                           torch.cuda.synchronize())))
            out.append(("PyTorch, CUDA tensor in, out", run_torch_gpu))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="cpu")
    p.add_argument("--config", action="append", default=None)
    p.add_argument("--repeats", type=int, default=30)
    a = p.parse_args()
    import mpsrnn as m
    from mpsrnn.benchmark import Config, _torch, build_pair
    arch = m.init(a.arch)
    torch = _torch()   # the peer on the same host arrays: its CPU module, or cuDNN beside a GPU arch
    device = "cuda" if arch in ("cuda", "vulkan") and torch is not None and torch.cuda.is_available() else "cpu"
    for spec in a.config or ["lstm:64:2:25", "lstm:256:1:50", "lstm:64:1:1000"]:
        cell, hidden, batch, steps = spec.split(":")
        cfg = Config(cell, int(hidden), int(hidden), int(batch), int(steps))
        layer, tmod = build_pair(cfg, torch_device=device)
        x = np.random.default_rng(1).standard_normal((cfg.steps, cfg.batch, cfg.input)).astype(np.float32)
        calls = forms(m, layer, x, torch, tmod)
        times = {label: [] for label, _ in calls}
        for _ in range(3):
            for _, call in calls:
                call()
        for _ in range(a.repeats):
            for label, call in calls:
                t0 = time.perf_counter()
                call()
                times[label].append((time.perf_counter() - t0) * 1e6)
        print(f"{cfg.label} ({arch}; PyTorch on {device}), µs a call, median [p20, p80]:")
        for label, ts in times.items():
            print(f"  {label:30s} {np.median(ts):9.1f} [{np.percentile(ts, 20):.1f}, {np.percentile(ts, 80):.1f}]")


if __name__ == "__main__":
    main()
