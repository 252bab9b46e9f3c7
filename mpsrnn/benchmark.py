"""Timing recurrent configurations next to PyTorch, in the same process.

mpsrnn and PyTorch are timed alternately, after warm-up (``warmup`` calls of each, and
at least WARMUP_SECONDS of them), with a device
synchronisation at the end of every timed call, and reported per time step as
the median and the 20th/80th percentiles of the repeats. Where a call right
after the other library's work pays for that work, each timed call follows
untimed ones of its own (the record's ``settled``; ``settle_seconds``), as a
user of one library calls it: on the CPU, PyTorch's OpenMP worker keeps a core
busy for ~10 ms after its call; where mpsrnn runs on Vulkan and PyTorch on
CUDA on the same GPU, a call pays a switch between the two APIs' contexts.
The same weights are loaded into both and the outputs compared (PyTorch with
TF32 off), so a timing never hides a wrong result. TFLOP/s count the
multiply-adds of the input and recurrent products, 2 x batch x gates x hidden
x (input + hidden) per step, per layer and direction (a layer above the first
has input = hidden).

PyTorch's LSTM and tanh-RNN are MPS's LSTM and single gate with the matching
neurons (same math). Its GRU applies the reset gate after the recurrent product,
MPS's before: its timing is shown next to ours for scale, marked "not same math".
"""
import time
from dataclasses import asdict, dataclass

import numpy as np

from .backend import ensure_init, sync

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
WARMUP_SECONDS = 0.2   # the least time ``time_config`` warms up for
SETTLE_SECONDS = 0.02  # on the CPU, the least time of a side's untimed calls before its timed one


@dataclass(frozen=True)
class Config:
    cell: str = "lstm"
    input: int = 256
    hidden: int = 256
    batch: int = 1
    steps: int = 50
    layers: int = 1
    bidirectional: bool = False
    dtype: str = "float32"

    @property
    def label(self):
        s = f"{self.cell} {self.input}->{self.hidden} b{self.batch} t{self.steps}"
        if self.layers > 1:
            s += f" x{self.layers}"
        if self.bidirectional:
            s += " bidi"
        if self.dtype != "float32":
            s += f" {self.dtype}"
        return s

    def flops_per_step(self):
        G, H = GATES[self.cell], self.hidden
        per_dir = sum(2.0 * self.batch * G * H * ((self.input if k == 0 else H) + H) for k in range(self.layers))
        return per_dir * (2 if self.bidirectional else 1)


def _deepbench():
    # Baidu DeepBench's inference RNN problems (kernels/rnn_problems.h): (hidden, batch, steps, cell);
    # input = hidden, as DeepBench runs them. "vanilla" is a tanh RNN.
    server = [(h, b, t, "lstm") for h, t in ((512, 25), (1024, 25), (2048, 25), (1536, 50), (256, 150))
              for b in (1, 2, 4)]
    server += [(h, b, t, "gru") for h in (2816, 2048, 1536, 2560) for b in (1, 2, 4) for t in (1500, 750, 375, 187)]
    server += [(512, b, 1, "gru") for b in (1, 2, 4)] + [(1024, b, 1500, "gru") for b in (1, 2, 4)]
    device = [(32, 1, 672, "vanilla"), (64, 1, 96, "vanilla"), (256, 1, 150, "lstm")]
    cell = {"vanilla": "rnn", "lstm": "lstm", "gru": "gru"}
    return [Config(cell[c], h, h, b, t) for h, b, t, c in server + device]


