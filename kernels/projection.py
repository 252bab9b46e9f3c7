"""Input projection of a whole sequence in one launch.

The input term of every gate, W·x + b, does not depend on the recurrence, so it
is computed for all T steps at once, as one batched product over T·B rows,
before the time loop starts: XW[s, r, g·H + i] = Σ_j W[g, i, j]·x[s, r, j] + b[g, i].
The recurrence kernels then only add the recurrent terms.

Each thread computes one output channel o for a block of 8 consecutive rows
n = s·B + r: every weight it loads serves 8 rows (8x less weight traffic on a
GPU, 8 independent accumulators on a CPU), and neighbouring threads own
neighbouring o, so with the GPU's transposed layout their loads coalesce.
A group with fewer rows (the last one, or a one-step run's batch) multiplies only up to its
last present row, 1, 4 or 8 of them (``row_terms``).

``x`` is read through a strided view (base, step stride, row stride, in the
frame: ``input_view``; the step stride is negative when a backward-running
stack reads its input from the last time step), so user matrices, offset views
and the previous layer's output history are all read in place. Rows a sequence no longer has (variable length)
are neither read nor written. Accumulation is float32 whatever the storage type
of x and W.

The same launch also writes zero initial states when the run has none (the
frame's F_ZERO_STATE), so a plain sequence costs one dispatch here instead of
three (a dispatch costs ~20 µs).
"""
import taichi as ti

from .frame import FRAME, INPUT, WEIGHTS, WORKSPACE, input_view, param
from .grid import on_cuda, share, worker_block, workers
from .lanes import (LANE_TERMS, LANE_WEIGHTS, LANES, bias_vector, block_span, gate_lanes, lane_blocks, term_at,
                    vector_gates)
from .layout import (
    CELL_LSTM,
    F_BATCH,
    F_CELL,
    F_GATES,
    F_IN,
    F_INPUT_MODE,
    F_OUT,
    F_P_BIAS,
    F_ROWS,
    F_STEPS,
    F_W,
    F_W_SJ,
    F_W_SO,
    F_WS_C,
    F_WS_H,
    F_WS_XW,
    F_ZERO_STATE,
    INPUT_DENSE,
    INPUT_IDENTITY,
)

ROWS_PER_THREAD = 8   # rows (8 time steps of one row, on the CPU) per weight load


@ti.func
def zero_initial_state(ws: ti.template(), frame: ti.template(), e):
    """Element e (row·H + unit) of history slot 0: h, and an LSTM's c, set to 0."""
    ws[frame[F_WS_H] + e] = 0.0
    if frame[F_CELL] == CELL_LSTM:
        ws[frame[F_WS_C] + e] = 0.0


@ti.func
def start_run(ws: ti.template(), frame: ti.template(), w):
    """Worker w's share of what a run needs before its recurrence: zero initial states (history
    slot 0 of h, and of an LSTM's c) when the run has none. (A persistent kernel's grid-barrier
    count needs no reset here: its last block out leaves it at 0, see sequence_persistent.)"""
    if frame[F_ZERO_STATE] != 0:
        first, count, stride = share(frame[F_BATCH] * frame[F_OUT], w)
        for q in range(count):
            zero_initial_state(ws, frame, first + q * stride)


@ti.func
def row_group(frame: ti.template(), n0, N, B):
    """(where x starts, whether present) for rows n0 .. n0+7 (n = s·B + r, of N), as two vectors.

    An absent row (past N, or one its sequence no longer has at step s) reads row 0 of step 0
    (always present), so every load stays inside the caller's matrices; it is not stored. One
    division, then the rows are walked: eight divisions per row cost more than a small item's
    products on the CPU."""
    x_base, x_step, x_row = input_view(frame)
    start = ti.Vector([x_base] * ROWS_PER_THREAD, ti.i32)
    present = ti.Vector([0] * ROWS_PER_THREAD, ti.i32)
    s = n0 // B
    r = n0 - s * B
    for k in ti.static(range(ROWS_PER_THREAD)):
        if n0 + k < N:   # noqa: SIM102 (Taichi's `and` does not short-circuit: frame[] would read past the rows)
            if r < frame[F_ROWS + s]:
                start[k] = x_base + s * x_step + r * x_row
                present[k] = 1
        r += 1
        if r == B:
            r = 0
            s += 1
    return start, present


