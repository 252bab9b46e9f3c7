"""Whole sequences in one launch, U held in registers and split across blocks by its inputs (CUDA).

The spread kernel (``sequence_spread``) gives each block whole gate rows of U: every thread then
needs its chunk of every batch row's h at once, and 32 KiB of shared memory holds 8 rows of h at
hidden 512, so a batch of 64 takes 8 passes a step, each with three block barriers and one warp's
gate math. This kernel splits U's inputs (K) across blocks as well as its rows: block (g, k) of a
``groups`` × ``splits`` grid holds the gate rows of group g's ``units`` hidden units (all their
gates) at the 32 input channels of chunk k, one row a thread, in registers for the whole launch. A
block then needs only h[batch, its 32 inputs] a step (8 KiB for 64 rows): the whole batch in one
pass. A step:

1. copy the batch's h at the block's inputs (the history slot, written by every block at the last
   step) to shared memory; a block barrier;
2. for each batch row, each thread's 32-term dot product (every thread of the block reads the same
   h: a broadcast), written to the partials buffer [split, batch row, gate row], the layer's
   scratch region;
3. a grid barrier; then each (unit, batch row) cell of group g's units, whose batch rows are shared
   among the group's blocks, adds its gates' ``splits`` partial sums (L2 reads, all issued at once,
   added as a tree: ``dots.tree_sum``) and the input terms, applies the usual neurons and writes h
   and c to the next history slot and to the destination; a grid barrier before any block copies
   that h.

Two grid barriers a step, against the spread kernel's passes × three block barriers. The partials
buffer is reused every step: each block's grid barrier begins with a memory fence, which on the
H200 is ``MEMBAR.SC.GPU`` then ``CCTL.IVALL`` (the SM's L1 invalidated: seen in the kernel's SASS),
and no block reads the buffer between that fence and the barrier's end, so no L1 holds a stale
line of it.

A block of 2 or 4 chunks (fewer splits, fewer partial sums to add) was slower (H200, 4 layers of
LSTM 512 b64 t100, µs a step: 1 chunk 97.5, 2 chunks 182.1, 4 chunks 225.9): its warps read two
chunks at once, which ``ptxas`` no longer loaded 128 bits at a time (ncu: 38.0 M shared loads
against 10.5 M; unpadded, 2 chunks on one layer still took 29.9 against 24.7). Also tried, not
kept (same stack): per-group arrival counts instead of the grid barriers, 95.3 against 98.1 (and
wrong on lavapipe); the next row's h loaded during a row's products, 110.4; two rows a loop, 91.8
against 91.3.

``paired_split_kernel`` runs the two directions of a bidirectional level in one launch, each on
its own full grid: 2 × ``groups·splits`` blocks, two an SM (256 threads × 128 registers is half an
SM's register file; shared memory ≤ 2 × 32 KiB), so an SM interleaves a block of each direction
where two launches run them one after the other. H200, LSTM 512 t100 bidirectional, µs a step,
paired against two launches: b32 24.6 / 32.4, b64 36.1 / 47.0, so on by default
(``scheduler.recurrence.PAIR_DIRECTIONS``; ``MPSRNN_PAIR_DIRECTIONS=off`` turns it off).

Layers too large for one block an SM take two (``scheduler.recurrence.split_per_sm``; 256 threads
× 128 registers is half an SM's register file), and the LSTM and single gate too large for that
hold 64 input channels of a row a thread (``WIDE``: 64 weights, as a GRU thread's two rows of 32),
so half the splits. H200, t100, µs a step, split on two blocks an SM / the kernel that ran before
(spread for the LSTM, persistent for the GRU): LSTM 1024 (64 inputs) b16 25.0 / 29.6, b64 64.7 /
102.2, b128 128.0 / 199.7; LSTM 768 (64 inputs) b16 19.3 / 25.4, b64 48.6 / 83.6; GRU 1024 b16
38.8 / 46.0, b64 82.4 / 160.4. At 64 inputs a thread, eight accumulators or two batch rows a loop
(their weights read once) were no faster (LSTM 1024 b64: 66.7 and 86.6 against 66.2).

A layer whose grid fits one block an SM leaves half of each SM's register file empty, and its 8
warps wait on their shared loads one at a time (``ncu``, LSTM 1024 b64: each row's 64-term product
holds one 128-bit shared load in flight, and warps sit at ``short_sb``). ``halves`` = 2 holds each
block's weights twice, on 2 × ``groups·splits`` blocks, two an SM; each copy takes half the batch
rows of every step (block m = k + splits·half of a group: rows half·⌈B/2⌉ on), and the cells are
shared among all 2·splits blocks of the group. Twice the warps an SM, the same work. H200, t100, µs
a step, halves / one: LSTM 512 b32 16.0 / 16.3, b64 23.0 / 24.3, b128 34.4 / 41.6; LSTM 256 b64
14.9 / 16.5; 4 layers of LSTM 512 b64 84.4 / 88.6; GRU 512 b64 33.0 / 41.8; single gate 1024 b64
19.2 / 22.4 (median of 2 rounds, same process). The scheduler takes it from batch 32
(``scheduler.recurrence.split_halves``); the paired kernel already fills an SM with two blocks.

Where the batch is small (``scheduler.recurrence.split_atomic``: up to 32, the GRU's up to 64) the
blocks add their partial sums atomically into one [batch row, gate row] sum (``atomic``), which
the cells read once and set back to zero, in place of ``splits`` sums each that they add as a
tree: the cells' loads shrink by ``splits`` (32 for GRU 1024). The sums start at zero (one grid
barrier at the launch's start). H200, t100, µs a step, atomic / apart (same process, median of 2
rounds): GRU 1024 b16 21.8 / 39.4, b64 58.4 / 82.5; GRU 512 b16 14.7 / 17.2, b64 30.3 / 32.8; LSTM
1024 b16 20.1 / 24.8, b32 32.6 / 35.5; single gate 2048 b16 18.2 / 18.9; but at batch 64 and more
the LSTM loses (LSTM 1024 b64 60.3 / 58.0, LSTM 768 b64 56.9 / 38.6, LSTM 512 b64 22.8 / 21.7, b128
38.2 / 33.7; the 4-layer stack 87.2 / 83.1), and the GRU at 128 (GRU 512 53.0 / 51.6). Each block
taking its batch rows from a row of its own (rotated by its split, so that the blocks of a group
add into different sums at a time) was slower everywhere (LSTM 768 b64 96.5, GRU 1024 b64 103.3):
a run-time modulo a row. Atomic sums leave the last bits of a result to the order the adds land in.

The GRU (``gru_layer``) takes two products a step and four grid barriers (three with the gates
made in the blocks: ``gates_here``): its second product,
Uh·(r∘h0), needs every unit's r. A thread holds one row of each product (64 weights); the
second phase's partial sums go beside the first's, whose z the cells read again at the end of
the step. H200, conventional GRU t100, µs a step, split / spread: GRU 512 b16 18.3 / 30.4, b64
43.0 / 106.1, b128 78.6 / 202.6, bidirectional b64 56.2 / 117.4; but b4 15.9 / 11.6.

Limits: the LSTM (no dense peepholes), the GRU and the single gate, with the usual neurons;
first-product rows (``FIRST_PHASE_GATES``) × ``units`` ≤ 256 threads; ``groups·splits`` blocks
resident at once, one or two an SM (on 132 SMs, one: LSTM up to hidden 512, GRU 704, single gate
1024; two: LSTM 1024, GRU 1024, single gate 2048); batch rows past what shared memory holds
(``bc``: 256, the GRU's 128; 64 at 64 inputs a thread, which copy 16 floats of h a pass beside
their weights) are taken in more passes before the barrier. A row absent at a step copies its
state forward.
"""
import functools