SUITES = {
    # seconds on a CPU; includes the project's CPU target, LSTM hidden 256 batch 1
    "smoke": [Config("lstm", 64, 64, 1, 50), Config("lstm", 256, 256, 1, 50), Config("gru", 128, 128, 2, 50),
              Config("rnn", 128, 128, 4, 50), Config("lstm", 64, 64, 2, 25, layers=2),
              Config("lstm", 64, 64, 2, 25, bidirectional=True)],
    "deepbench-inference": _deepbench(),
    # long sequences over small states: where cuDNN's persistent kernels shine
    "small-hidden": [Config(c, h, h, b, t) for c, h, b, t in (
        ("lstm", 32, 1, 2000), ("lstm", 64, 1, 1000), ("lstm", 64, 8, 1000), ("lstm", 128, 1, 1000),
        ("lstm", 128, 8, 1000), ("lstm", 192, 4, 1000), ("gru", 64, 1, 1000), ("gru", 128, 8, 1000),
        ("rnn", 128, 4, 2000))],
    # single layers at batch 16-128, the rest of that target's range beside the stacks (t100)
    "large-batch": [Config(c, h, h, b, 100) for c, h, b in (
        ("lstm", 256, 64), ("lstm", 512, 16), ("lstm", 512, 64), ("lstm", 512, 128), ("lstm", 1024, 16),
        ("lstm", 1024, 32), ("lstm", 1024, 64), ("lstm", 1024, 128), ("gru", 512, 64), ("gru", 1024, 64),
        ("rnn", 1024, 64))],
    "stacks": [Config("lstm", 512, 512, 64, 100, layers=4), Config("lstm", 512, 512, 16, 100, bidirectional=True),
               Config("lstm", 512, 512, 64, 100, bidirectional=True)],
}


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def _descriptor(m, cell, n_in, hidden, w_ih, w_hh, b, float32_weights, direction):
    H = hidden
    cw = m.ConvolutionWeights
    props = dict(use_float32_weights=float32_weights, layer_sequence_direction=direction)
    if cell == "lstm":  # PyTorch gate order i, f, g, o == MPS input, forget, cell, output
        d = m.LSTMDescriptor(n_in, H, **props)
        for g, name in enumerate(("input", "forget", "cell", "output")):
            neuron = m.Neuron("tanh" if name == "cell" else "sigmoid")
            sl = slice(g * H, (g + 1) * H)
            setattr(d, f"{name}_gate_input_weights", cw(w_ih[sl], b[sl], neuron))
            setattr(d, f"{name}_gate_recurrent_weights", cw(w_hh[sl]))
        return d
    if cell == "rnn":
        return m.RNNSingleGateDescriptor(n_in, H, input_weights=cw(w_ih, b, m.Neuron("tanh")),
                                         recurrent_weights=cw(w_hh), **props)
    d = m.GRUDescriptor(n_in, H, **props)  # PyTorch order r, z, n (its math differs: timing only)
    d.recurrent_gate_input_weights = cw(w_ih[:H], b[:H], m.Neuron("sigmoid"))
    d.recurrent_gate_recurrent_weights = cw(w_hh[:H])
    d.input_gate_input_weights = cw(w_ih[H:2 * H], b[H:2 * H], m.Neuron("sigmoid"))
    d.input_gate_recurrent_weights = cw(w_hh[H:2 * H])
    d.output_gate_input_weights = cw(w_ih[2 * H:], b[2 * H:], m.Neuron("tanh"))
    d.output_gate_recurrent_weights = cw(w_hh[2 * H:])
    return d


