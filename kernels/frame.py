"""Reading a layer's frame (see ``layout.py``) at the top of a kernel: one place for the field list."""
import taichi as ti

from .layout import (
    F_BATCH,
    F_OUT,
    F_SLOT,
    F_STEPS,
    F_U,
    F_U_SJ,
    F_U_SO,
    F_V,
    F_V_SJ,
    F_V_SO,
)


@ti.func
def run_sizes(frame: ti.template()):
    """(T steps, B batch rows, H output channels, elements between history slots)."""
    return frame[F_STEPS], frame[F_BATCH], frame[F_OUT], frame[F_SLOT]


@ti.func
def recurrent_weights(frame: ti.template()):
    """(offset, stride per output row, stride per input) of U in the weight array."""
    return frame[F_U], frame[F_U_SO], frame[F_U_SJ]


@ti.func
def memory_weights(frame: ti.template()):
    """(offset, stride per output row, stride per input) of V: LSTM peepholes or GRU Vh."""
    return frame[F_V], frame[F_V_SO], frame[F_V_SJ]
