"""A layer call for Nsight Compute to profile: a few calls of one config, nothing else timed.

    ncu --kernel-name regex:fromzeros --launch-skip 3 --launch-count 1 --set full \\
        python bench/probes/ncu_target.py --arch cuda --config gru:512:1:1

Building the layer uploads its weights and input through kernels of Taichi's own
(``ext_arr_to_ndarray``...), so an unfiltered ``--launch-skip`` lands on those: filter by the
recurrence kernel's name (``timeline.py`` prints it: ``lstm_spread1x128``, ``gru_fromzeros_spread``,
``persistent``...) and skip the warm-up calls. ``--calls`` calls of ours (default 4), then, with
``--peer``, as many of PyTorch's (filter by cuDNN's kernel names, which ``timeline.py --peer`` prints).
``ncu`` locks the clocks at base (1.49 GHz on the H200, against ~1.98 in normal runs), so its
durations run ~1.3-1.5x ``timeline.py``'s; its counts (instructions, bytes, stalls) are what it is for.
A config is ``ab.py``'s cell:hidden:batch:steps[:layers].
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import mpsrnn  # noqa: E402
from ab import layer_calls  # noqa: E402   (bench/probes/ab.py, this script's folder)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default=None)
    p.add_argument("--config", required=True)
    p.add_argument("--calls", type=int, default=4)
    p.add_argument("--peer", action="store_true", help="then as many calls of PyTorch's layer (cuDNN)")
    a = p.parse_args()
    mpsrnn.init(a.arch)
    _, ours, theirs = layer_calls(a.config)
    for _ in range(a.calls):
        ours()
    if a.peer:
        for _ in range(a.calls):
            theirs()


if __name__ == "__main__":
    main()