import taichi as ti

from .dots import tree_sum, w32
from .frame import diagonal_peepholes, input_view, memory_weights, param, recurrent_weights, run_sizes, vh_is_set
from .gate_math import (
    standard_gru_gates,
    standard_gru_output,
    standard_lstm_cell_state,
    standard_lstm_output,
    standard_single_gate_output,
)
from .layout import (
    CELL_GRU,
    CELL_LSTM,
    CELL_SINGLE_GATE,
    F_IN,
    F_P_BIAS,
    F_PEEP,
    F_ROWS,
    F_STEPS,
    F_W,
    F_W_SJ,
    F_W_SO,
    F_WS_C,
    F_WS_H,
    F_WS_SCRATCH,
    F_WS_XW,
    F_ZERO_STATE,
    FIRST_PHASE_GATES,
    GATES,
    PEEP_DENSE,
    PEEP_DIAGONAL,
)
from .neurons import sigmoid32
from .projection import zero_initial_state
from .sequence_copy import store_output
from .sequence_persistent import SHARED_LIMIT, grid_barrier, grid_kernels, leave_grid, project_own_rows
from .sequence_registers import CHUNK
from .sequence_spread import h_buffers

BLOCK = 256     # threads a block: 128 registers a thread, 32 of them weights (64 in a wide chunk)
SHARED = SHARED_LIMIT   # floats of shared memory: 32 KiB, h of 256 batch rows a pass
WIDE = 64       # input channels of a wide chunk (``split_shape``): one row a thread only
WIDE_PASS = 64  # batch rows a pass of a wide chunk: 16 copied floats a thread beside its 64 weights


