"""A/B of two source trees (say main and a branch), rounds alternating, each tree in its own process.

    git archive main | (mkdir -p ab_main && tar -x -C ab_main)     # an untracked copy of main
    python bench/probes/ab_trees.py --arch cuda --tree ab_main --tree . \\
        --config gru:512:1:1 --config lstm:512:1:25 --rounds 2

Kernel changes cannot be A/B'd by knobs in one process as ``ab.py`` does, so each round runs
``ab.py`` once (one round, the defaults) in each tree, with that tree first on the path, the trees
taking turns: a drift of the machine shows up across rounds rather than between trees. Prints µs a
step per round and tree, then the median over rounds of the ratio to PyTorch timed beside it (the
steadier ruler where the machine drifts). ``--config`` is ``ab.py``'s.
"""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ab import timing_arguments  # noqa: E402   (bench/probes/ab.py, this script's folder)


def run_round(tree, configs, arch, repeats):
    """One round of ``tree``'s own ab.py (the defaults): [(config, µs a step, PyTorch µs, path)], read
    from its "round" lines (ab.py puts its own tree first on the path, so each tree runs its own)."""
    args = [sys.executable, os.path.join("bench", "probes", "ab.py"), "--rounds", "1", "--repeats", str(repeats),
            "--variant", ""] + [a for c in configs for a in ("--config", c)] + (["--arch", arch] if arch else [])
    out = subprocess.run(args, cwd=tree, check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        if line.startswith("round "):   # "round R  <label, 28 wide> <variant> <µs> us/step  PyTorch <µs or -> <path>"
            label = line[9:37].strip()
            _, us, _, _, peer, path = line[38:].split()[:6]
            rows.append((label, float(us), None if peer == "-" else float(peer), path))
    if len(rows) != len(configs):
        raise SystemExit(f"{tree}: expected {len(configs)} timings from ab.py, read {len(rows)}:\n{out}")
    return rows


def main():
    p = timing_arguments(rounds=2)
    p.add_argument("--tree", action="append", required=True)
    a = p.parse_args()
    got = {}   # (config, tree) -> [(µs, ratio, path)]
    for rnd in range(a.rounds):
        for tree in a.tree:
            for label, us, peer, path in run_round(tree, a.config, a.arch, a.repeats):
                ratio = us / peer if peer else None
                got.setdefault((label, tree), []).append((us, ratio, path))
                print(f"round {rnd}  {tree:12s} {label:28s} {us:8.2f} us/step  PyTorch {peer}  {path}", flush=True)
    labels = list(dict.fromkeys(c for c, _ in got))
    print("\nmedian over rounds: us a step, ratio to PyTorch (" + " / ".join(a.tree) + ")")
    for label in labels:
        cells = []
        for tree in a.tree:
            runs = got[(label, tree)]
            ratios = [q for _, q, _ in runs if q is not None]
            cells.append(f"{np.median([u for u, _, _ in runs]):8.2f} "
                         + (f"({np.median(ratios):.2f})" if ratios else "(-)") + f" {runs[-1][2]}")
        print(f"{label:28s} " + "  /  ".join(cells))


if __name__ == "__main__":
    main()
