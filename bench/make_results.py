"""Regenerate bench/RESULTS.md from the measured records in bench/results/.

    python bench/make_results.py

Each ``results/*.json`` is what ``mpsrnn bench --suite NAME --json FILE`` wrote
on one machine (its environment: device, arch, versions, date). This script
only formats them: the tables, the issue's targets checked against them, and
``analysis.md`` (what bounds each miss, what was tried) appended as written.
To refresh a machine's numbers, rerun the suite there and replace its file.
"""
import glob
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE_ORDER = ["smoke", "deepbench-inference", "small-hidden", "large-batch", "stacks"]


def load():
    runs = []
    for path in sorted(glob.glob(os.path.join(HERE, "results", "*.json"))):
        with open(path) as f:
            data = json.load(f)
        data["file"] = os.path.relpath(path, HERE)
        runs.append(data)
    return runs


def machine(run):
    env = run["environment"]
    return f"{env['device']} ({env['arch']})"


def table(run):
    out = ["| configuration | mpsrnn µs/step [p20, p80] | TFLOP/s | PyTorch µs/step [p20, p80] | ratio | mpsrnn path |",
           "|---|---|---|---|---|---|"]
    for r in run["records"]:
        ours, t = r["mpsrnn"], r.get("torch")
        peer = f"{t['median_us']:.1f} [{t['p20_us']:.1f}, {t['p80_us']:.1f}]" if t else "n/a"
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") else "n/a"
        note = "" if r.get("same_math", True) else " ¹"
        if r.get("note"):
            note += " ²"
        out.append(f"| {r['label']}{note} | {ours['median_us']:.1f} [{ours['p20_us']:.1f}, {ours['p80_us']:.1f}] | "
                   f"{ours['tflops']:.3f} | {peer} | {ratio} | {r['recurrence']}, {r['launch']} |")
    return "\n".join(out)


def find(runs, arch, suite, on=None):
    """The newest run of ``suite`` on ``arch`` (results/ keeps one per machine, and the GPU lent to
    this project has changed: the H100's runs stay listed below the targets, but newer ones count);
    ``on``: only runs on that device."""
    found = [r for r in runs if r["environment"]["arch"] == arch and r["suite"] == suite
             and on in (None, r["environment"]["device"])]
    return max(found, key=lambda r: r["environment"]["date"]) if found else None


def device(runs, arch, *suites):
    """The short name of the device whose runs of ``suites`` on ``arch`` count, e.g. 'H200'."""
    names = sorted({find(runs, arch, s)["environment"]["device"].split()[1] for s in suites if find(runs, arch, s)})
    return "/".join(names) or "GPU"


def summarize(ratios, goal):
    if not ratios:
        return "not measured", "-", "-"
    met = sum(x <= goal for x in ratios)
    return f"{met} of {len(ratios)} meet it", f"{statistics.median(ratios):.2f}", f"{max(ratios):.2f}"


