"""Whole sequences in one launch, one thread per sequence (the CPU path).

Rows of a batch are independent sequences, so a thread can run every step of
its row on its own: no barrier between steps, no launch per step. The rows
run in parallel (on the CPU each worker is its own work item). This is
what makes the CPU fast: a Taichi launch costs tens of µs here and a parallel
task ~14 µs, more than a small cell's whole step. Rows are shared among the
fixed workers of ``grid.py`` (a worker per row up to 64 rows).

Dot products use ``dots.dot8``. Same inputs and outputs as ``matrix_cells``
(frame, workspace, weights), so plans switch between the two freely.
"""
import taichi as ti

from .dots import dot8, w32
from .frame import FRAME, OUTPUT, WEIGHTS, WORKSPACE, memory_weights, recurrent_weights, run_sizes, vh_is_set
from .gate_math import gru_gates, gru_output, lstm_cell_state, lstm_output, single_gate_output
from .grid import share, worker_block, workers
from .layout import (
    CELL_GRU,
    CELL_LSTM,
    CELL_SINGLE_GATE,
    F_BATCH,
    F_OUT,
    F_PEEP,
    F_ROWS,
    F_STEPS,
    F_WS_C,
    F_WS_H,
    F_WS_SCRATCH,
    F_WS_XW,
    GATES,
    PEEP_DENSE,
    PEEP_DIAGONAL,
)
from .sequence_copy import store_output


@ti.func
def copy_row_forward(ws: ti.template(), src, dst, n):
    for i in range(n):
        ws[dst + i] = ws[src + i]


@ti.func
def single_gate_row_step(ws: ti.template(), wts: ti.template(), frame: ti.template(), xw, h0, h1,
                         H, out: ti.template(), s, r):
    """h1 = g(XW + U·h0) of one row at step s."""
    u0, uso, usj = recurrent_weights(frame)
    for i in range(H):
        ws[h1 + i] = single_gate_output(frame, i, ws[xw + i] + dot8(wts, u0 + i * uso, usj, ws, h0, H))
        store_output(out, frame, s, r, i, ws[h1 + i])


@ti.func
def gru_row_step(ws: ti.template(), wts: ti.template(), frame: ti.template(), xw, h0, h1, H,
                 out: ti.template(), s, r):
    """One GRU step of one row: z and r of every unit first (into the row's scratch z, r∘h0, z∘h0),
    then Uh·(r∘h0) + Vh·(z∘h0) and the new h."""
    u0, uso, usj = recurrent_weights(frame)
    vh, vso, vsj = memory_weights(frame)
    B = frame[F_BATCH]
    sz = frame[F_WS_SCRATCH] + r * H
    srh = sz + B * H
    szh = srh + B * H
    for i in range(H):
        z, rg = gru_gates(frame, i, ws[xw + i] + dot8(wts, u0 + i * uso, usj, ws, h0, H),
                          ws[xw + H + i] + dot8(wts, u0 + (H + i) * uso, usj, ws, h0, H))
        ws[sz + i] = z
        ws[srh + i] = rg * ws[h0 + i]
        ws[szh + i] = z * ws[h0 + i]
    for i in range(H):
        pre = ws[xw + 2 * H + i] + dot8(wts, u0 + (2 * H + i) * uso, usj, ws, srh, H)
        if vh_is_set(frame):
            pre += dot8(wts, vh + i * vso, vsj, ws, szh, H)
        ws[h1 + i] = gru_output(frame, i, pre, ws[sz + i], ws[h0 + i])
        store_output(out, frame, s, r, i, ws[h1 + i])


