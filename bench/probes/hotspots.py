"""Where a GPU kernel's warps stall, instruction by instruction, from an ncu report (CUDA).

    # on the GPU machine: profile one launch of a recurrence kernel, then export its SASS view
    MPSRNN_RECURRENCE=spread ncu -k regex:spread -s 2 -c 1 --set full -o rep \\
        python bench/profile_call.py --arch cuda --hidden 512 --batch 64 --steps 30
    ncu -i rep.ncu-rep --page source --csv --print-source sass > rep.csv
    # anywhere
    python bench/probes/hotspots.py rep.csv [--all] [--regions 50]

Prints the stall reasons summed over the kernel, then every SASS instruction that holds at least
0.4% of the warp samples (``--all``: every instruction) with its execution count and its two top
stall reasons. ``--regions N`` adds the share of the samples in each run of N instructions (1% or
more) and the local-memory (spill) instructions executed there: a kernel's phases, and where it
spills. Found this way (2026-12-01, H200): the spread and persistent kernels' copies of h to
shared memory waited one L2 round trip per element (a ``long_sb`` stall on each STS), and a pass
of the spread kernel ends with seven warps at the block barrier while one finishes the gate math;
the split kernel's products wait on one shared load at a time (twelfth session).
Taichi kernels have no source lines, so the SASS is the view; ``ptx.py`` dumps the PTX beside it.
"""
import argparse
import csv


def main():
    p = argparse.ArgumentParser()
    p.add_argument("csv", help="ncu --page source --csv --print-source sass output")
    p.add_argument("--all", action="store_true", help="list every instruction")
    p.add_argument("--regions", type=int, default=0, metavar="N",
                   help="also sum the samples over runs of N instructions")
    a = p.parse_args()
    with open(a.csv) as f:
        rows = list(csv.reader(f))
    head = next(i for i, r in enumerate(rows) if "Source" in r)
    cols, body = rows[head], [r for r in rows[head + 1:] if len(r) == len(rows[head])]
    samples = cols.index("Warp Stall Sampling (All Samples)")
    executed = cols.index("Instructions Executed")
    reasons = [c for c in cols if c.startswith("stall_") and "Not Issued" not in c]

    def count(row, col):
        value = row[cols.index(col)] if isinstance(col, str) else row[col]
        return int(value) if value.strip().isdigit() else 0

    total = sum(count(r, samples) for r in body)
    print(f"{total} warp samples over {len(body)} instructions")
    summed = sorted(((sum(count(r, c) for r in body), c[6:]) for c in reasons), reverse=True)
    print("stalls:", ", ".join(f"{name} {n / max(total, 1):.0%}" for n, name in summed[:8]))
    for i, r in enumerate(body):
        n = count(r, samples)
        if a.all or n >= 0.004 * total:
            top = sorted(((count(r, c), c[6:]) for c in reasons), reverse=True)[:2]
            why = ", ".join(f"{name} {k}" for k, name in top if k)
            print(f"{i:5d} {n:7d} {count(r, executed):10d}  {r[1].strip()[:56]:56s} {why}")
    if a.regions:
        print(f"runs of {a.regions} instructions: first, share of the samples, local loads and stores executed")
        for lo in range(0, len(body), a.regions):
            run = body[lo:lo + a.regions]
            n = sum(count(r, samples) for r in run)
            spills = sum(count(r, executed) for r in run if r[1].strip().startswith(("LDL", "STL")))
            if n >= 0.01 * total:
                print(f"{lo:5d} {n / max(total, 1):6.1%} {spills:10d}")


if __name__ == "__main__":
    main()