def partial_rows(cell):
    """Gate rows of the partials buffer, in units of H: the LSTM's four gates, the single gate; the
    GRU's z and r (first phase), then Uh·(r∘h0) and Vh·(z∘h0) (second phase), so the second phase
    leaves z's partial sums in place for the cells that need z again."""
    return 4 if cell == CELL_GRU else GATES[cell]


def split_partials(cell, batch, hidden, splits):
    """Floats of the partials buffer, [split, batch row, gate row] (``splits`` 1: the atomic kernel's
    one sum): the layer's scratch region (F_WS_SCRATCH), which the scheduler makes this large for a
    layer that runs this kernel."""
    return splits * batch * partial_rows(cell) * hidden


def split_shape(cell, peephole, hidden, standard, batch, sms, width=CHUNK):
    """(units a group, groups, splits, batch rows a pass, width) of the split kernel for a layer whose
    threads hold ``width`` input channels of a row (CHUNK, or WIDE for the LSTM and the single gate,
    whose threads hold one row), or None where it does not fit: the fewest units a group whose grid
    fits ``sms`` blocks, so the most blocks share the step."""
    if not standard or (cell == CELL_LSTM and peephole == PEEP_DENSE) or (width != CHUNK and cell == CELL_GRU):
        return None
    splits = -(-hidden // width)
    for units in range(1, BLOCK // FIRST_PHASE_GATES[cell] + 1):
        groups = -(-hidden // units)
        if groups * splits <= sms:
            bc = min(SHARED // (h_buffers(cell) * width), 1 << (max(batch, 1) - 1).bit_length())
            if width != CHUNK:
                bc = min(bc, WIDE_PASS)
            return units, groups, splits, bc, width
    return None


PROJECT_APART = 0    # the input terms come from the projection's own dispatch
PROJECT_ROWS = 1     # each block projects its units' gate rows over all inputs (``project_own_rows``)
PROJECT_CHUNKS = 2   # each block projects its rows at its own input chunk; the chunks' sums added after
X_PASS_FLOATS = 2048 # PROJECT_CHUNKS: floats of x a pass (8 KiB of shared memory: 32 or 64 rows of a chunk)


def split_partials_chunks(cell, steps, batch, hidden, splits):
    """Floats a PROJECT_CHUNKS kernel keeps past its partials buffer: every split's partial input
    terms, [split, step·batch row, gate row]."""
    return splits * steps * batch * GATES[cell] * hidden


def split_kernel(cell, units, groups, splits, bc, width, projects, halves=1, atomic=False, gates_here=False):
    """The kernel of ``cell`` on ``groups`` × ``splits`` blocks (``split_shape``), times ``halves``
    (2: each block's weights held twice, each copy taking half the batch rows; for a layer whose
    grid fits one block an SM, so the SMs hold two); ``projects`` (PROJECT_*): whether and how it
    computes its own input terms and zero initial states first; ``atomic``: the blocks add their partial
    sums into one [batch row, gate row] buffer (``partial_rows``) instead of writing them apart;
    ``gates_here`` (the GRU's, with ``atomic``): each block makes r∘h0 and z∘h0 at its own inputs
    from the sums (``copy_gated``), three grid barriers a step instead of four. One compile per
    combination, on first use."""
    return _split_kernels(cell, units, groups, splits, bc, width, projects, halves, atomic, gates_here)[0]


def paired_split_kernel(cell, units, groups, splits, bc, width, projects, atomic=False, gates_here=False):
    """Two layers of the same shape at once (the two directions of a bidirectional level), each on
    its own ``groups`` × ``splits`` blocks, two blocks an SM: the arguments of ``split_kernel``
    twice. Each layer meets only its own blocks at its grid barriers (the counters are in its
    frame)."""
    return _split_kernels(cell, units, groups, splits, bc, width, projects, 1, atomic, gates_here)[1]


@functools.lru_cache(maxsize=None)
def _split_kernels(cell, units, groups, splits, bc, width, projects, halves, atomic, gates_here):
    assert not gates_here or (atomic and cell == CELL_GRU), "gates_here: the GRU's, from the atomic sums"
    assert projects != PROJECT_CHUNKS or (halves == 1 and cell != CELL_GRU), "PROJECT_CHUNKS: LSTM, single gate"
    SUMS = 1 if atomic else splits   # partial sums a gate row of a batch row (split_partials)
    G = GATES[cell]
    PR = partial_rows(cell)
    NB = groups * splits * halves
    SH = splits * halves   # blocks of a group
    COPIES = (bc * width + BLOCK - 1) // BLOCK   # elements of h a thread copies a pass
    HS = h_buffers(cell) * bc * width   # floats of shared h (the GRU's second phase: r∘h0, z∘h0)
    # PROJECT_CHUNKS: rows of x a pass of the projection copies to shared memory (the recurrence's
    # bc is the batch's, 1 at batch 1: a pass a row, each a copy and two block barriers)
    X_ROWS = X_PASS_FLOATS // width
    X_COPIES = X_ROWS * width // BLOCK
    SHARED_FLOATS = max(HS, X_PASS_FLOATS) if projects == PROJECT_CHUNKS else HS
    assert BLOCK % width == 0, "copy_h takes a thread's input channel from tid alone"

    @ti.func
    def load_chunk(wts: ti.template(), at, sj, j0, H):
        """The weights a thread holds: its row (first element at ``at``; negative: none) at input
        channels j0 .. j0 + width - 1 (stride sj), as float32; zero past H."""
        w = ti.Vector([0.0] * width, ti.f32)
        if at >= 0:
            for c in ti.static(range(width // CHUNK)):   # (static loops of 32: Taichi warns past that)
                for j_ in ti.static(range(CHUNK)):
                    j = c * CHUNK + j_
                    if j0 + j < H:
                        w[j] = w32(wts, at + (j0 + j) * sj)
        return w

    @ti.func
    def chunk_dot(w, hs: ti.template(), at):
        """Σ_j w[j]·hs[at + j]: four accumulators keep the multiply-adds overlapped (eight, or two
        batch rows a loop sharing the weights' reads, were no faster: module text)."""
        acc = ti.Vector([0.0] * 4, ti.f32)
        for c in ti.static(range(width // CHUNK)):
            for j in ti.static(range(CHUNK)):
                acc[j % 4] += w[c * CHUNK + j] * hs[at + c * CHUNK + j]
        return acc[0] + acc[1] + acc[2] + acc[3]

    @ti.func
    def put_copies(hs: ti.template(), at, got, tid, end: ti.template()):
        """A thread's loaded elements (``got``) into hs[at + tid + e_·BLOCK], those before ``end``:
        the stores of ``copy_h``, ``copy_gated`` and ``copy_x``, after all of their loads."""
        for e_ in ti.static(range(got.n)):
            if tid + e_ * BLOCK < end:
                hs[at + tid + e_ * BLOCK] = got[e_]

    @ti.func
    def copy_h(ws: ti.template(), src, hs: ti.template(), at, b0, rows, j0, H, tid):
        """h[b0 + r, j0 + j] from the history slot at ws[src] into hs[at + r·width + j] for r < bc, zero
        past H and past ``rows``. Every load is issued before any store (see ``sequence_spread.copy_h``).
        A copy's row and input come from tid once, not from tid + e_·BLOCK each: LLVM hoisted those
        COPIES indices and bounds out of the step loop, live in registers across the products and
        spilled (``ptxas``, 64 inputs a thread: 580 → 448 bytes of spill stores; H200, LSTM 1024 b64
        t100, 64.8 → 57.9 µs a step)."""
        got = ti.Vector([0.0] * COPIES, ti.f32)
        r0 = tid // width   # copy e_ is row r0 + e_·(BLOCK // width), input j (width divides BLOCK)
        j = tid % width
        at0 = (b0 + r0) * H + j0 + j
        for e_ in ti.static(range(COPIES)):
            r = r0 + e_ * (BLOCK // width)
            ok = j0 + j < H and r < bc and b0 + r < rows
            got[e_] = ti.select(ok, ws[src + ti.select(ok, at0 + e_ * (BLOCK // width) * H, 0)], 0.0)
        put_copies(hs, at, got, tid, bc * width)

    @ti.func
    def copy_gated(ws: ti.template(), hs: ti.template(), at, b0, rows, j0, H, tid, hp, xw0, part, PH, gate):
        """The GRU's r∘h0 (gate 1) or z∘h0 (gate 0) at the block's inputs, for batch rows b0 + r,
        r < bc, into hs[at + r·width + j], made here from the gate's one sum (the atomic kernel's),
        its input term (xw0: this step's) and h0 in place of copying the cells' (so no grid barrier
        waits for the cells); zero past H and past ``rows``. Loads first, as ``copy_h``."""
        got = ti.Vector([0.0] * COPIES, ti.f32)
        r0 = tid // width
        j = tid % width
        for e_ in ti.static(range(COPIES)):
            r = r0 + e_ * (BLOCK // width)
            ok = j0 + j < H and r < bc and b0 + r < rows
            b = ti.select(ok, b0 + r, 0)
            jj = ti.select(ok, j0 + j, 0)
            pre = ws[xw0 + b * 3 * H + gate * H + jj] + ws[part + b * PH + gate * H + jj]
            got[e_] = ti.select(ok, sigmoid32(pre) * ws[hp + b * H + jj], 0.0)
        put_copies(hs, at, got, tid, bc * width)

    @ti.func
    def partial_sum(ws: ti.template(), part, b, o, B, PH, clear: ti.template()):
        """Gate row o's recurrent term for batch row b: its splits' partial sums, all loaded first and
        added as a tree (PH: the buffer's gate rows, ``partial_rows`` × H). H200, µs a step, tree /
        in a row: 4 layers of LSTM 512 b64 t100 89.8 / 91.8, bidirectional b64 34.8 / 35.6, GRU 512
        b64 43.0 / 43.0 (median of 2 rounds, same process). ``atomic``: the one sum the blocks added
        into, set back to zero where ``clear`` (its last reader this step) for the next step's adds."""
        v = 0.0
        if ti.static(atomic):
            v = ws[part + b * PH + o]
            if ti.static(clear):
                ws[part + b * PH + o] = 0.0
        else:
            v = tree_sum(ti.Vector([ws[part + (k * B + b) * PH + o] for k in ti.static(range(splits))], ti.f32))
        return v

    @ti.func
    def block_place(blk):
        """(split k, first unit of the group, first input of the chunk, index among the group's blocks)
        of block blk; block m = k + splits·half of a group takes its batch half's rows."""
        return blk % splits, (blk // SH) * units, (blk % splits) * width, blk % SH

    @ti.func
    def store_partials(ws: ti.template(), hs: ti.template(), w, o, src, two: ti.template(), src2, at_h, part, sp,
                       j0, rows, B, H, PH, tid, m, gated: ti.template(), xw0):
        """The partial sums of a step's product: for each pass of up to bc present batch rows of the
        block's half (m // splits; all rows where ``halves`` is 1), copy the
        rows' vector at ws[src] at the block's inputs into hs (``two``: and, where src2 ≥ 0, the one
        at ws[src2] after bc·width; ``gated``: r∘h0 and z∘h0 made from h0 at ws[src], ``copy_gated``),
        then each thread's row o (-1: none, weights w) against the vector
        at hs offset ``at_h``, into the partials buffer at ws[part]: [split, batch row, o] of PH gate
        rows."""
        lo = 0
        hi = rows
        if ti.static(halves > 1):
            bh = (B + halves - 1) // halves
            lo = (m // splits) * bh
            hi = ti.min(rows, lo + bh)
        for pass_ in range((ti.max(hi - lo, 0) + bc - 1) // bc):
            b0 = lo + pass_ * bc
            if ti.static(gated):
                copy_gated(ws, hs, 0, b0, hi, j0, H, tid, src, xw0, part, PH, 1)
                if src2 >= 0:
                    copy_gated(ws, hs, bc * width, b0, hi, j0, H, tid, src, xw0, part, PH, 0)
            else:
                copy_h(ws, src, hs, 0, b0, hi, j0, H, tid)
                if ti.static(two):
                    if src2 >= 0:
                        copy_h(ws, src2, hs, bc * width, b0, hi, j0, H, tid)
            ti.simt.block.sync()
            for rr in range(ti.min(bc, hi - b0)):
                if o >= 0:
                    if ti.static(atomic):
                        ti.atomic_add(ws[part + (b0 + rr) * PH + o], chunk_dot(w, hs, at_h + rr * width))
                    else:
                        ws[part + (sp * B + b0 + rr) * PH + o] = chunk_dot(w, hs, at_h + rr * width)
            ti.simt.block.sync()   # before the next pass overwrites hs

    @ti.func
    def chunk_terms_at(frame: ti.template()):
        """Where the PROJECT_CHUNKS partial input terms start: past the partials buffer (the size the
        scheduler makes room for, ``split_partials``)."""
        _, B, H, _ = run_sizes(frame)
        return frame[F_WS_SCRATCH] + SUMS * B * PR * H

    @ti.func
    def copy_x(x: ti.template(), frame: ti.template(), hs: ti.template(), n0, N, B, j0, n_in, tid):
        """x of rows n0 + r (n = step·B + batch row, r < X_ROWS) at inputs j0 .. j0 + width - 1 into
        hs[r·width + j], as float32; zero past n_in, past N, and for a row its step does not have.
        Loads first, as ``copy_h``."""
        got = ti.Vector([0.0] * X_COPIES, ti.f32)
        x_base, x_step, x_row = input_view(frame)
        r0 = tid // width
        j = tid % width
        for e_ in ti.static(range(X_COPIES)):
            n = n0 + r0 + e_ * (BLOCK // width)
            t = ti.select(n < N, n // B, 0)
            b = n - t * B
            ok = j0 + j < n_in and r0 + e_ * (BLOCK // width) < X_ROWS and n < N and b < frame[F_ROWS + t]
            at = ti.select(ok, x_base + t * x_step + b * x_row + j0 + j, x_base)
            got[e_] = ti.select(ok, ti.cast(x[at], ti.f32), 0.0)
        put_copies(hs, 0, got, tid, X_ROWS * width)

    @ti.func
    def project_chunks(x: ti.template(), ws: ti.template(), wts: ti.template(),
                       frame: ti.template(), hs: ti.template(), blk, tid):
        """PROJECT_CHUNKS, before the launch's first grid barrier: each thread's gate row of W at the
        block's input chunk (the chunk its row of U takes; inputs past splits·width are not taken:
        the scheduler's ``split_chunks_fit``) against every row's x there, as the recurrent
        products take h: a partial input term a split, stored apart (no atomics: the same bits every
        run). And the zero initial states, spread over all blocks, where the run has none."""
        T, B, H, _ = run_sizes(frame)
        N = T * B
        n_in = frame[F_IN]
        GH = G * H
        sp, u_lo, j0, _m = block_place(blk)
        o = -1
        at = -1
        if tid < G * units and u_lo + tid % units < H:
            o = (tid // units) * H + u_lo + tid % units
            at = frame[F_W] + o * frame[F_W_SO]
        w = load_chunk(wts, at, frame[F_W_SJ], j0, n_in)
        terms = chunk_terms_at(frame)
        for pass_ in range((N + X_ROWS - 1) // X_ROWS):
            n0 = pass_ * X_ROWS
            copy_x(x, frame, hs, n0, N, B, j0, n_in, tid)
            ti.simt.block.sync()
            for rr in range(ti.min(X_ROWS, N - n0)):
                if o >= 0:
                    ws[terms + (sp * N + n0 + rr) * GH + o] = chunk_dot(w, hs, rr * width)
            ti.simt.block.sync()   # before the next pass overwrites hs
        if frame[F_ZERO_STATE] != 0:
            for e in range((B * H + NB * BLOCK - 1) // (NB * BLOCK)):
                item = (e * NB + blk) * BLOCK + tid
                if item < B * H:
                    zero_initial_state(ws, frame, item)

    @ti.func
    def add_chunk_terms(ws: ti.template(), frame: ti.template(), blk, tid):
        """PROJECT_CHUNKS, after the first grid barrier: each present row's input terms, the bias plus
        its splits' partial terms added as a tree, spread over all blocks. The first step's grid
        barrier lies between these stores and the cells' first read of them."""
        T, B, H, _ = run_sizes(frame)
        N = T * B
        GH = G * H
        terms = chunk_terms_at(frame)
        for e in range((N * GH + NB * BLOCK - 1) // (NB * BLOCK)):
            item = (e * NB + blk) * BLOCK + tid
            if item < N * GH:
                n = item // GH
                o = item - n * GH
                t = n // B
                if n - t * B < frame[F_ROWS + t]:
                    parts = ti.Vector([ws[terms + (k * N + n) * GH + o] for k in ti.static(range(splits))], ti.f32)
                    ws[frame[F_WS_XW] + item] = param(frame, frame[F_P_BIAS] + o) + tree_sum(parts)

    @ti.func
    def run_layer(x: ti.template(), ws: ti.template(), wts: ti.template(),
                  frame: ti.template(), head: ti.template(), out: ti.template(),
                  hs: ti.template(), blk, tid, layer, unread: ti.template()):
        """Block blk's share of one layer's whole sequence; ``layer`` (of a paired launch) is not
        needed: the two layers share nothing but the grid; nor is ``unread`` (``grid_kernels``' packed
        rows, which this kernel has none of)."""
        barrier = 0   # grid barriers passed, times the blocks: what the next one waits for
        if ti.static(atomic):   # the sums start at zero (each reader sets them back after)
            _, B, H, _ = run_sizes(frame)
            n = B * PR * H
            part = frame[F_WS_SCRATCH]
            for e in range((n + NB * BLOCK - 1) // (NB * BLOCK)):
                at = (e * NB + blk) * BLOCK + tid
                if at < n:
                    ws[part + at] = 0.0
        if ti.static(projects == PROJECT_ROWS):
            project_own_rows(x, ws, wts, frame, NB, blk, tid)
        if ti.static(projects == PROJECT_CHUNKS):
            project_chunks(x, ws, wts, frame, hs, blk, tid)
        if ti.static(projects != PROJECT_APART or atomic):
            barrier += NB
            grid_barrier(frame, tid, barrier)
        if ti.static(projects == PROJECT_CHUNKS):
            add_chunk_terms(ws, frame, blk, tid)
        if ti.static(cell == CELL_GRU):
            gru_layer(ws, wts, frame, head, out, hs, blk, tid, barrier)
        else:
            gated_layer(ws, wts, frame, head, out, hs, blk, tid, barrier)
        leave_grid(frame, tid, NB)

    @ti.func
    def gated_layer(ws: ti.template(), wts: ti.template(), frame: ti.template(), head: ti.template(),
                    out: ti.template(), hs: ti.template(), blk, tid, passed):
        """The LSTM and the single gate: one product a step (the module text's steps)."""
        barrier = passed   # run_layer's count so far
        _, B, H, _ = run_sizes(head)
        sp, u_lo, j0, m = block_place(blk)
        GH = G * H
        part = head[F_WS_SCRATCH]   # the partials buffer
        # products: this thread's gate row, gate tid // units of unit u_lo + tid % units
        o = -1   # the row's index in U, -1 where none
        at = -1
        u0, uso, usj = recurrent_weights(head)
        if tid < G * units and u_lo + tid % units < H:
            o = (tid // units) * H + u_lo + tid % units
            at = u0 + o * uso
        w = load_chunk(wts, at, usj, j0, H)
        # gate math: unit u_lo + iu of batch rows sp + splits·(lane + lanes·q)
        lanes = BLOCK // units
        iu = tid % units
        i = u_lo + iu
        cell_ok = tid < lanes * units and i < H
        diagonal = head[F_PEEP] == PEEP_DIAGONAL
        for s in range(head[F_STEPS]):
            _, B, H, slot = run_sizes(head)   # re-read each step: short register live ranges
            hp = head[F_WS_H] + s * slot
            cp = head[F_WS_C] + s * slot
            rows = frame[F_ROWS + s]
            store_partials(ws, hs, w, o, hp, False, -1, 0, part, sp, j0, rows, B, H, GH, tid, m, False, 0)
            barrier += NB
            grid_barrier(frame, tid, barrier)
            for q in range((B + SH * lanes - 1) // (SH * lanes)):
                b = m + SH * (tid // units + lanes * q)
                if cell_ok and b < B:
                    hv = 0.0
                    c_ = 0.0
                    if ti.static(cell == CELL_LSTM):
                        c_ = ws[cp + b * H + i]
                    if b >= rows:   # absent: the row carries its state forward
                        hv = ws[hp + b * H + i]
                    else:
                        xw = head[F_WS_XW] + (s * B + b) * GH + i
                        if ti.static(cell == CELL_SINGLE_GATE):
                            hv = standard_single_gate_output(ws[xw] + partial_sum(ws, part, b, i, B, GH, True))
                        else:
                            peep = diagonal_peepholes(wts, head, diagonal, H, i)
                            a_i = ws[xw] + partial_sum(ws, part, b, i, B, GH, True) + peep[0] * c_
                            a_f = ws[xw + H] + partial_sum(ws, part, b, H + i, B, GH, True) + peep[1] * c_
                            a_c = ws[xw + 2 * H] + partial_sum(ws, part, b, 2 * H + i, B, GH, True) + peep[2] * c_
                            c_ = standard_lstm_cell_state(a_i, a_f, a_c, c_)
                            a_o = ws[xw + 3 * H] + partial_sum(ws, part, b, 3 * H + i, B, GH, True) + peep[3] * c_
                            hv = standard_lstm_output(a_o, c_)
                        store_output(out, head, s, b, i, hv)
                    ws[hp + slot + b * H + i] = hv
                    if ti.static(cell == CELL_LSTM):
                        ws[cp + slot + b * H + i] = c_
            barrier += NB
            grid_barrier(frame, tid, barrier)

    @ti.func
    def gru_layer(ws: ti.template(), wts: ti.template(), frame: ti.template(), head: ti.template(),
                  out: ti.template(), hs: ti.template(), blk, tid, passed):
        """The GRU: two products a step, four grid barriers. Thread tid < 2·units of block (g, k)
        holds, at chunk k's inputs, one row of each phase for unit u_lo + tid % units: z's or r's
        row of U (first phase), Uh's or Vh's row (second; none for Vh nil). A step:
        products against h; a barrier; the cells' z and r, and r∘h0 and z∘h0 to fresh slots of the
        C region; a barrier; products of Uh against r∘h0 and Vh against z∘h0 (both copied into hs,
        z∘h0 after bc·width, read by an offset so a warp holding both kinds of row does not
        diverge); a barrier; the cells' new h, with z taken again from its partial sums, which the
        second phase leaves in place (``partial_rows``); a barrier. With ``gates_here`` the first
        cells and their barrier go: each block makes r∘h0 and z∘h0 at its own inputs from the sums
        (``copy_gated``), repeating across the groups the sigmoids the cells made once. H200, µs a
        step, gates here / in the cells (atomic sums, same process, median of 2 rounds): GRU 1024
        t1500 b2 8.8 / 11.0, b4 10.2 / 11.5, t100 b16 21.7 / 23.4, b32 35.5 / 35.0; GRU 512 b8 11.0 /
        12.3, b32 20.2 / 22.1; but GRU 1024 b64 61.1-62.4 / 58.4 (separate processes), so the
        scheduler stops at batch 32 (``split_gates_here``)."""
        barrier = passed   # run_layer's count so far
        _, B, H, _ = run_sizes(head)
        sp, u_lo, j0, m = block_place(blk)
        PH = PR * H
        part = head[F_WS_SCRATCH]   # the partials buffer: rows z, r, Uh·(r∘h0), Vh·(z∘h0)
        has_vh = vh_is_set(head)
        u0, uso, usj = recurrent_weights(head)
        v0, vso, vsj = memory_weights(head)
        o1 = -1   # the thread's row of each phase in the partials buffer, -1 where none
        o2 = -1
        at1 = -1
        at2 = -1
        sj2 = usj
        u = u_lo + tid % units
        if tid < 2 * units and u < H:
            o1 = (tid // units) * H + u                    # z (tid < units) or r
            at1 = u0 + o1 * uso
            if tid < units:
                o2 = 2 * H + u                             # Uh
                at2 = u0 + o2 * uso
            elif has_vh:
                o2 = 3 * H + u                             # Vh
                at2 = v0 + u * vso
                sj2 = vsj
        w1 = load_chunk(wts, at1, usj, j0, H)
        w2 = load_chunk(wts, at2, sj2, j0, H)
        second = ti.select(tid >= units, bc * width, 0)   # where this thread's phase-2 vector lies in hs
        lanes = BLOCK // units
        iu = tid % units
        i = u_lo + iu
        cell_ok = tid < lanes * units and i < H
        for s in range(head[F_STEPS]):
            _, B, H, slot = run_sizes(head)   # re-read each step: short register live ranges
            hp = head[F_WS_H] + s * slot
            rows = frame[F_ROWS + s]
            # phase 1: z's and r's products against h
            store_partials(ws, hs, w1, o1, hp, False, -1, 0, part, sp, j0, rows, B, H, PH, tid, m, False, 0)
            barrier += NB
            grid_barrier(frame, tid, barrier)
            if ti.static(gates_here):
                # phase 2 from the sums: each block makes r∘h0 and z∘h0 at its own inputs
                store_partials(ws, hs, w2, o2, hp, True, ti.select(has_vh, 0, -1), second, part, sp, j0, rows, B,
                               H, PH, tid, m, True, head[F_WS_XW] + s * B * 3 * H)
            else:
                rh = head[F_WS_C] + (2 * s) * slot   # fresh slots for r∘h0, z∘h0: no SM's L1 holds them stale
                zh = rh + slot
                for q in range((rows + SH * lanes - 1) // (SH * lanes)):
                    b = m + SH * (tid // units + lanes * q)
                    if cell_ok and b < rows:
                        xw = head[F_WS_XW] + (s * B + b) * 3 * H + i
                        z, r = standard_gru_gates(ws[xw] + partial_sum(ws, part, b, i, B, PH, False),
                                                  ws[xw + H] + partial_sum(ws, part, b, H + i, B, PH, True))
                        h0 = ws[hp + b * H + i]
                        ws[rh + b * H + i] = r * h0
                        ws[zh + b * H + i] = z * h0
                barrier += NB
                grid_barrier(frame, tid, barrier)
                # phase 2: Uh·(r∘h0) and Vh·(z∘h0)
                store_partials(ws, hs, w2, o2, rh, True, ti.select(has_vh, zh, -1), second, part, sp, j0, rows, B, H,
                               PH, tid, m, False, 0)
            barrier += NB
            grid_barrier(frame, tid, barrier)
            for q in range((B + SH * lanes - 1) // (SH * lanes)):
                b = m + SH * (tid // units + lanes * q)
                if cell_ok and b < B:
                    hv = ws[hp + b * H + i]   # h0; an absent row carries it forward
                    if b < rows:
                        xw = head[F_WS_XW] + (s * B + b) * 3 * H + i
                        z = sigmoid32(ws[xw] + partial_sum(ws, part, b, i, B, PH, True))   # as in the first phase
                        if ti.static(gates_here):
                            ws[part + b * PH + H + i] = 0.0   # r's sum, read by every block in phase 2
                        pre_h = ws[xw + 2 * H] + partial_sum(ws, part, b, 2 * H + i, B, PH, True)
                        if has_vh:
                            pre_h += partial_sum(ws, part, b, 3 * H + i, B, PH, True)
                        hv = standard_gru_output(head, pre_h, z, hv)
                        store_output(out, head, s, b, i, hv)
                    ws[hp + slot + b * H + i] = hv
            barrier += NB
            grid_barrier(frame, tid, barrier)

    # shared array: hs [vector, batch row, input channel]
    wide = "" if width == CHUNK else f"w{width}"
    twice = "" if halves == 1 else f"h{halves}"
    adds = ("_gates" if gates_here else "") + ("_sum" if atomic else "")
    chunks = "_xchunks" if projects == PROJECT_CHUNKS else ""
    return grid_kernels(run_layer, NB, BLOCK, (SHARED_FLOATS,),
                        f"{('single_gate', 'gru', 'lstm')[cell]}{adds}_split{groups}x{splits}{wide}{twice}{chunks}")
