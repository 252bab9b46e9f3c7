"""Fused recurrent steps of the matrix layers: one kernel launch per time step.

Each kernel advances one layer by one processing step ``s`` (an argument: a
captured graph holds T dispatches that differ only in it). For
every present row r and output channel i it adds the recurrent products to the
projected input XW[s] (see ``projection.py``), applies the gate math of
``gate_math.py`` and writes the new state into slot s+1 of the workspace's
state history. Rows whose sequence is absent at this step (it ended, or in a
backward run has not started) copy their state forward unchanged.

Products that need a whole state vector the step itself produces (the GRU's
Uh·(r∘h0) needs every r; a dense LSTM output peephole Vo·c1 needs every c1)
come after all of it is written: the GRU's second loop (Taichi runs a kernel's
top-level loops in order, as separate device tasks, so the second sees all of
the first's writes), and for dense peepholes a second kernel,
``lstm_peephole_output_step``, which the plan adds only for such layers.
Every loop runs over the fixed workers of ``grid.py``: one device task each.

Threads own neighbouring channels i, so with the GPU's transposed weight layout
their loads of row o = g·H + i are neighbours (coalesced). Weights are float16
or float32; all sums are float32.
"""
import taichi as ti

from .dots import dot8, w32
from .frame import FRAME, OUTPUT, WEIGHTS, WORKSPACE, memory_weights, recurrent_weights, vh_is_set
from .gate_math import gru_gates, gru_output, lstm_cell_state, lstm_output, single_gate_output
from .grid import share, worker_block, workers
from .layout import (
    F_BATCH,
    F_OUT,
    F_PEEP,
    F_ROWS,
    F_SLOT,
    F_WS_C,
    F_WS_H,
    F_WS_SCRATCH,
    F_WS_XW,
    PEEP_DENSE,
    PEEP_DIAGONAL,
)
from .sequence_copy import store_output


@ti.func
def step_slots(frame: ti.template(), s, gates):
    """Where processing step s reads and writes: (B, H, rows present, offset of XW[s], of the
    state h[s] it reads, of the state h[s+1] it writes), workspace units."""
    B = frame[F_BATCH]
    H = frame[F_OUT]
    h0 = frame[F_WS_H] + s * frame[F_SLOT]
    return B, H, frame[F_ROWS + s], frame[F_WS_XW] + s * B * gates * H, h0, h0 + frame[F_SLOT]


@ti.func
def gru_scratch(frame: ti.template(), B, H):
    """Offsets of the GRU's per-step scratch vectors: z, r∘h0 and z∘h0, (B, H) each."""
    sz = frame[F_WS_SCRATCH]
    return sz, sz + B * H, sz + 2 * B * H


@ti.kernel
def single_gate_step(ws: WORKSPACE, wts: WEIGHTS, frame: FRAME, out: OUTPUT, s: ti.i32):
    ti.loop_config(block_dim=ti.static(worker_block()))
    for w in range(ti.static(workers())):
        B, H, rows, xw, h0, h1 = step_slots(frame, s, 1)
        u0, uso, usj = recurrent_weights(frame)
        first, count, stride = share(B * H, w)
        for q in range(count):
            idx = first + q * stride
            r = idx // H
            i = idx % H
            if r < rows:
                acc = ws[xw + r * H + i] + dot8(wts, u0 + i * uso, usj, ws, h0 + r * H, H)
                ws[h1 + idx] = single_gate_output(frame, i, acc)
                store_output(out, frame, s, r, i, ws[h1 + idx])
            else:
                ws[h1 + idx] = ws[h0 + idx]


@ti.kernel
def gru_step(ws: WORKSPACE, wts: WEIGHTS, frame: FRAME, out: OUTPUT, s: ti.i32):
    ti.loop_config(block_dim=ti.static(worker_block()))
    for w in range(ti.static(workers())):
        B, H, rows, xw, h0, h1 = step_slots(frame, s, 3)
        u0, uso, usj = recurrent_weights(frame)
        sz, srh, szh = gru_scratch(frame, B, H)
        first, count, stride = share(rows * H, w)
        for q in range(count):
            idx = first + q * stride
            r = idx // H
            i = idx % H
            pz = ws[xw + r * 3 * H + i] + dot8(wts, u0 + i * uso, usj, ws, h0 + r * H, H)
            pr = ws[xw + r * 3 * H + H + i] + dot8(wts, u0 + (H + i) * uso, usj, ws, h0 + r * H, H)
            z, rg = gru_gates(frame, i, pz, pr)
            hi = ws[h0 + idx]
            ws[sz + idx] = z
            ws[srh + idx] = rg * hi
            ws[szh + idx] = z * hi
    ti.loop_config(block_dim=ti.static(worker_block()))
    for w in range(ti.static(workers())):
        B, H, rows, xw, h0, h1 = step_slots(frame, s, 3)
        u0, uso, usj = recurrent_weights(frame)
        vh, vso, vsj = memory_weights(frame)
        sz, srh, szh = gru_scratch(frame, B, H)
        first, count, stride = share(B * H, w)
        for q in range(count):
            idx = first + q * stride
            r = idx // H
            i = idx % H
            if r < rows:
                ph = ws[xw + r * 3 * H + 2 * H + i] + dot8(wts, u0 + (2 * H + i) * uso, usj, ws, srh + r * H, H)
                if vh_is_set(frame):
                    ph += dot8(wts, vh + i * vso, vsj, ws, szh + r * H, H)
                ws[h1 + idx] = gru_output(frame, i, ph, ws[sz + idx], ws[h0 + idx])
                store_output(out, frame, s, r, i, ws[h1 + idx])
            else:
                ws[h1 + idx] = ws[h0 + idx]


