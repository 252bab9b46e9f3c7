"""Whole layers in one launch, one thread per sequence, on lane-packed weights (the CPU path).

As in ``sequence_rows``, a worker runs every step of its batch row alone: no barrier and no
launch per step. It also projects its row's inputs (W·x + b), 8 steps at a time just before it
runs them (``projection.project_lanes``: one weight load serves the 8 steps), into the run's input
terms (an array of LANES-float vectors, ``lanes.term_at``, which moves a block's terms in one
load or store where the workspace's floats took LANES of each), and writes the row's
zero initial state when the run has none: a layer is one dispatch, where a CPU dispatch costs
~15-20 µs (the thread pool's round trip, whatever the kernel does). The recurrent products walk
the state once per block of ``LANES`` units and serve every gate of those units with vector
multiply-adds (``lanes.py``). Then:

* with the usual neurons (``F_STANDARD``), each block's gate math runs right away on the
  accumulators, a block of units at a time (``lane_math``), and the block's new h (and c) are stored;
* with any other neurons (a kernel of their own: ``lanes_kernel``'s ``standard``) the products
  are added in place to the step's input terms (read once, so they can take the sum) and the gate
  math runs unit by unit (``gate_math``, as in every other variant).

Where a thread has two batch rows or more, it steps them in pairs (the run's LANE_PAIRS), or in
fours where it has four and the CPU has AVX-512 (LANE_FOURS): a group shares each load of U, its
products added into the rows' input terms first (``fold_first_products``), and each row's step
then runs as alone, on terms that hold its products. One thread, µs a step, rows alone / in
pairs: LSTM 256 b2 t50 51.0 / 43.1, GRU 128 b2 16.4 / 14.4; both threads, pairs / fours: LSTM 128
b8 t1000 8.3 / 7.7, LSTM 64 b8 3.22 / 2.71, GRU 128 b8 8.1 / 7.1, LSTM 256 b8 t200 31.1 / 25.8
(``lane_row_group``).

Both add the terms in the same order as the other kernels: (input term + U·h) + peephole. A GRU
needs r∘h0 and z∘h0 before its third gate's products, so its step is two passes over the blocks.
A dense-peephole LSTM adds V·c0 to the input, forget and cell gates, and Vo·c1 to the output gate
once the whole new cell is known (a second pass).

Arguments: the layer's input array (as ``project_inputs`` takes it), the workspace (the state
history, scratch: no input terms), the lane-packed weights (``lanes``, in place of ``wts``), the
input terms, the frame and the output.
"""
import functools

import taichi as ti

from .frame import FRAME, INPUT, OUTPUT, WORKSPACE, run_sizes, vh_is_set
from .gate_math import gru_gates, gru_output, lstm_cell_state, lstm_output, single_gate_output
from .grid import share, worker_block, workers
from .lane_math import load_lanes, sigmoid_lanes, store_lanes, tanh_lanes
from .lanes import (
    LANE_TERMS,
    LANE_WEIGHTS,
    LANES,
    accumulate_products,
    accumulate_rows,
    add_products,
    block_span,
    gate_lanes,
    lane_blocks,
    term_at,
    term_value,
    vector_gates,
    zigzag_block,
)
from .layout import (
    CELL_GRU,
    CELL_LSTM,
    CELL_SINGLE_GATE,
    F_BATCH,
    F_FLIP,
    F_LANE_U,
    F_LANE_RUN,
    F_LANE_V,
    F_OUT,
    F_PEEP,
    F_ROWS,
    F_STEPS,
    F_WS_SCRATCH,
    F_ZERO_STATE,
    GATES,
    LANE_FOURS,
    LANE_PAIRS,
    LANE_PROJECTED,
    PEEP_DIAGONAL,
)
from .projection import ROWS_PER_THREAD, project_lanes, step_group, zero_initial_state
from .sequence_copy import store_output
from .sequence_rows import copy_row_forward, step_addresses

STEP_BLOCK = ROWS_PER_THREAD   # steps projected together, before the recurrence runs them


