"""A/B of planning knobs on the same configurations, in one process, rounds alternating.

    python bench/probes/ab.py --arch cuda \\
        --config lstm:512:16:100:bidi --config lstm:512:64:100:bidi \\
        --variant MPSRNN_PAIR_DIRECTIONS=off --variant MPSRNN_PAIR_DIRECTIONS=on

A config is cell:hidden:batch:steps[:layers][:bidi] (input = hidden, as in DeepBench); a variant is
a list of NAME=VALUE settings of ``MPSRNN_`` knobs joined by commas (empty: the defaults). Each
timing builds its layer anew, so its plan reads the knobs as they are then, and variants can
alternate in one process with no restart between them. Every round times each variant once per
config (``mpsrnn bench``'s timing: warm-up, then repeats, PyTorch alternately), so a drift of the
machine shows up as a drift across rounds rather than as a difference between variants. Prints µs
a step per round, the median over rounds, the path taken, the largest difference from PyTorch
where the math is the same, and the median of each round's ratio to PyTorch (on a machine whose
speed drifts between rounds, the peer timed beside each variant is the steadier ruler).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import mpsrnn  # noqa: E402
from mpsrnn.benchmark import Config, time_config  # noqa: E402


def parse_config(text):
    parts = text.split(":")
    cell, hidden, batch, steps = parts[0], int(parts[1]), int(parts[2]), int(parts[3])
    layers = int(parts[4]) if len(parts) > 4 and parts[4].isdigit() else 1
    return Config(cell, hidden, hidden, batch, steps, layers, bidirectional="bidi" in parts[4:])


def layer_calls(text, torch_device="cuda"):
    """(config, ours, theirs) for ``text``: one call of the mpsrnn layer and one of PyTorch's, with the
    same weights and input, each with its synchronisation (encode_sequence's calls only)."""
    import torch
    from mpsrnn.backend import sync
    from mpsrnn.benchmark import build_pair
    cfg = parse_config(text)
    if cfg.bidirectional:
        raise SystemExit(f"--config {text}: encode_sequence's calls only (no bidi)")
    layer, tmod = build_pair(cfg, torch_device=torch_device)
    x = np.random.default_rng(1).standard_normal((cfg.steps, cfg.batch, cfg.input)).astype(np.float32)
    xs = mpsrnn.MatrixSequence.from_numpy(x)
    ys = layer.encode_sequence(xs)
    xt = torch.from_numpy(x).to(torch_device)

    def ours():
        layer.encode_sequence(xs, ys)
        sync()

    def theirs():
        with torch.no_grad():
            tmod(xt)
        if torch_device == "cuda":
            torch.cuda.synchronize()
    return cfg, ours, theirs


def parse_variant(text):
    settings = dict(item.split("=", 1) for item in text.split(",") if item)
    unknown = [name for name in settings if not name.startswith("MPSRNN_")]
    if unknown:
        raise SystemExit(f"--variant: expected MPSRNN_ settings, got {', '.join(unknown)}")
    return settings


def timing_arguments(rounds):
    """The arguments ab.py and ab_trees.py share: --arch, --config, --rounds, --repeats."""
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default=None)
    p.add_argument("--config", action="append", required=True)
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--repeats", type=int, default=7)
    return p


def main():
    p = timing_arguments(rounds=3)
    p.add_argument("--variant", action="append", required=True)
    a = p.parse_args()
    mpsrnn.init(a.arch)
    configs = [parse_config(c) for c in a.config]
    variants = [(v or "defaults", parse_variant(v)) for v in a.variant]
    times, ratios = {}, {}
    for rnd in range(a.rounds):
        for cfg in configs:
            for name, settings in variants:
                for knob in {name for _, v in variants for name in v}:
                    os.environ.pop(knob, None)
                os.environ.update(settings)
                r = time_config(cfg, repeats=a.repeats, warmup=2)
                times.setdefault((cfg.label, name), []).append(r["mpsrnn"]["median_us"])
                if r.get("ratio") is not None:
                    ratios.setdefault((cfg.label, name), []).append(r["ratio"])
                peer = f"{r['torch']['median_us']:8.2f}" if r.get("torch") else "       -"
                diff = r.get("max_abs_diff_vs_torch")
                print(f"round {rnd}  {cfg.label:28s} {name:36s} {r['mpsrnn']['median_us']:8.2f} us/step  "
                      f"PyTorch {peer}  {r['recurrence']:12s}" + (f" diff {diff:.1e}" if diff is not None else ""),
                      flush=True)
    print("\nmedian over rounds, us a step")
    for cfg in configs:
        row = "  ".join(f"{name} {np.median(times[(cfg.label, name)]):8.2f}" for name, _ in variants)
        print(f"{cfg.label:28s} {row}")
    if ratios:   # where the machine drifts (this project's CPU VM), the same round's PyTorch time is the ruler
        print("\nmedian over rounds of the ratio to PyTorch in the same round")
        for cfg in configs:
            row = "  ".join(f"{name} {np.median(ratios[(cfg.label, name)]):6.2f}" for name, _ in variants
                            if (cfg.label, name) in ratios)
            print(f"{cfg.label:28s} {row}")


if __name__ == "__main__":
    main()