@ti.kernel
def lstm_step(ws: WORKSPACE, wts: WEIGHTS, frame: FRAME, out: OUTPUT, s: ti.i32):
    ti.loop_config(block_dim=ti.static(worker_block()))
    for w in range(ti.static(workers())):
        B, H, rows, xw, h0, h1 = step_slots(frame, s, 4)
        u0, uso, usj = recurrent_weights(frame)
        v0, vso, vsj = memory_weights(frame)
        peep = frame[F_PEEP]
        c0 = frame[F_WS_C] + s * frame[F_SLOT]
        c1 = c0 + frame[F_SLOT]
        pre_o = frame[F_WS_SCRATCH]   # output gate pre-activation, finished by lstm_peephole_output_step
        first, count, stride = share(B * H, w)
        for q in range(count):
            idx = first + q * stride
            r = idx // H
            i = idx % H
            if r < rows:
                x4 = xw + r * 4 * H + i
                hr = h0 + r * H
                a_i = ws[x4] + dot8(wts, u0 + i * uso, usj, ws, hr, H)
                a_f = ws[x4 + H] + dot8(wts, u0 + (H + i) * uso, usj, ws, hr, H)
                a_c = ws[x4 + 2 * H] + dot8(wts, u0 + (2 * H + i) * uso, usj, ws, hr, H)
                a_o = ws[x4 + 3 * H] + dot8(wts, u0 + (3 * H + i) * uso, usj, ws, hr, H)
                c_old = ws[c0 + idx]
                if peep == PEEP_DENSE:
                    cr = c0 + r * H
                    a_i += dot8(wts, v0 + i * vso, vsj, ws, cr, H)
                    a_f += dot8(wts, v0 + (H + i) * vso, vsj, ws, cr, H)
                    a_c += dot8(wts, v0 + (2 * H + i) * vso, vsj, ws, cr, H)
                elif peep == PEEP_DIAGONAL:
                    a_i += w32(wts, v0 + i) * c_old
                    a_f += w32(wts, v0 + H + i) * c_old
                    a_c += w32(wts, v0 + 2 * H + i) * c_old
                c_new = lstm_cell_state(frame, i, a_i, a_f, a_c, c_old)
                ws[c1 + idx] = c_new
                if peep == PEEP_DENSE:
                    ws[pre_o + idx] = a_o
                else:
                    if peep == PEEP_DIAGONAL:
                        a_o += w32(wts, v0 + 3 * H + i) * c_new
                    ws[h1 + idx] = lstm_output(frame, i, a_o, c_new)
                    store_output(out, frame, s, r, i, ws[h1 + idx])
            else:
                ws[h1 + idx] = ws[h0 + idx]
                ws[c1 + idx] = ws[c0 + idx]


@ti.kernel
def lstm_peephole_output_step(ws: WORKSPACE, wts: WEIGHTS, frame: FRAME, out: OUTPUT, s: ti.i32):
    """The output gate of an LSTM with dense peepholes: Vo·c1 needs the whole new cell vector of
    the row, so it runs after ``lstm_step`` has written every c1."""
    ti.loop_config(block_dim=ti.static(worker_block()))
    for w in range(ti.static(workers())):
        _, H, rows, _, _, h1 = step_slots(frame, s, 4)
        v0, vso, vsj = memory_weights(frame)
        c1 = frame[F_WS_C] + (s + 1) * frame[F_SLOT]
        pre_o = frame[F_WS_SCRATCH]
        first, count, stride = share(rows * H, w)
        for q in range(count):
            idx = first + q * stride
            r = idx // H
            i = idx % H
            a_o = ws[pre_o + idx] + dot8(wts, v0 + (3 * H + i) * vso, vsj, ws, c1 + r * H, H)
            ws[h1 + idx] = lstm_output(frame, i, a_o, ws[c1 + idx])
            store_output(out, frame, s, r, i, ws[h1 + idx])


STEP_KERNELS = {0: single_gate_step, 1: gru_step, 2: lstm_step}