@ti.func
def lane_weight(lanes: ti.template(), base, layout_gates: ti.template(), g: ti.template(), i):
    """Element i of gate g of a lane-packed vector (one column: diagonal peepholes)."""
    group = ti.static(vector_gates(lanes))
    return lanes[base + (i // LANES) * (layout_gates // group) + g // group][(g % group) * LANES + i % LANES]


@ti.func
def start_row(ws: ti.template(), frame: ti.template(), r, H):
    """Zero initial state (history slot 0) for row r when the run has none."""
    if frame[F_ZERO_STATE] != 0:
        for i in range(H):
            zero_initial_state(ws, frame, r * H + i)


@ti.func
def project_steps(x: ti.template(), terms: ti.template(), lanes: ti.template(),
                  frame: ti.template(), r, s0):
    """Input terms W·x + b of row r for steps s0 .. s0+STEP_BLOCK-1 (those it has), into the terms
    array: the projection fused into the recurrence, one weight load for 8 steps."""
    project_span(x, terms, lanes, frame, r, s0, frame[F_STEPS])


@ti.func
def project_span(x: ti.template(), terms: ti.template(), lanes: ti.template(),
                 frame: ti.template(), r, s0, end):
    """``project_steps`` for the steps before ``end`` only."""
    B = frame[F_BATCH]
    starts, present = step_group(frame, r, s0, end)
    project_lanes(x, starts, present, term_at(frame, s0 * B + r), term_at(frame, B), terms, lanes, frame)


@ti.func
def zeros(count: ti.template(), gates: ti.template() = 1):
    """``count`` zero accumulators of ``gates`` gates' lanes each."""
    return [ti.Vector([0.0] * (gates * LANES)) for _ in ti.static(range(count))]


@ti.func
def store_new_h(ws: ti.template(), frame: ti.template(), h1, v, i0, n, out: ti.template(), s, r):
    """New outputs i0 .. i0+n-1 of row r at step s: to the history and to the caller's destination."""
    store_lanes(ws, h1 + i0, v, n)
    for m in ti.static(range(LANES)):
        if m < n:
            store_output(out, frame, s, r, i0 + m, v[m])


# --- single gate ---------------------------------------------------------------------------

@ti.func
def single_gate_standard(ws: ti.template(), lanes: ti.template(), terms: ti.template(), frame: ti.template(), xt,
                         h0, h1, H, out: ti.template(), s, r, folded, lo, hi):
    """Unit blocks lo .. hi-1 of the step (all of them, but for ``sequence_lanes_pipelined``'s halves)."""
    for k in range(lo, hi):
        u = zigzag_block(k, lo, hi, s)
        i0, n = block_span(u, H)
        acc = zeros(1)
        if folded == 0:
            accumulate_products(acc, lanes, frame[F_LANE_U] + u * H, H, ws, h0)
        store_new_h(ws, frame, h1, tanh_lanes(terms[xt + u] + acc[0]), i0, n, out, s, r)


@ti.func
def single_gate_any(ws: ti.template(), lanes: ti.template(), terms: ti.template(), frame: ti.template(), xt, h0, h1,
                    H, out: ti.template(), s, r):
    add_products(terms, xt, lanes, frame[F_LANE_U], 1, 0, 1, H, ws, h0, H)
    for i in range(H):
        ws[h1 + i] = single_gate_output(frame, i, term_value(terms, xt, 0, i, H))
        store_output(out, frame, s, r, i, ws[h1 + i])


@ti.func
def single_gate_step(standard: ti.template(), dense: ti.template(), ws: ti.template(), lanes: ti.template(),
                     terms: ti.template(), frame: ti.template(), xt, h0, h1, c0, c1, H, out: ti.template(), s, r,
                     folded, lo, hi):
    """(``dense``: the LSTM's, unused.) Unit blocks lo .. hi-1 with the usual neurons; with others
    all of them (``rows_step``)."""
    if ti.static(standard):
        single_gate_standard(ws, lanes, terms, frame, xt, h0, h1, H, out, s, r, folded, lo, hi)
    else:
        single_gate_any(ws, lanes, terms, frame, xt, h0, h1, H, out, s, r)


# --- GRU -----------------------------------------------------------------------------------

@ti.func
def gru_standard_gates(ws: ti.template(), lanes: ti.template(), terms: ti.template(), frame: ti.template(), xt, h0,
                       sz, srh, szh, H, s, folded, lo, hi):
    """The first phase: z and r of blocks lo .. hi-1; the row's scratch gets z, r∘h0, z∘h0."""
    for k in range(lo, hi):
        u = zigzag_block(k, lo, hi, s)
        i0, n = block_span(u, H)
        acc = zeros(2)
        if folded == 0:
            accumulate_products(acc, lanes, frame[F_LANE_U] + u * 3 * H, H, ws, h0)
        z = sigmoid_lanes(terms[xt + u] + acc[0])
        rg = sigmoid_lanes(terms[xt + lane_blocks(H) + u] + acc[1])
        h_old = load_lanes(ws, h0 + i0, n)
        store_lanes(ws, sz + i0, z, n)
        store_lanes(ws, srh + i0, rg * h_old, n)
        store_lanes(ws, szh + i0, z * h_old, n)


@ti.func
def gru_standard_output(ws: ti.template(), lanes: ti.template(), terms: ti.template(), frame: ti.template(), xt, h0,
                        h1, sz, srh, szh, H, out: ti.template(), s, r, folded, lo, hi):
    """The second phase: h1 of blocks lo .. hi-1 from Uh·(r∘h0) + Vh·(z∘h0)."""
    for k in range(lo, hi):
        u = zigzag_block(k, lo, hi, s)
        i0, n = block_span(u, H)
        acc_u = zeros(1)
        acc_v = zeros(1)
        if folded == 0:
            accumulate_products(acc_u, lanes, frame[F_LANE_U] + (u * 3 + 2) * H, H, ws, srh)
            if vh_is_set(frame):
                accumulate_products(acc_v, lanes, frame[F_LANE_V] + u * H, H, ws, szh)
        hv = tanh_lanes((terms[xt + 2 * lane_blocks(H) + u] + acc_u[0]) + acc_v[0])
        z = load_lanes(ws, sz + i0, n)
        h_old = load_lanes(ws, h0 + i0, n)
        keep = 1.0 - z
        h_new = keep * hv + z * h_old
        if frame[F_FLIP] != 0:
            h_new = keep * h_old + z * hv
        store_new_h(ws, frame, h1, h_new, i0, n, out, s, r)


@ti.func
def gru_any(ws: ti.template(), lanes: ti.template(), terms: ti.template(), frame: ti.template(), xt, h0, h1, sz, srh,
            szh, H, out: ti.template(), s, r):
    add_products(terms, xt, lanes, frame[F_LANE_U], 3, 0, 2, H, ws, h0, H)   # Uz·h0, Ur·h0
    for i in range(H):
        z, rg = gru_gates(frame, i, term_value(terms, xt, 0, i, H), term_value(terms, xt, 1, i, H))
        ws[sz + i] = z
        ws[srh + i] = rg * ws[h0 + i]
        ws[szh + i] = z * ws[h0 + i]
    x2 = xt + 2 * lane_blocks(H)   # the third gate's terms
    add_products(terms, x2, lanes, frame[F_LANE_U], 3, 2, 1, H, ws, srh, H)   # Uh·(r∘h0)
    if vh_is_set(frame):
        add_products(terms, x2, lanes, frame[F_LANE_V], 1, 0, 1, H, ws, szh, H)   # Vh·(z∘h0)
    for i in range(H):
        ws[h1 + i] = gru_output(frame, i, term_value(terms, x2, 0, i, H), ws[sz + i], ws[h0 + i])
        store_output(out, frame, s, r, i, ws[h1 + i])


@ti.func
def gru_scratch(frame: ti.template(), r, H):
    """(z, r∘h0, z∘h0): where batch row r's step keeps them, in the layer's scratch region."""
    sz = frame[F_WS_SCRATCH] + r * H
    srh = sz + frame[F_BATCH] * H
    return sz, srh, srh + frame[F_BATCH] * H


@ti.func
def gru_step(standard: ti.template(), dense: ti.template(), ws: ti.template(), lanes: ti.template(),
             terms: ti.template(), frame: ti.template(), xt, h0, h1, c0, c1, H, out: ti.template(), s, r, folded,
             lo, hi):
    """The GRU's first phase (its whole step with other neurons); ``gru_step_output`` is the second.
    (``dense``: the LSTM's, unused.)"""
    sz, srh, szh = gru_scratch(frame, r, H)
    if ti.static(standard):
        gru_standard_gates(ws, lanes, terms, frame, xt, h0, sz, srh, szh, H, s, folded, lo, hi)
    else:
        gru_any(ws, lanes, terms, frame, xt, h0, h1, sz, srh, szh, H, out, s, r)


@ti.func
def gru_step_output(ws: ti.template(), lanes: ti.template(), terms: ti.template(), frame: ti.template(), xt, h0, h1,
                    H, out: ti.template(), s, r, folded, lo, hi):
    """The standard GRU's second phase (``gru_step`` did the whole step of any other)."""
    sz, srh, szh = gru_scratch(frame, r, H)
    gru_standard_output(ws, lanes, terms, frame, xt, h0, h1, sz, srh, szh, H, out, s, r, folded, lo, hi)


# --- LSTM ----------------------------------------------------------------------------------

@ti.func
def lstm_standard(dense: ti.template(), ws: ti.template(), lanes: ti.template(), terms: ti.template(),
                  frame: ti.template(), xt, h0, h1, c0, c1, H, peep, out: ti.template(), s, r, folded, lo, hi):
    """Same formulas and order as gate_math.lstm_cell_state and lstm_output, a block of L = LANES
    units at a time. The LSTM's lane vectors hold a unit block's four gates (``lanes.lane_group``):
    one accumulator of 4L lanes, gate g at lanes Lg .. Lg+L-1. Unit blocks lo .. hi-1 (all of them,
    but for ``sequence_lanes_pipelined``'s halves, which never have dense peepholes)."""
    vl = frame[F_LANE_V]
    nb = lane_blocks(H)
    for k in range(lo, hi):
        u = zigzag_block(k, lo, hi, s)
        i0, n = block_span(u, H)
        acc = zeros(1, 4)
        if folded == 0:
            accumulate_products(acc, lanes, frame[F_LANE_U] + u * H, H, ws, h0)
        a_i = terms[xt + u] + gate_lanes(acc[0], 0)
        a_f = terms[xt + nb + u] + gate_lanes(acc[0], 1)
        a_c = terms[xt + 2 * nb + u] + gate_lanes(acc[0], 2)
        a_o = terms[xt + 3 * nb + u] + gate_lanes(acc[0], 3)
        c_old = load_lanes(ws, c0 + i0, n)
        if ti.static(dense):
            pv = zeros(1, 4)   # (its output gate's lanes unused: Vo multiplies c1, below)
            accumulate_products(pv, lanes, vl + u * H, H, ws, c0)
            a_i += gate_lanes(pv[0], 0)
            a_f += gate_lanes(pv[0], 1)
            a_c += gate_lanes(pv[0], 2)
        elif peep == PEEP_DIAGONAL:
            diagonal = lanes[vl + u]
            a_i += gate_lanes(diagonal, 0) * c_old
            a_f += gate_lanes(diagonal, 1) * c_old
            a_c += gate_lanes(diagonal, 2) * c_old
        c_new = sigmoid_lanes(a_f) * c_old + sigmoid_lanes(a_i) * tanh_lanes(a_c)
        store_lanes(ws, c1 + i0, c_new, n)
        if ti.static(dense):
            terms[xt + 3 * nb + u] = a_o   # Vo·c1 needs the whole new cell: below
        else:
            if peep == PEEP_DIAGONAL:
                a_o += gate_lanes(lanes[vl + u], 3) * c_new
            store_new_h(ws, frame, h1, sigmoid_lanes(a_o) * tanh_lanes(c_new), i0, n, out, s, r)
    if ti.static(dense):
        for u in range(lane_blocks(H)):
            i0, n = block_span(u, H)
            acc = zeros(1, 4)   # all four gates' V·c1, of which the output gate's is wanted (a rare cell)
            accumulate_products(acc, lanes, vl + u * H, H, ws, c1)
            h_new = (sigmoid_lanes(terms[xt + 3 * nb + u] + gate_lanes(acc[0], 3))
                     * tanh_lanes(load_lanes(ws, c1 + i0, n)))
            store_new_h(ws, frame, h1, h_new, i0, n, out, s, r)


@ti.func
def lstm_any(dense: ti.template(), ws: ti.template(), lanes: ti.template(), terms: ti.template(), frame: ti.template(),
             xt, h0, h1, c0, c1, H, peep, out: ti.template(), s, r):
    vl = frame[F_LANE_V]
    add_products(terms, xt, lanes, frame[F_LANE_U], 4, 0, 4, H, ws, h0, H)
    if ti.static(dense):
        add_products(terms, xt, lanes, vl, 4, 0, 3, H, ws, c0, H)
    for i in range(H):
        a_i = term_value(terms, xt, 0, i, H)
        a_f = term_value(terms, xt, 1, i, H)
        a_c = term_value(terms, xt, 2, i, H)
        c_old = ws[c0 + i]
        if peep == PEEP_DIAGONAL:
            a_i += lane_weight(lanes, vl, 4, 0, i) * c_old
            a_f += lane_weight(lanes, vl, 4, 1, i) * c_old
            a_c += lane_weight(lanes, vl, 4, 2, i) * c_old
        c_new = lstm_cell_state(frame, i, a_i, a_f, a_c, c_old)
        ws[c1 + i] = c_new
        if ti.static(not dense):   # a dense peephole needs the whole new cell: below
            a_o = term_value(terms, xt, 3, i, H)
            if peep == PEEP_DIAGONAL:
                a_o += lane_weight(lanes, vl, 4, 3, i) * c_new
            ws[h1 + i] = lstm_output(frame, i, a_o, c_new)
            store_output(out, frame, s, r, i, ws[h1 + i])
    if ti.static(dense):
        x3 = xt + 3 * lane_blocks(H)   # the output gate's terms
        add_products(terms, x3, lanes, vl, 4, 3, 1, H, ws, c1, H)   # Vo·c1
        for i in range(H):
            ws[h1 + i] = lstm_output(frame, i, term_value(terms, x3, 0, i, H), ws[c1 + i])
            store_output(out, frame, s, r, i, ws[h1 + i])


@ti.func
def lstm_step(standard: ti.template(), dense: ti.template(), ws: ti.template(), lanes: ti.template(),
              terms: ti.template(), frame: ti.template(), xt, h0, h1, c0, c1, H, out: ti.template(), s, r, folded,
              lo, hi):
    """``dense``: the LSTM with dense peepholes (a kernel of its own), else with none or diagonal
    ones (F_PEEP, read at run time). Unit blocks lo .. hi-1 with the usual neurons; with others all
    of them (``rows_step``)."""
    peep = frame[F_PEEP]
    if ti.static(standard):
        lstm_standard(dense, ws, lanes, terms, frame, xt, h0, h1, c0, c1, H, peep, out, s, r, folded, lo, hi)
    else:
        lstm_any(dense, ws, lanes, terms, frame, xt, h0, h1, c0, c1, H, peep, out, s, r)


# --- rows that share each weight load ------------------------------------------------------

@ti.func
def fold_first_products(kind: ti.template(), rows: ti.template(), ws: ti.template(), lanes: ti.template(),
                        terms: ti.template(), frame: ti.template(), s, r0, H, lo, hi):
    """U·h0 of batch rows r0 .. r0+rows-1 at step s (the GRU's Uz and Ur only), each weight vector
    loaded once for all of them, added into each row's input terms: the rows' steps then run with
    ``folded`` set and find their products there, added in the same order as their own would be.
    Unit blocks lo .. hi-1 (all of them, but for ``row_blocks_step``'s halves)."""
    xts = [term_at(frame, s * frame[F_BATCH] + r0 + k) for k in ti.static(range(rows))]
    h0s = [step_addresses(kind, frame, s, r0 + k)[1] for k in ti.static(range(rows))]
    nb = lane_blocks(H)
    first = ti.static(2 if kind == CELL_GRU else 1)   # vectors a unit block's product fills
    group = ti.static(4 if kind == CELL_LSTM else 1)  # gates a vector holds
    for q in range(lo, hi):
        u = zigzag_block(q, lo, hi, s)
        acc = [zeros(first, group) for _ in ti.static(range(rows))]
        accumulate_rows(acc, lanes, frame[F_LANE_U] + u * ti.static(GATES[kind] // group) * H, H, ws, h0s)
        for k in ti.static(range(rows)):
            for g in ti.static(range(first * group)):
                at = xts[k] + g * nb + u   # (not +=: see lanes.add_products)
                terms[at] = terms[at] + gate_lanes(acc[k][g // group], g % group)


@ti.func
def fold_gru_second_products(rows: ti.template(), ws: ti.template(), lanes: ti.template(), terms: ti.template(),
                             frame: ti.template(), s, r0, H, lo, hi):
    """The GRU's Uh·(r∘h0) + Vh·(z∘h0) of rows r0 .. r0+rows-1, as ``fold_first_products``."""
    x2s = [term_at(frame, s * frame[F_BATCH] + r0 + k) + 2 * lane_blocks(H) for k in ti.static(range(rows))]
    scratch = [gru_scratch(frame, r0 + k, H) for k in ti.static(range(rows))]   # (z, r∘h0, z∘h0) a row
    srhs, szhs = [sc[1] for sc in scratch], [sc[2] for sc in scratch]
    for q in range(lo, hi):
        u = zigzag_block(q, lo, hi, s)
        acc_u = [zeros(1) for _ in ti.static(range(rows))]
        acc_v = [zeros(1) for _ in ti.static(range(rows))]
        accumulate_rows(acc_u, lanes, frame[F_LANE_U] + (u * 3 + 2) * H, H, ws, srhs)
        if vh_is_set(frame):
            accumulate_rows(acc_v, lanes, frame[F_LANE_V] + u * H, H, ws, szhs)
        for k in ti.static(range(rows)):
            terms[x2s[k] + u] = (terms[x2s[k] + u] + acc_u[k][0]) + acc_v[k][0]


# --- the sequence ----------------------------------------------------------------------------

LANE_STEPS = {CELL_SINGLE_GATE: single_gate_step, CELL_GRU: gru_step, CELL_LSTM: lstm_step}


PAIR = 2   # rows that share each load of U (``scheduler.recurrence.lane_row_group``)
FOUR = 4   # and four, with AVX-512's 32 registers (16 lanes): the LSTM's accumulators take 16 of them
MOST_ROWS = FOUR if LANES == 16 else PAIR   # the largest group the lanes kernels take


@ti.func
def row_group(frame: ti.template()):
    """Rows a worker steps at a time: four or a pair where the run says so (LANE_FOURS,
    LANE_PAIRS), else one."""
    rows = 1
    if frame[F_LANE_RUN] & LANE_FOURS != 0:
        rows = FOUR
    elif frame[F_LANE_RUN] & LANE_PAIRS != 0:
        rows = PAIR
    return rows


@ti.func
def rows_step(kind: ti.template(), standard: ti.template(), dense: ti.template(), most: ti.template(),
              ws: ti.template(), lanes: ti.template(), terms: ti.template(), frame: ti.template(), out: ti.template(),
              s, r0, nr, lo, hi):
    """Step s of batch rows r0 .. r0+nr-1 (nr ≤ ``most``, FOUR or PAIR), over unit blocks lo .. hi-1.
    Four rows, or else the first two, all present at the step, with the usual neurons, share each
    load of U (``fold_first_products``); the other rows take their own products. A row absent at
    step s carries those units' state forward.

    Part of the blocks (``sequence_lanes_pipelined``'s halves) only for the cells that
    ``splits_row``; the others take all of them (0 .. lane_blocks(H)): a GRU's second phase needs
    every block's first, and the other neurons' step and dense peepholes pass over every unit."""
    H = frame[F_OUT]
    B = frame[F_BATCH]
    present = frame[F_ROWS + s]
    folded = 0   # the first rows of the group whose products are in their terms
    if ti.static(standard):
        if ti.static(most >= FOUR):
            if nr == FOUR and r0 + FOUR <= present:
                folded = FOUR
                fold_first_products(kind, FOUR, ws, lanes, terms, frame, s, r0, H, lo, hi)
        if folded == 0 and nr >= PAIR and r0 + PAIR <= present:
            folded = PAIR
            fold_first_products(kind, PAIR, ws, lanes, terms, frame, s, r0, H, lo, hi)
    u0, u1 = lo * LANES, ti.min(hi * LANES, H)
    for k in range(nr):
        _, h0, h1, c0, c1 = step_addresses(kind, frame, s, r0 + k)
        if r0 + k < present:
            ti.static(LANE_STEPS[kind])(standard, dense, ws, lanes, terms, frame, term_at(frame, s * B + r0 + k), h0,
                                        h1, c0, c1, H, out, s, r0 + k, ti.select(k < folded, 1, 0), lo, hi)
        else:
            copy_row_forward(ws, h0 + u0, h1 + u0, u1 - u0)
            if ti.static(kind == CELL_LSTM):
                copy_row_forward(ws, c0 + u0, c1 + u0, u1 - u0)
    if ti.static(kind == CELL_GRU and standard):   # its second phase needs every row's r∘h0
        if ti.static(most >= FOUR):
            if folded == FOUR:
                fold_gru_second_products(FOUR, ws, lanes, terms, frame, s, r0, H, lo, hi)
        if folded == PAIR:
            fold_gru_second_products(PAIR, ws, lanes, terms, frame, s, r0, H, lo, hi)
        for k in range(nr):
            _, h0, h1, c0, c1 = step_addresses(kind, frame, s, r0 + k)
            if r0 + k < present:
                gru_step_output(ws, lanes, terms, frame, term_at(frame, s * B + r0 + k), h0, h1, H, out, s, r0 + k,
                                ti.select(k < folded, 1, 0), lo, hi)


@ti.func
def run_rows(kind: ti.template(), standard: ti.template(), dense: ti.template(), x: ti.template(), ws: ti.template(),
             lanes: ti.template(), terms: ti.template(), frame: ti.template(), out: ti.template(), r0, nr):
    """Every step of batch rows r0 .. r0+nr-1 of a ``kind`` cell (CELL_*: one compiled kernel per
    kind), each row's inputs projected 8 steps at a time unless the run did it apart."""
    T, _, H, _ = run_sizes(frame)
    projected = frame[F_LANE_RUN] & LANE_PROJECTED
    if projected == 0:
        for k in range(nr):
            start_row(ws, frame, r0 + k, H)
    for sb in range((T + STEP_BLOCK - 1) // STEP_BLOCK):
        if projected == 0:
            for k in range(nr):
                project_steps(x, terms, lanes, frame, r0 + k, sb * STEP_BLOCK)
        for s in range(sb * STEP_BLOCK, ti.min(sb * STEP_BLOCK + STEP_BLOCK, T)):
            rows_step(kind, standard, dense, MOST_ROWS, ws, lanes, terms, frame, out, s, r0, nr, 0, lane_blocks(H))


def _lanes_kernel(kind, serial, standard, dense):
    """The kernel of a ``kind`` cell: the fixed workers share the batch rows (grid.py), one or a
    pair or four at a time (the run's LANE_PAIRS, LANE_FOURS); or, with ``serial``, one loop over
    them that Taichi runs on the calling thread. A parallel dispatch wakes Taichi's thread pool, which on a 2-core VM
    costs 14-53 µs (p20, median) against 5 µs for a serial one (a trivial kernel in a graph), so
    small layers run serially (``lanes_serial`` in ``scheduler/recurrence.py`` decides).
    ``standard``: for cells with the usual neurons (the frame's F_STANDARD) only, or for the others
    only (``_any`` in its name): each kernel holds one of the two forms of the step, which halves a
    cold compile (AMD EPYC VM, the LSTM's serial kernel, runs taking turns: 80-120 s with both forms,
    40-45 s with the usual one). ``dense``: for LSTMs with dense peepholes only, or for the others
    only (a rare cell: its passes over V cost the others' kernel a third of its compile, 26-34 s
    against 17-24)."""
    # (nothing before the outermost loop: a statement there is a task of its own, grid.py)
    def run(x: INPUT, ws: WORKSPACE, lanes: LANE_WEIGHTS, terms: LANE_TERMS, frame: FRAME, out: OUTPUT):
        if ti.static(serial):
            ti.loop_config(serialize=True)
            for _ in range(1):
                B, rows = frame[F_BATCH], row_group(frame)
                for g in range((B + rows - 1) // rows):
                    run_rows(kind, standard, dense, x, ws, lanes, terms, frame, out, g * rows,
                             ti.min(rows, B - g * rows))
        else:
            ti.loop_config(block_dim=ti.static(worker_block()))
            for w in range(ti.static(workers())):
                B, rows = frame[F_BATCH], row_group(frame)
                first, count, stride = share((B + rows - 1) // rows, w)
                for q in range(count):
                    r0 = (first + q * stride) * rows
                    run_rows(kind, standard, dense, x, ws, lanes, terms, frame, out, r0, ti.min(rows, B - r0))
    name = f"{lanes_name(kind, standard, dense)}{'_serial' if serial else ''}"
    run.__name__ = run.__qualname__ = name   # names in profiles
    return ti.kernel(run)


def lanes_name(kind, standard, dense):
    """The lanes kernels' name for a ``kind`` cell with the usual neurons or (``_any``) others, and
    (``_dense``) an LSTM's dense peepholes."""
    return f"{('single_gate', 'gru', 'lstm')[kind]}_lanes{'' if standard else '_any'}{'_dense' if dense else ''}"


@functools.lru_cache(maxsize=None)
def lanes_kernel(kind, serial, standard=True, dense=False):
    """The lanes kernel of a ``kind`` cell, parallel or serial, for cells with the usual neurons or
    the others, for LSTMs with dense peepholes or the others (each compiled on first use)."""
    return _lanes_kernel(kind, serial, standard, dense)


def splits_row(kind, standard, dense):
    """Whether a ``kind`` cell's batch of one row or a pair can step in two halves of its unit
    blocks (``row_blocks_step``): the LSTM without dense peepholes and the single gate, with the
    usual neurons, whose blocks need nothing of each other within a step (the GRU's third gate needs
    every block's r∘h0 first; the other neurons' step and dense peepholes pass over all units)."""
    return standard and not dense and kind in (CELL_LSTM, CELL_SINGLE_GATE)


@ti.func
def row_blocks_step(kind: ti.template(), standard: ti.template(), dense: ti.template(), ws: ti.template(),
                    lanes: ti.template(), terms: ti.template(), frame: ti.template(), out: ti.template(), s, lo, hi):
    """Step s of every batch row over unit blocks lo .. hi-1 (``rows_step``, the rows in the run's
    groups): the pipelined kernel's one call of a step, whole (0 .. lane_blocks(H)) or a half.
    (Taichi inlines every call, and its optimiser's time grows faster than the code: a second call
    took an LSTM's pipelined kernel from 27 s of compiling to 110.)"""
    B = frame[F_BATCH]
    rows = row_group(frame)
    for g in range((B + rows - 1) // rows):
        rows_step(kind, standard, dense, PAIR, ws, lanes, terms, frame, out, s, g * rows, ti.min(rows, B - g * rows),
                  lo, hi)
