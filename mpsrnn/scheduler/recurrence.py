"""Which kernels run a layer's recurrence, chosen per arch and shape.

* ``step``: ``kernels/matrix_cells``, one fused step per launch, T launches
  (any arch, any size; the general path).
* ``rows``: ``kernels/sequence_rows``, the whole sequence in one launch, one
  thread per sequence (the CPU path: no per-step launch or task cost).

:func:`choose_recurrence` picks the default; ``MPSRNN_RECURRENCE`` forces one
where it applies (benchmarks compare them; tests run each against the reference).
"""
import os

from ..kernels.matrix_cells import STEP_KERNELS
from ..kernels.sequence_rows import ROW_KERNELS

RECURRENCES = ("step", "rows")


def weights_transposed(arch):
    """Weight layout for ``arch``: transposed for GPUs (coalesced), row-major on the CPU.
    ``MPSRNN_WEIGHT_LAYOUT`` (``rows`` or ``transposed``) overrides, so tests cover both."""
    forced = os.environ.get("MPSRNN_WEIGHT_LAYOUT", "").strip().lower()
    if forced:
        if forced not in ("rows", "transposed"):
            raise ValueError(f"MPSRNN_WEIGHT_LAYOUT: expected 'rows' or 'transposed', got {forced!r}")
        return forced == "transposed"
    return arch != "cpu"


def choose_recurrence(arch, cell, steps, batch):
    forced = os.environ.get("MPSRNN_RECURRENCE", "").strip().lower()
    if forced:
        if forced not in RECURRENCES:
            raise ValueError(f"MPSRNN_RECURRENCE: expected one of {', '.join(RECURRENCES)}, got {forced!r}")
        return forced
    if arch == "cpu":
        return "rows"
    return "step"


def emit_recurrence(prog, name, layer_run, steps):
    """Add the dispatches that advance ``layer_run`` through all ``steps``."""
    lr = layer_run
    args = (lr.ws, lr.cell.wts, lr.cell.prm, lr.frame)
    if name == "rows":
        prog.add(ROW_KERNELS[lr.cell.kind], *args)
    else:
        prog.repeat(steps, STEP_KERNELS[lr.cell.kind], *args)
