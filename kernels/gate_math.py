"""Gate math of the three MPS cells, written once for every variant.

These ``ti.func``s take a gate's pre-activation (input term + recurrent term +
peephole term, as the variant computed them: a matrix product for matrix layers,
a convolution for image layers) and finish the cell for one output channel
``i``: the gate's neuron (with its bias already in the input term), and the state
update. The image kernels call the same functions with ``i`` = feature channel.

The layer header in ``frame`` says which neuron each gate uses; the frame's tail holds the
neuron parameters and PReLU slopes (``frame.param``; see ``layout.py``). When the header's
F_STANDARD flag is set (the usual sigmoid/tanh cell) the neurons are inlined
instead of chosen at run time: same results to the bit, without the cost of the
sixteen-way choice. The flag is uniform across a launch, so the branch costs
nothing and needs no separate compile.
"""
import taichi as ti

from .frame import param
from .layout import (
    F_CELL_NEURON,
    F_FLIP,
    F_NEURON,
    F_OUT,
    F_P_CELL,
    F_P_NEURON,
    F_P_PNORM,
    F_P_PRELU,
    F_STANDARD,
    N_PRELU,
)
from .neurons import apply_neuron, pow32, sigmoid32, tanh32


@ti.func
def gate_neuron(frame: ti.template(), g, i, x):
    """Neuron of gate ``g`` (from its input-weights data source) at channel ``i``."""
    o_neuron = frame[F_P_NEURON]
    kind = frame[F_NEURON + g]
    a = param(frame, o_neuron + 3 * g)
    if kind == N_PRELU:
        a = param(frame, frame[F_P_PRELU] + g * frame[F_OUT] + i)
    return apply_neuron(kind, a, param(frame, o_neuron + 3 * g + 1), param(frame, o_neuron + 3 * g + 2), x)


@ti.func
def standard_single_gate_output(pre):
    """h1 = tanh(W x + U h0 + b): the usual neuron."""
    return tanh32(pre)


@ti.func
def standard_gru_gates(pre_z, pre_r):
    """(z, r) with the usual sigmoid neurons."""
    return sigmoid32(pre_z), sigmoid32(pre_r)


@ti.func
def gru_blend(frame: ti.template(), keep, z, h, h0):
    """h1 = keep∘h + z∘h0, or keep∘h0 + z∘h with flip_output_gates."""
    h1 = keep * h + z * h0
    if frame[F_FLIP] != 0:
        h1 = keep * h0 + z * h
    return h1


@ti.func
def standard_gru_output(frame: ti.template(), pre_h, z, h0):
    """h1 from the proposed output's pre-activation, with the usual tanh and p = 1."""
    return gru_blend(frame, 1.0 - z, z, tanh32(pre_h), h0)


@ti.func
def standard_lstm_cell_state(pre_i, pre_f, pre_c, c0):
    """c1 = F∘c0 + I∘C with the usual sigmoid gates and tanh cell gate."""
    return sigmoid32(pre_f) * c0 + sigmoid32(pre_i) * tanh32(pre_c)


@ti.func
def standard_lstm_output(pre_o, c1):
    """h1 = O∘tanh(c1) with the usual sigmoid output gate."""
    return sigmoid32(pre_o) * tanh32(c1)


@ti.func
def single_gate_output(frame: ti.template(), i, pre):
    """h1 = g(W x + U h0 + b)."""
    h = 0.0
    if frame[F_STANDARD] != 0:
        h = standard_single_gate_output(pre)
    else:
        h = gate_neuron(frame, 0, i, pre)
    return h


@ti.func
def gru_gates(frame: ti.template(), i, pre_z, pre_r):
    """(z, r): the input (update) gate and the recurrent (reset) gate."""
    z = 0.0
    r = 0.0
    if frame[F_STANDARD] != 0:
        z, r = standard_gru_gates(pre_z, pre_r)
    else:
        z = gate_neuron(frame, 0, i, pre_z)
        r = gate_neuron(frame, 1, i, pre_r)
    return z, r


@ti.func
def gru_output(frame: ti.template(), i, pre_h, z, h0):
    """h1 from the proposed output's pre-activation (Wh x + Uh(r∘h0) + Vh(z∘h0) + bh)."""
    h = 0.0
    keep = 1.0 - z
    if frame[F_STANDARD] != 0:
        h = tanh32(pre_h)
    else:
        h = gate_neuron(frame, 2, i, pre_h)
        p = param(frame, frame[F_P_PNORM])
        if p != 1.0:
            keep = pow32(1.0 - pow32(z, p), 1.0 / p)
    return gru_blend(frame, keep, z, h, h0)


@ti.func
def lstm_cell_state(frame: ti.template(), i, pre_i, pre_f, pre_c, c0):
    """c1 = F∘c0 + I∘C from the input, forget and cell gates' pre-activations."""
    c1 = 0.0
    if frame[F_STANDARD] != 0:
        c1 = standard_lstm_cell_state(pre_i, pre_f, pre_c, c0)
    else:
        gi = gate_neuron(frame, 0, i, pre_i)
        gf = gate_neuron(frame, 1, i, pre_f)
        gc = gate_neuron(frame, 2, i, pre_c)
        c1 = gf * c0 + gi * gc
    return c1


@ti.func
def lstm_output(frame: ti.template(), i, pre_o, c1):
    """h1 = O∘gh(c1); ``pre_o`` already includes the peephole on the new cell c1."""
    h1 = 0.0
    if frame[F_STANDARD] != 0:
        h1 = standard_lstm_output(pre_o, c1)
    else:
        o_cell = frame[F_P_CELL]
        o = gate_neuron(frame, 3, i, pre_o)
        h1 = o * apply_neuron(frame[F_CELL_NEURON], param(frame, o_cell), param(frame, o_cell + 1),
                              param(frame, o_cell + 2), c1)
    return h1