def targets(runs):
    rows = []

    def ratios(arch, suite, keep=lambda r: True):
        run = find(runs, arch, suite)
        return [r["ratio"] for r in run["records"] if r.get("ratio") and keep(r)] if run else []
    rows.append((f"{device(runs, 'cuda', 'deepbench-inference')} CUDA, deepbench-inference, batch 1–4", "≤ 0.5",
                 *summarize(ratios("cuda", "deepbench-inference"), 0.5)))
    big = ratios("cuda", "stacks") + [x for s in SUITE_ORDER for x in ratios("cuda", s, lambda r: r["batch"] >= 16)
                                      if s != "stacks"]
    unrun = [s for s in ("large-batch", "stacks") if not find(runs, "cuda", s)]   # say what the count leaves out
    rows.append((f"{device(runs, 'cuda', 'stacks')} CUDA, batch 16–128 and stacks"
                 + (f" ({', '.join(unrun)}: not run yet)" if unrun else ""), "≤ 1.0", *summarize(big, 1.0)))
    rows.append((f"{device(runs, 'cuda', 'small-hidden')} CUDA, small-hidden", "≤ 1.0",
                 *summarize(ratios("cuda", "small-hidden"), 1.0)))
    rows.append(("this project's CPU, smoke", "≤ 1.0", *summarize(ratios("cpu", "smoke"), 1.0)))
    vk = []
    for suite in SUITE_ORDER:
        # the newest Vulkan run against the CUDA run of the same device (not a newer GPU's)
        vu = find(runs, "vulkan", suite)
        cu = vu and find(runs, "cuda", suite, on=vu["environment"]["device"])
        if cu and vu:
            cuda_us = {r["label"]: r["mpsrnn"]["median_us"] for r in cu["records"]}
            vk += [r["mpsrnn"]["median_us"] / cuda_us[r["label"]] for r in vu["records"] if r["label"] in cuda_us]
    rows.append((f"{device(runs, 'vulkan', *SUITE_ORDER)} Vulkan time / CUDA time, same configurations", "≤ 1.3",
                 *summarize(vk, 1.3)))
    out = ["| target | goal | configurations | median | worst |", "|---|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    return "\n".join(out)


def main():
    import argparse
    p = argparse.ArgumentParser(description="Regenerate bench/RESULTS.md from bench/results/*.json")
    p.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    out_path = p.parse_args().out
    runs = load()
    lines = ["# mpsrnn benchmark results", "",
             "Generated by `bench/make_results.py` from the records in `bench/results/`, each written by "
             "`mpsrnn bench --suite NAME --json FILE` on the machine named. Every figure is a time per "
             "sequence step: the whole call, divided by the number of steps. It includes the input "
             "projection and the host work. mpsrnn and PyTorch ran alternately in one process on the same "
             "device, with the same weights, after warm-up. Each figure is the median of the repeats, with the "
             "20th and 80th percentiles in brackets. ratio = mpsrnn / PyTorch, so lower is better. TFLOP/s "
             "counts 2 × batch × gates × hidden × (input + hidden) per step, per layer and direction. "
             "mpsrnn runs float32 weights and data here (`use_float32_weights=True`) against PyTorch float32. "
             "cuDNN's timings keep PyTorch's default TF32 setting, and the correctness comparison turns TF32 off.",
             "", "¹ GRU: PyTorch applies the reset gate after the recurrent product and MPS before, so the math "
             "differs and the ratio only gives scale. ² See the note in the record.", "",
             "## Targets (issue: speed of the matrix inference path)", "",
             "Each target counts the newest run of each suite on each arch; every run is listed below it.", "",
             targets(runs), ""]
    order = {s: i for i, s in enumerate(SUITE_ORDER)}
    for run in sorted(runs, key=lambda r: (machine(r), order.get(r["suite"], 9))):
        env = run["environment"]
        lines += [f"## {machine(run)}: {run['suite']}", "",
                  f"{env['date']}; mpsrnn {env['mpsrnn']}, Taichi {env['taichi']}, PyTorch {env.get('torch')}"
                  + (f" (cuDNN {env['cudnn']})" if env.get("cudnn") else "")
                  + f", NumPy {env['numpy']}, Python {env['python']}; `{run['file']}`", ""]
        if run.get("partial"):
            lines += [f"**Partial:** {run['partial']}.", ""]
        if any(r.get("settled") for r in run["records"]):
            lines += ["Settled: each timed call followed untimed ones of its own (`benchmark.settle_seconds`: "
                      "on the CPU, PyTorch's OpenMP worker keeps a core busy for ~10 ms after its call; Vulkan "
                      "and CUDA on one GPU pay a switch between their contexts).", ""]
        lines += [table(run), ""]
    with open(os.path.join(HERE, "analysis.md")) as f:
        lines += [f.read().rstrip(), ""]
    with open(out_path, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {out_path} from {len(runs)} runs")


if __name__ == "__main__":
    main()
