"""Timing one recurrent configuration next to PyTorch, in the same process.

mpsrnn and PyTorch are timed alternately, after warm-up, with a device
synchronisation at the end of every timed call, and reported per time step as
the median and the 20th/80th percentiles of the repeats. The same weights are
loaded into both, and the outputs compared, so a timing never hides a wrong
result. FLOP/s count the multiply-adds of the input and recurrent products:
2·steps·batch·gates·hidden·(input + hidden) per layer.
"""
import time

import numpy as np

from .backend import ensure_init, sync

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def build_pair(cell, n_in, hidden, layers, seed=0, torch_device=None):
    """An mpsrnn layer and, where PyTorch's math is the same, the equivalent torch module.

    LSTM and tanh-RNN map exactly (MPS with PyTorch's neurons); GRU does not (PyTorch's
    GRU applies the reset gate after the recurrent product), so its peer is PyTorch's
    GRU of the same size, for timing only.
    """
    import mpsrnn as m
    torch = _torch()
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(hidden)
    descs, tmod = [], None
    if torch is not None:
        ctor = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        tmod = ctor(n_in, hidden, num_layers=layers).to(torch_device or "cpu").eval()
    for layer in range(layers):
        i = n_in if layer == 0 else hidden
        G = GATES[cell]
        w_ih = rng.uniform(-k, k, (G * hidden, i)).astype(np.float32)
        w_hh = rng.uniform(-k, k, (G * hidden, hidden)).astype(np.float32)
        b = rng.uniform(-k, k, G * hidden).astype(np.float32)
        if tmod is not None:
            with torch.no_grad():
                getattr(tmod, f"weight_ih_l{layer}").copy_(torch.from_numpy(w_ih))
                getattr(tmod, f"weight_hh_l{layer}").copy_(torch.from_numpy(w_hh))
                getattr(tmod, f"bias_ih_l{layer}").copy_(torch.from_numpy(b))
                getattr(tmod, f"bias_hh_l{layer}").zero_()
        descs.append(_descriptor(m, cell, i, hidden, w_ih, w_hh, b))
    return m.RNNMatrixInferenceLayer(descs), tmod


def _descriptor(m, cell, n_in, hidden, w_ih, w_hh, b):
    H = hidden
    cw = m.ConvolutionWeights
    if cell == "lstm":  # PyTorch gate order i, f, g, o == MPS input, forget, cell, output
        d = m.LSTMDescriptor(n_in, H, use_float32_weights=True)
        for g, name in enumerate(("input", "forget", "cell", "output")):
            neuron = m.Neuron("tanh" if name == "cell" else "sigmoid")
            sl = slice(g * H, (g + 1) * H)
            setattr(d, f"{name}_gate_input_weights", cw(w_ih[sl], b[sl], neuron))
            setattr(d, f"{name}_gate_recurrent_weights", cw(w_hh[sl]))
        return d
    if cell == "rnn":
        return m.RNNSingleGateDescriptor(n_in, H, use_float32_weights=True,
                                         input_weights=cw(w_ih, b, m.Neuron("tanh")), recurrent_weights=cw(w_hh))
    d = m.GRUDescriptor(n_in, H, use_float32_weights=True)  # PyTorch order r, z, n
    d.recurrent_gate_input_weights = cw(w_ih[:H], b[:H], m.Neuron("sigmoid"))
    d.recurrent_gate_recurrent_weights = cw(w_hh[:H])
    d.input_gate_input_weights = cw(w_ih[H:2 * H], b[H:2 * H], m.Neuron("sigmoid"))
    d.input_gate_recurrent_weights = cw(w_hh[H:2 * H])
    d.output_gate_input_weights = cw(w_ih[2 * H:], b[2 * H:], m.Neuron("tanh"))
    d.output_gate_recurrent_weights = cw(w_hh[2 * H:])
    return d