@ti.func
def lstm_row_step(ws: ti.template(), wts: ti.template(), frame: ti.template(), xw, h0, h1, c0,
                  c1, H, out: ti.template(), s, r):
    """One LSTM step of one row (dense output peepholes: Vo·c1 needs the whole new cell, so the
    output gate waits in the row's scratch for a second pass)."""
    u0, uso, usj = recurrent_weights(frame)
    v0, vso, vsj = memory_weights(frame)
    peep = frame[F_PEEP]
    pre_o = frame[F_WS_SCRATCH] + r * H
    for i in range(H):
        a_i = ws[xw + i] + dot8(wts, u0 + i * uso, usj, ws, h0, H)
        a_f = ws[xw + H + i] + dot8(wts, u0 + (H + i) * uso, usj, ws, h0, H)
        a_c = ws[xw + 2 * H + i] + dot8(wts, u0 + (2 * H + i) * uso, usj, ws, h0, H)
        a_o = ws[xw + 3 * H + i] + dot8(wts, u0 + (3 * H + i) * uso, usj, ws, h0, H)
        c_old = ws[c0 + i]
        if peep == PEEP_DENSE:
            a_i += dot8(wts, v0 + i * vso, vsj, ws, c0, H)
            a_f += dot8(wts, v0 + (H + i) * vso, vsj, ws, c0, H)
            a_c += dot8(wts, v0 + (2 * H + i) * vso, vsj, ws, c0, H)
        elif peep == PEEP_DIAGONAL:
            a_i += w32(wts, v0 + i) * c_old
            a_f += w32(wts, v0 + H + i) * c_old
            a_c += w32(wts, v0 + 2 * H + i) * c_old
        c_new = lstm_cell_state(frame, i, a_i, a_f, a_c, c_old)
        ws[c1 + i] = c_new
        if peep == PEEP_DENSE:
            ws[pre_o + i] = a_o
        else:
            if peep == PEEP_DIAGONAL:
                a_o += w32(wts, v0 + 3 * H + i) * c_new
            ws[h1 + i] = lstm_output(frame, i, a_o, c_new)
            store_output(out, frame, s, r, i, ws[h1 + i])
    if peep == PEEP_DENSE:
        for i in range(H):
            a_o = ws[pre_o + i] + dot8(wts, v0 + (3 * H + i) * vso, vsj, ws, c1, H)
            ws[h1 + i] = lstm_output(frame, i, a_o, ws[c1 + i])
            store_output(out, frame, s, r, i, ws[h1 + i])


@ti.func
def step_addresses(kind: ti.template(), frame: ti.template(), s, r):
    """(input terms, h0, h1, c0, c1): where step s of batch row r reads its projected inputs and its
    state, and writes its new state, in the workspace (c0, c1: the LSTM's)."""
    T, B, H, slot = run_sizes(frame)
    h0 = frame[F_WS_H] + s * slot + r * H
    c0 = frame[F_WS_C] + s * slot + r * H
    return frame[F_WS_XW] + (s * B + r) * ti.static(GATES[kind]) * H, h0, h0 + slot, c0, c0 + slot


@ti.func
def row_step(kind: ti.template(), step: ti.template(), ws: ti.template(), weights: ti.template(), frame: ti.template(),
             out: ti.template(), s, r):
    """Step s of batch row r of a ``kind`` cell with its step function ``step`` (the row variants
    here and the lane-packed ones in ``sequence_lanes`` take the same arguments, ``weights`` being
    their own weight array); a row absent at step s carries its state forward."""
    H = frame[F_OUT]
    xw, h0, h1, c0, c1 = step_addresses(kind, frame, s, r)
    if r < frame[F_ROWS + s]:
        if ti.static(kind == CELL_LSTM):
            step(ws, weights, frame, xw, h0, h1, c0, c1, H, out, s, r)
        else:
            step(ws, weights, frame, xw, h0, h1, H, out, s, r)
    else:
        copy_row_forward(ws, h0, h1, H)
        if ti.static(kind == CELL_LSTM):
            copy_row_forward(ws, c0, c1, H)


ROW_STEPS = {CELL_SINGLE_GATE: single_gate_row_step, CELL_GRU: gru_row_step, CELL_LSTM: lstm_row_step}


@ti.func
def run_row(kind: ti.template(), ws: ti.template(), wts: ti.template(), frame: ti.template(),
            out: ti.template(), r):
    """Every step of batch row r of a ``kind`` cell (CELL_*: one compiled kernel per kind)."""
    for s in range(frame[F_STEPS]):
        row_step(kind, ti.static(ROW_STEPS[kind]), ws, wts, frame, out, s, r)


def _rows_kernel(kind):
    """The kernel of a ``kind`` cell: the fixed workers share the batch rows (grid.py)."""
    def run(ws: WORKSPACE, wts: WEIGHTS, frame: FRAME, out: OUTPUT):
        ti.loop_config(block_dim=ti.static(worker_block()))
        for w in range(ti.static(workers())):
            first, count, stride = share(frame[F_BATCH], w)
            for q in range(count):
                run_row(kind, ws, wts, frame, out, first + q * stride)
    run.__name__ = run.__qualname__ = f"{('single_gate', 'gru', 'lstm')[kind]}_rows"   # names in profiles
    return ti.kernel(run)


single_gate_rows = _rows_kernel(CELL_SINGLE_GATE)
gru_rows = _rows_kernel(CELL_GRU)
lstm_rows = _rows_kernel(CELL_LSTM)


ROW_KERNELS = {0: single_gate_rows, 1: gru_rows, 2: lstm_rows}