def build_pair(cfg, seed=0, torch_device="cpu"):
    """An mpsrnn layer and the PyTorch module with the same weights (None without PyTorch).

    Bidirectional: one layer per direction (PyTorch's upper bidirectional layers read both
    directions, MPS's read their own; one layer each is the same math in both).
    """
    import mpsrnn as m
    torch = _torch()
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(cfg.hidden)
    G, H = GATES[cfg.cell], cfg.hidden
    tmod = None
    if torch is not None:
        ctor = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cfg.cell]
        tmod = ctor(cfg.input, H, num_layers=cfg.layers, bidirectional=cfg.bidirectional).to(torch_device).eval()
        if cfg.dtype == "float16":
            tmod = tmod.half()
    descs = []
    directions = (("", m.SequenceDirection.FORWARD), ("_reverse", m.SequenceDirection.BACKWARD))
    for suffix, direction in directions[: 2 if cfg.bidirectional else 1]:
        for layer in range(cfg.layers):
            n_in = cfg.input if layer == 0 else H * (2 if cfg.bidirectional else 1)
            w_ih = rng.uniform(-k, k, (G * H, n_in)).astype(np.float32)
            w_hh = rng.uniform(-k, k, (G * H, H)).astype(np.float32)
            b = rng.uniform(-k, k, G * H).astype(np.float32)
            if tmod is not None:
                with torch.no_grad():
                    getattr(tmod, f"weight_ih_l{layer}{suffix}").copy_(torch.from_numpy(w_ih))
                    getattr(tmod, f"weight_hh_l{layer}{suffix}").copy_(torch.from_numpy(w_hh))
                    getattr(tmod, f"bias_ih_l{layer}{suffix}").copy_(torch.from_numpy(b))
                    getattr(tmod, f"bias_hh_l{layer}{suffix}").zero_()
            if cfg.bidirectional and layer > 0:
                w_ih = w_ih[:, :H]  # MPS: a direction's upper layer reads only its own direction
            descs.append(_descriptor(m, cfg.cell, w_ih.shape[1], H, w_ih, w_hh, b, cfg.dtype == "float32", direction))
    layer = m.RNNMatrixInferenceLayer(descs)
    if cfg.bidirectional:
        layer.bidirectional_combine_mode = m.BidirectionalCombineMode.CONCATENATE
    return layer, tmod


def _percentiles(seconds, steps):
    us = np.asarray(seconds) / steps * 1e6
    return {"median_us": float(np.median(us)), "p20_us": float(np.percentile(us, 20)),
            "p80_us": float(np.percentile(us, 80))}


def time_config(cfg, repeats=10, warmup=3, seed=0):
    """Per-step timings of mpsrnn and PyTorch for ``cfg``, as a JSON-ready record."""
    import mpsrnn as m
    arch = ensure_init()
    torch = _torch()
    gpu = arch in ("cuda", "vulkan") and torch is not None and torch.cuda.is_available()
    tdev = "cuda" if gpu else "cpu"
    layer, tmod = build_pair(cfg, seed, tdev)
    np_type = np.float16 if cfg.dtype == "float16" else np.float32
    x = np.random.default_rng(seed + 1).standard_normal((cfg.steps, cfg.batch, cfg.input)).astype(np_type)
    xs = m.MatrixSequence.from_numpy(x)  # one device storage, checked in O(1) per call
    encode = layer.encode_bidirectional_sequence if cfg.bidirectional else layer.encode_sequence
    ours = encode(xs)  # compiles kernels, builds the plan
    if cfg.bidirectional:
        ours = ours[0]

    def run_ours():
        encode(xs, ours)
        sync()

    plan = next(iter(layer._plans._plans.values()))
    record = dict(asdict(cfg), label=cfg.label, arch=arch, launch=layer._launch.name,
                  recurrence="+".join(sorted(set(plan.recurrences))), flops_per_step=cfg.flops_per_step(),
                  same_math=cfg.cell != "gru")
    t_ours, t_torch = [], []
    run_torch = None
    if tmod is not None:
        xt = torch.from_numpy(x).to(tdev)

        def run_torch():
            with torch.no_grad():
                out = tmod(xt)[0]
            if gpu:
                torch.cuda.synchronize()
            return out
        if record["same_math"]:
            tf32 = torch.backends.cudnn.allow_tf32   # compare in true float32 (timed with the defaults)
            torch.backends.cudnn.allow_tf32 = False
            ref = run_torch().float().cpu().numpy()
            torch.backends.cudnn.allow_tf32 = tf32
            got = np.stack([np.asarray(y, np.float32) for y in ours])
            record["max_abs_diff_vs_torch"] = float(np.abs(ref - got).max())
    # warm-up: ``warmup`` calls of each, alternating, and on for at least WARMUP_SECONDS. A machine
    # that has idled (while the layer compiled) runs both slowly for its first ~0.15 s of work: on
    # this project's 2-core VM, LSTM 256 b1 t50 timed right after its first call, then again in the
    # same process, µs a step: ours 17.2, 16.2, 12.6, 10.4, PyTorch 15.7, 15.9, 13.7, 13.1
    started = time.perf_counter()
    calls = 0
    while calls < warmup or time.perf_counter() - started < WARMUP_SECONDS:
        run_ours()
        if run_torch:
            run_torch()
        calls += 1
    settle = settle_seconds(arch, gpu) if run_torch else None
    record["settled"] = settle is not None
    for _ in range(repeats):
        t_ours.append(_timed_call(run_ours, settle))
        if run_torch:
            t_torch.append(_timed_call(run_torch, settle))
    record["mpsrnn"] = _percentiles(t_ours, cfg.steps)
    record["mpsrnn"]["tflops"] = cfg.flops_per_step() / (record["mpsrnn"]["median_us"] * 1e-6) / 1e12
    if t_torch:
        record["torch"] = _percentiles(t_torch, cfg.steps)
        record["torch"]["tflops"] = cfg.flops_per_step() / (record["torch"]["median_us"] * 1e-6) / 1e12
        record["torch_device"] = "cuDNN" if gpu else "cpu"
        record["ratio"] = record["mpsrnn"]["median_us"] / record["torch"]["median_us"]
    else:
        record["torch"] = None
        record["ratio"] = None
    return record