def _percentiles(seconds, steps):
    us = np.asarray(seconds) / steps * 1e6
    return {"median_us": float(np.median(us)), "p20_us": float(np.percentile(us, 20)),
            "p80_us": float(np.percentile(us, 80))}


def time_config(cell="lstm", n_in=512, hidden=512, batch=16, steps=100, layers=1, repeats=20, warmup=3,
                seed=0):
    """Per-step timings of mpsrnn and PyTorch for one configuration, as a dict."""
    arch = ensure_init()
    torch = _torch()
    tdev = "cuda" if arch in ("cuda", "vulkan") and torch is not None and torch.cuda.is_available() else "cpu"
    layer, tmod = build_pair(cell, n_in, hidden, layers, seed, tdev)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((steps, batch, n_in)).astype(np.float32)
    import mpsrnn as m
    xs = m.MatrixSequence.from_numpy(x)  # one device storage; checked in O(1) per call
    ours = layer.encode_sequence(xs)  # compiles kernels, builds the plan

    def run_ours():
        layer.encode_sequence(xs, ours)
        sync()

    plan = next(iter(layer._plans._plans.values()))
    result = {"cell": cell, "input": n_in, "hidden": hidden, "batch": batch, "steps": steps, "layers": layers,
              "arch": arch, "launch": layer._launch.name, "recurrence": "+".join(sorted(set(plan.recurrences))),
              "flops_per_step": 2.0 * batch * GATES[cell] * hidden * (n_in + hidden + (layers - 1) * 2 * hidden)}
    t_ours, t_torch = [], []
    run_torch = None
    if tmod is not None:
        xt = torch.from_numpy(x).to(tdev)

        def run_torch():
            with torch.no_grad():
                out = tmod(xt)[0]
            if tdev == "cuda":
                torch.cuda.synchronize()
            return out
        if cell != "gru":
            # compare in true float32: cuDNN may use TF32 tensor cores by default (timed as is below)
            tf32 = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = False
            ref = run_torch().float().cpu().numpy()
            torch.backends.cudnn.allow_tf32 = tf32
            got = np.stack([np.asarray(y) for y in ours])
            result["max_abs_diff_vs_torch"] = float(np.abs(ref - got).max())
    for _ in range(warmup):
        run_ours()
        if run_torch:
            run_torch()
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_ours()
        t_ours.append(time.perf_counter() - t0)
        if run_torch:
            t0 = time.perf_counter()
            run_torch()
            t_torch.append(time.perf_counter() - t0)
    result["mpsrnn"] = _percentiles(t_ours, steps)
    if t_torch:
        result["torch"] = _percentiles(t_torch, steps)
        result["torch_device"] = tdev
        result["ratio"] = result["mpsrnn"]["median_us"] / result["torch"]["median_us"]
        result["same_math"] = cell != "gru"
    result["mpsrnn"]["tflops"] = result["flops_per_step"] / (result["mpsrnn"]["median_us"] * 1e-6) / 1e12
    return result


def format_row(r):
    ours = r["mpsrnn"]
    line = (f"{r['cell']:>4} in={r['input']:<5} hidden={r['hidden']:<5} batch={r['batch']:<4} steps={r['steps']:<5} "
            f"layers={r['layers']}  mpsrnn {ours['median_us']:9.1f} us/step [{ours['p20_us']:.1f}, "
            f"{ours['p80_us']:.1f}] ({ours['tflops']:.4f} TFLOP/s, {r['arch']}, {r['recurrence']}, {r['launch']})")
    if "torch" in r:
        t = r["torch"]
        note = "" if r.get("same_math", True) else "  (GRU: PyTorch's reset-after GRU, timing only)"
        line += (f"   torch {t['median_us']:9.1f} us/step [{t['p20_us']:.1f}, {t['p80_us']:.1f}] ({r['torch_device']})"
                 f"   ratio {r['ratio']:.2f}{note}")
    else:
        line += "   (PyTorch not installed: mpsrnn alone)"
    return line