@ti.func
def rows_present(present):
    """How many of a group's 8 rows to multiply: up to its last present one (0 when none is)."""
    rows = 0
    for k in ti.static(range(ROWS_PER_THREAD)):
        if present[k] != 0:
            rows = k + 1
    return rows


@ti.func
def dense_terms(x: ti.template(), wts: ti.template(), wo, sj, n_in, start, lane, lanes, rows: ti.template()):
    """W row o (from wts[wo], input stride sj) against the x of the first ``rows`` of the 8 rows at
    start[k], over lane ``lane``'s 4-input groups (lane 0 also takes the last n_in % 4 inputs); the
    other rows' sums stay 0."""
    acc = ti.Vector([0.0] * ROWS_PER_THREAD, ti.f32)
    n4 = n_in // 4
    for t in range((n4 - lane + lanes - 1) // lanes):   # four weight loads in flight at once
        j = (lane + t * lanes) * 4
        wa = ti.cast(wts[wo + j * sj], ti.f32)
        wb = ti.cast(wts[wo + (j + 1) * sj], ti.f32)
        wc = ti.cast(wts[wo + (j + 2) * sj], ti.f32)
        wd = ti.cast(wts[wo + (j + 3) * sj], ti.f32)
        for k in ti.static(range(rows)):
            xk = start[k] + j
            acc[k] += (wa * ti.cast(x[xk], ti.f32) + wb * ti.cast(x[xk + 1], ti.f32)) + (
                wc * ti.cast(x[xk + 2], ti.f32) + wd * ti.cast(x[xk + 3], ti.f32))
    if lane == 0:
        for j in range(n4 * 4, n_in):
            wj = ti.cast(wts[wo + j * sj], ti.f32)
            for k in ti.static(range(rows)):
                acc[k] += wj * ti.cast(x[start[k] + j], ti.f32)
    return acc


@ti.func
def row_terms(x: ti.template(), wts: ti.template(), frame: ti.template(), o, start, present, lane, lanes):
    """Lane ``lane``'s share (of ``lanes``) of output channel o's input terms for the 8 rows whose x
    starts at start[k]: W row o against x over the 4-input groups lane, lane + lanes, ... (lane 0
    also takes the last n_in % 4 inputs) for a dense input; x itself on lane 0 for the identity;
    nothing for a nil input. No bias.

    A dense input multiplies only up to the last present row, in groups of 1, 4 or 8: a one-step run
    of batch 1 (DeepBench's GRU t1) has one row in its group, and its 7 absent rows' loads and
    products made up most of the one-step kernel's instructions (ncu, GRU 512 b1 t1, H200)."""
    H = frame[F_OUT]
    n_in = frame[F_IN]
    mode = frame[F_INPUT_MODE + o // H]
    acc = ti.Vector([0.0] * ROWS_PER_THREAD, ti.f32)
    if mode == INPUT_DENSE:
        wo = frame[F_W] + o * frame[F_W_SO]
        sj = frame[F_W_SJ]
        rows = rows_present(present)
        if rows <= 1:
            acc = dense_terms(x, wts, wo, sj, n_in, start, lane, lanes, 1)
        elif rows <= 4:
            acc = dense_terms(x, wts, wo, sj, n_in, start, lane, lanes, 4)
        else:
            acc = dense_terms(x, wts, wo, sj, n_in, start, lane, lanes, ROWS_PER_THREAD)
    elif mode == INPUT_IDENTITY and lane == 0:
        for k in ti.static(range(ROWS_PER_THREAD)):
            acc[k] = ti.cast(x[start[k] + o % H], ti.f32)
    return acc


@ti.func
def store_terms(ws: ti.template(), frame: ti.template(), o, n0, acc, present):
    """Channel o's input terms of rows n0 .. n0+7 plus its bias, to the workspace (present rows)."""
    GH = frame[F_GATES] * frame[F_OUT]
    bias = param(frame, frame[F_P_BIAS] + o)
    for k in ti.static(range(ROWS_PER_THREAD)):
        if present[k] != 0:
            ws[frame[F_WS_XW] + (n0 + k) * GH + o] = acc[k] + bias


@ti.func
def project_rows(x: ti.template(), ws: ti.template(), wts: ti.template(),
                 frame: ti.template(), o, n0):
    """XW of output channel o (o = g·H + i) for rows n0 .. n0+7 (n = s·B + r), written to the
    workspace: W row o against each row's x (a dense input), x itself (identity), or nothing (nil),
    plus the bias. Absent rows are neither read nor written."""
    B = frame[F_BATCH]
    start, present = row_group(frame, n0, frame[F_STEPS] * B, B)
    store_terms(ws, frame, o, n0, row_terms(x, wts, frame, o, start, present, 0, 1), present)


WARP = 32


@ti.func
def project_rows_in_lanes(x: ti.template(), ws: ti.template(), wts: ti.template(),
                          frame: ti.template(), o, n0, valid, lane, lanes, jobs_a_warp):
    """``project_rows`` with channel o's inputs shared by ``lanes`` threads of one warp (CUDA; 1
    elsewhere): lane l of a job is the warp's thread job + l·jobs_a_warp, so the threads side by side
    hold neighbouring channels and their weight loads coalesce as in ``project_rows``. The lanes'
    shares meet in lane 0 through warp shuffles, and lane 0 writes. Every thread of the warp calls it
    (the shuffles need them all), ``valid`` or not; an invalid one adds nothing and writes nothing."""
    B = frame[F_BATCH]
    oo = ti.select(valid, o, 0)
    nn = ti.select(valid, n0, 0)
    start, present = row_group(frame, nn, frame[F_STEPS] * B, B)
    acc = row_terms(x, wts, frame, oo, start, present, lane, lanes)
    if not valid:
        acc = ti.Vector([0.0] * ROWS_PER_THREAD, ti.f32)
    if ti.static(on_cuda()):
        for level in ti.static(range(5)):   # offsets 16, 8, 4, 2, 1 warp threads, down to jobs_a_warp
            offset = (WARP // 2) >> level
            if offset >= jobs_a_warp:   # uniform across the warp
                for k in ti.static(range(ROWS_PER_THREAD)):
                    acc[k] += ti.simt.warp.shfl_down_f32(ti.u32(0xFFFFFFFF), acc[k], offset)
    if valid and lane == 0:
        store_terms(ws, frame, o, n0, acc, present)


@ti.func
def projection_lanes(jobs, block, n_in):
    """Threads a projection job (one channel, 8 rows) gets in a block of ``block`` threads: the largest
    power of two up to a warp whose jobs x lanes still fit the block, at 8 or more inputs a lane."""
    lanes = 1
    while lanes < WARP and jobs * lanes * 2 <= block and lanes * 16 <= n_in:
        lanes *= 2
    return lanes


@ti.kernel
def project_inputs(x: INPUT, ws: WORKSPACE, wts: WEIGHTS, frame: FRAME):
    ti.loop_config(block_dim=ti.static(worker_block()))
    for w in range(ti.static(workers())):
        GH = frame[F_GATES] * frame[F_OUT]
        N = frame[F_STEPS] * frame[F_BATCH]
        first, count, stride = share(((N + ROWS_PER_THREAD - 1) // ROWS_PER_THREAD) * GH, w)
        for q in range(count):
            idx = first + q * stride
            project_rows(x, ws, wts, frame, idx % GH, (idx // GH) * ROWS_PER_THREAD)
        start_run(ws, frame, w)


@ti.func
def step_group(frame: ti.template(), r, s0, T):
    """(where x starts, whether present) for row r at steps s0 .. s0+7, as two vectors (absent:
    past T, or a step the row's sequence no longer has; it reads row 0 of step 0 and is not stored)."""
    x_base, x_step, x_row = input_view(frame)
    start = ti.Vector([x_base] * ROWS_PER_THREAD, ti.i32)
    present = ti.Vector([0] * ROWS_PER_THREAD, ti.i32)
    for k in ti.static(range(ROWS_PER_THREAD)):
        if s0 + k < T:   # noqa: SIM102 (Taichi's `and` does not short-circuit: frame[] would read past the rows)
            if r < frame[F_ROWS + s0 + k]:
                start[k] = x_base + (s0 + k) * x_step + r * x_row
                present[k] = 1
    return start, present


QUAD = 4   # blocks of W (LANES output channels each) that the CPU's projection takes in one pass
QUAD_ROWS = 4 if LANES == 16 else 2   # x rows a quad's pass takes (see project_lanes)


@ti.func
def project_lanes(x: ti.template(), starts, present, t0, t_stride, terms: ti.template(), lanes: ti.template(),
                  frame: ti.template()):
    """The projection on the CPU's lane-packed W (``lanes.py``) for 8 input rows (x at ``starts``),
    into the input terms of rows t0 + k·t_stride (vectors of ``terms``: ``lanes.term_at``), bias
    added: four blocks of LANES units (4·LANES output channels) against QUAD_ROWS rows at a time,
    4·QUAD_ROWS vector accumulators, so each x element loaded serves 4·LANES multiply-adds and each
    weight vector QUAD_ROWS·LANES. The rows past the last present one are skipped.

    Why four blocks: one block against all 8 rows loaded 8 x elements a weight vector, each through
    its own index arithmetic (Taichi's i32 index, sign-extended at every load, which LLVM cannot
    hoist), and the loop was bound by the µops that cost (``llvm-mca`` on Zen 3). In
    ``bench/probes/cpu_projection.py``'s form with x at run-time offsets, one thread, 56 rows, it
    took 1.4-1.7x the time of four blocks against two rows (bench/analysis.md).
    Why four rows with AVX-512 (16 accumulators of its 32 registers; AVX2 has 16, so two rows
    there): each pass streams W once, and half as many passes keep it in L2 beside U where the two
    outgrow it. 2-core EPYC VM (Zen 5, 1 MiB of L2 a core), ``ab_trees.py``, µs a step, two / four
    rows: LSTM 192 b4 t1000 9.47 / 8.71, LSTM 256 b4 t200 18.0 / 16.8, LSTM 256 b8 35.3 / 32.5,
    GRU 128 b8 8.9 / 8.2, LSTM 64 b8 3.26 / 3.09, LSTM 512 b1 t25 27.8 / 26.7, LSTM 128 b8 8.9 /
    8.8 (W and U fit: a tie).

    A quad with a gate whose input is not dense (the identity, or nil), and the blocks past the
    last whole quad, take one block at a time (``block_rows``). Blocks are counted as in ``lanes.py``, (u, g) in order, so where a lane
    vector holds four gates (the LSTM's) a quad is one vector."""
    G = frame[F_GATES]
    blocks = G * lane_blocks(frame[F_OUT])
    rows = rows_present(present)
    for qd in range(blocks // QUAD):
        dense = 1
        for h in ti.static(range(QUAD)):
            if frame[F_INPUT_MODE + (qd * QUAD + h) % G] != INPUT_DENSE:
                dense = 0
        if dense != 0:
            for grp in range((rows + QUAD_ROWS - 1) // QUAD_ROWS):
                k0 = grp * QUAD_ROWS
                quad_against_rows(x, [starts[k0 + k] for k in ti.static(range(QUAD_ROWS))],
                                  [present[k0 + k] for k in ti.static(range(QUAD_ROWS))],
                                  t0 + k0 * t_stride, t_stride, terms, lanes, frame, qd * QUAD)
        else:
            for h in range(QUAD):
                block_rows(x, starts, present, t0, t_stride, terms, lanes, frame, qd * QUAD + h)
    for blk in range(blocks - blocks % QUAD, blocks):   # (none where a vector holds four gates: G = 4)
        block_rows(x, starts, present, t0, t_stride, terms, lanes, frame, blk)


@ti.func
def quad_against_rows(x: ti.template(), starts: ti.template(), present: ti.template(), t0, t_stride,
                      terms: ti.template(), lanes: ti.template(), frame: ti.template(), b0):
    """Blocks b0 .. b0+3 (all dense; QUAD / group vectors of ``group`` gates' blocks) against the
    rows of x at starts[k], into the terms of rows t0 + k·t_stride where the row is present
    (present[k])."""
    G = frame[F_GATES]
    n_in = frame[F_IN]
    group = ti.static(vector_gates(lanes))
    per = ti.static(QUAD // group)   # vectors a quad spans
    rows = ti.static(len(starts))
    acc = [[ti.Vector([0.0] * (group * LANES)) for _ in ti.static(range(per))] for _ in ti.static(range(rows))]
    wb = [(b0 // group + e) * n_in for e in ti.static(range(per))]
    for j in range(n_in):
        xs = [ti.cast(x[starts[k] + j], ti.f32) for k in ti.static(range(rows))]
        for e in ti.static(range(per)):
            wv = lanes[wb[e] + j]
            for k in ti.static(range(rows)):
                acc[k][e] += wv * xs[k]
    nb = lane_blocks(frame[F_OUT])
    for h in ti.static(range(QUAD)):
        blk = b0 + h   # (b0, a multiple of QUAD, is one of group: the block's gate in its vector is h % group)
        bias = gate_lanes(bias_vector(lanes, frame, blk // group), h % group)
        t = (blk % G) * nb + blk // G
        for k in ti.static(range(rows)):
            if present[k] != 0:
                terms[t0 + k * t_stride + t] = gate_lanes(acc[k][h // group], h % group) + bias


@ti.func
def block_rows(x: ti.template(), starts, present, t0, t_stride, terms: ti.template(), lanes: ti.template(),
               frame: ti.template(), blk):
    """Block blk (units Lu .. Lu+L-1 of gate g: u = blk // G, g = blk % G) against the 8 rows, for
    any input: W's vectors (dense), x itself (the identity), or nothing (nil). Where a vector holds
    several gates' blocks, all are multiplied and block blk's lanes kept (a quad with a gate whose
    input is not dense: a rare cell)."""
    H = frame[F_OUT]
    G = frame[F_GATES]
    n_in = frame[F_IN]
    group = ti.static(vector_gates(lanes))
    # scalars for the loop: the CPU keeps Taichi vectors whole, and LLVM would otherwise redo
    # the index arithmetic as a vector with an extract per load
    start = [starts[k] for k in ti.static(range(ROWS_PER_THREAD))]
    g = blk % G
    i0, n = block_span(blk // G, H)
    mode = frame[F_INPUT_MODE + g]
    acc = [ti.Vector([0.0] * LANES) for _ in ti.static(range(ROWS_PER_THREAD))]
    bias = ti.Vector([0.0] * LANES)
    wide_bias = bias_vector(lanes, frame, blk // group)
    wide = [ti.Vector([0.0] * (group * LANES)) for _ in ti.static(range(ROWS_PER_THREAD))]
    if mode == INPUT_DENSE:
        wb = (blk // group) * n_in
        for j in range(n_in):
            wv = lanes[wb + j]
            for k in ti.static(range(ROWS_PER_THREAD)):
                wide[k] += wv * ti.cast(x[start[k] + j], ti.f32)
    for p in ti.static(range(group)):
        if blk % group == p:
            bias = gate_lanes(wide_bias, p)
            for k in ti.static(range(ROWS_PER_THREAD)):
                acc[k] = gate_lanes(wide[k], p)
    if mode == INPUT_IDENTITY:   # (lanes past n repeat unit n-1: lanes no step reads)
        for k in ti.static(range(ROWS_PER_THREAD)):
            for m in ti.static(range(LANES)):
                acc[k][m] = ti.cast(x[start[k] + i0 + ti.min(m, n - 1)], ti.f32)
    t = g * lane_blocks(H) + blk // G
    for k in ti.static(range(ROWS_PER_THREAD)):
        if present[k] != 0:
            terms[t0 + k * t_stride + t] = acc[k] + bias


@ti.kernel
def project_inputs_lanes(x: INPUT, ws: WORKSPACE, lanes: LANE_WEIGHTS, terms: LANE_TERMS, frame: FRAME):
    """``project_inputs`` on the CPU's lane-packed W, into the input terms (``lanes.term_at``), a
    work item per 8 rows n = s·B + r: for a large projection whose batch is too small to give every
    CPU thread rows of its own (the lanes kernel projects as it goes otherwise, and saves this
    dispatch)."""
    ti.loop_config(block_dim=ti.static(worker_block()))
    for w in range(ti.static(workers())):
        T = frame[F_STEPS]
        B = frame[F_BATCH]
        N = T * B
        first, count, stride = share((N + ROWS_PER_THREAD - 1) // ROWS_PER_THREAD, w)
        for q in range(count):
            n0 = (first + q * stride) * ROWS_PER_THREAD
            starts, present = row_group(frame, n0, N, B)
            project_lanes(x, starts, present, term_at(frame, n0), term_at(frame, 1), terms, lanes, frame)
        start_run(ws, frame, w)