def settle_seconds(arch, gpu):
    """How long each side runs untimed calls of its own before each timed one (at least one call),
    or None where a timed call may follow the other side's at once.

    * CPU (``SETTLE_SECONDS``): after its call, PyTorch's OpenMP worker spins on one of the cores for
      some ms, then sleeps. A call of ours that needs both cores meanwhile shares one with it. On
      this project's 2-core EPYC VM, LSTM 128 b8 t100, µs a step of our k-th call after a PyTorch
      call (ms since it): 23.9 (0), 22.2 (2.4), 12.7, 13.3, 23.0 (7.3), 17.0 (9.4), then 12.3-12.8
      from 11 ms on; at t1000, ours right after PyTorch 19.4, after one of ours 12.5. PyTorch's
      own steps do not wait on ours (7.3 µs a step after its own call, 7.6 after ours).
    * Vulkan beside CUDA on one GPU (one call): a Vulkan call right after CUDA work took 0.58 ms more
      on the H200, and cuDNN's calls after Vulkan work ~0.36 ms more
      (bench/results/h200-vulkan-probe-sync.txt, the deepbench records), a switch between the two
      APIs' contexts.
    * CUDA: none (the host threads wait on the GPU)."""
    if arch == "cpu":
        return SETTLE_SECONDS
    if arch == "vulkan" and gpu:
        return 0.0
    return None


def _timed_call(run, settle):
    """Seconds one call of ``run`` takes, after untimed calls of it for ``settle`` seconds (at least
    one; none where ``settle`` is None)."""
    if settle is not None:
        started = time.perf_counter()
        run()
        while time.perf_counter() - started < settle:
            run()
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


HEADER = (f"{'configuration':34s} {'mpsrnn us/step [p20, p80]':>28s} {'TFLOP/s':>8s} "
          f"{'PyTorch us/step [p20, p80]':>28s} {'ratio':>6s}  path")


def format_row(r):
    ours = r["mpsrnn"]
    line = (f"{r['label']:34s} {ours['median_us']:10.1f} [{ours['p20_us']:7.1f}, {ours['p80_us']:7.1f}] "
            f"{ours['tflops']:8.3f} ")
    if r.get("torch"):
        t = r["torch"]
        line += f"{t['median_us']:10.1f} [{t['p20_us']:7.1f}, {t['p80_us']:7.1f}] {r['ratio']:6.2f}"
    else:
        line += f"{'(no PyTorch)':>28s} {'-':>6s}"
    line += f"  {r['arch']}/{r['recurrence']}/{r['launch']}"
    if not r.get("same_math", True):
        line += "  (GRU: PyTorch's is reset-after, not same math)"
    return line
