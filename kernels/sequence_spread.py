"""Whole sequences in one launch over a few SMs, the recurrent weights held in their registers (CUDA).

The registers kernel (``sequence_registers``) keeps U in one block's registers, which holds an LSTM
up to hidden 64. Past that, this kernel spreads U over a grid of blocks, one per SM, as
``sequence_persistent`` does: block k owns ``units`` hidden units (all their gates, so it finishes
their cells itself), and each of its threads holds ``rho`` (1 or 2) of those gate rows × one chunk of
32 input channels in registers for the whole launch. A step, for each pass over up to ``bc`` batch
rows:

1. copy the rows' h (every unit, written by every block at the last step) from the history slot to
   shared memory, zero past H: one coalesced sweep. The slot is fresh (aligned to 128-byte lines,
   ``layout.F_SLOT``), so no SM's L1 can hold it stale;
2. the thread of each (unit, batch row) loads its projected inputs and cell state now, so their
   latency hides behind the products;
3. each thread multiplies its weights against its chunk of every row's h (a broadcast read: a warp's
   threads share a chunk) and leaves the partial sums in shared memory; a block barrier;
4. the (unit, row) threads add up their gates' partial sums, apply the usual neurons and write the
   new h and c to the next slot and to the destination; a block barrier.

Then a grid barrier (``sequence_persistent.grid_barrier``) before any block reads that h; or, with
``tagged`` (the planner's choice on CUDA where a group has few blocks), no barrier: each h value
crosses as a word that carries its step (``kernels/exchange.py``), and readers poll their words. In
a step only h, x and c move through memory, where ``sequence_persistent``'s threads stream their
rows of U from L2 at every step.

A one-step run from zeros (DeepBench's GRU t1) takes a kernel of its own (``one_step``, chosen when
planning): U·h0 and V·c0 are zero, so each unit's gates are their neurons on the input terms alone,
with no U, no products and no grid barrier (``step_from_zeros``). Only its own kernel pays for that:
branches inside the time loop cost every other run (GRU 1024 b1 t1500, H200: 8.5 → 8.9 µs a step
for skipping the barriers of a step 0 from zeros and the one after the last step).

Limits: ceil(gates × units / rho) × chunks ≤ 256 threads on at most one block per SM, or two where
the scheduler allows it (``scheduler.recurrence.spread_per_sm``: 256 threads × 128 registers is half
an SM's register file, and 2 × 32 KiB of shared memory fit), or ≤ 512 threads on one block an SM
(``WIDE_BLOCK``: Vulkan, where two blocks an SM are not sure to be resident). On 132 SMs: LSTM up to
hidden 672 on one block an SM, 1024 on two or on one of 512 threads; the single gate up to 1344.
``bc`` × (h + partial sums) ≤ 32 KiB of shared memory (the frame's header is read from a copy there
where 256 bytes are left: ``grid_kernels``); the usual neurons; no dense LSTM peepholes. The GRU
takes two phases a step, each ending at a grid barrier (its second product needs every unit's r:
``gru_layer``), its threads one row of each phase (LSTM-sized shares: up to hidden ~735 on 132 SMs,
1024 on two blocks an SM). Past those (Vulkan, on one block an SM of 512 threads), a thread takes up
to MEMORY_ROWS rows (the GRU's up to half of them a phase) and reads those past MAX_ROWS (GRU_HELD a
phase) from memory every step (``rows_dot``): LSTM and GRU up to hidden 2048 on 132 SMs. The grid
must be resident at once, as for every persistent kernel. A row absent at a step copies its state
forward.

Batch groups (``batch_groups``): a layer that leaves SMs free (LSTM 128 takes 8 blocks of 132) runs
as up to 8 copies of its blocks, each copy holding all of U and taking every groups-th pass of the
batch rows, so a thread's products run over fewer rows a step. The copies are independent but for
the grid barrier, which counts every block of the layer.

``paired_spread_kernel`` runs two layers of one shape side by side, the two directions of a
bidirectional level, on a grid of twice the blocks: the body (``run_layer``) is the same, each
half reads its own arrays and meets only its own blocks at the barriers (counters in its frame),
or reads only its own tagged words (a half of them). On 132 SMs a pair fits 66 blocks a direction:
LSTM 512 then takes two rows a thread.
"""
import functools

import numpy as np
import taichi as ti

from .dots import tree_sum, w32
from .frame import diagonal_peepholes, memory_weights, recurrent_weights, run_sizes, vh_is_set
from .knobs import knob
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
    F_PEEP,
    F_ROWS,
    F_STEPS,
    F_WS_C,
    F_WS_H,
    F_WS_SCRATCH,
    F_WS_XW,
    FIRST_PHASE_GATES,
    GATES,
    PEEP_DENSE,
    PEEP_DIAGONAL,
)
from .exchange import EPOCH_LIMIT, LAYER_WORDS, SPIN, epoch_field, exchange_field, tagged_word, word_step, word_value
from .sequence_copy import store_output
from .sequence_persistent import SHARED_LIMIT, grid_barrier, grid_kernels, leave_grid, project_own_rows
from .sequence_registers import CHUNK, load_rows, rows_dot

BLOCK = 256          # threads a block: 128 registers a thread (see sequence_registers)
WIDE_BLOCK = 512     # threads a block where one block an SM holds what two of BLOCK would (Vulkan)
MAX_ROWS = 2         # gate rows a thread holds (the GRU's: one of each phase, GRU_HELD)
MEMORY_ROWS = 8      # gate rows a thread takes where the rows past MAX_ROWS are read from memory every
                     # step (``rows_dot``): LSTM 2048 on 132 blocks of WIDE_BLOCK threads (the GRU's:
                     # half of them a phase)
GRU_HELD = MAX_ROWS // 2   # rows a GRU thread holds of each phase
MAX_BATCH_PASS = 8   # batch rows a pass
SHARED = SHARED_LIMIT   # floats of shared memory: 32 KiB (Metal's limit; grid_kernels adds the header only within it)


def h_buffers(cell):
    """Vectors a batch row keeps in shared memory: h; for the GRU's second phase r∘h0 and z∘h0."""
    return 2 if cell == CELL_GRU else 1


def spread_shape(cell, peephole, hidden, standard, batch, sms, grid=None, threads=BLOCK, most_rows=MAX_ROWS):
    """(rho, blocks, chunks, batch rows a pass) of the spread kernel for a layer, or None where it does
    not fit: the fewest rows a thread (1 up to ``most_rows``, the GRU's half of them in each phase;
    past MAX_ROWS, GRU_HELD a phase, they are read from memory every step), on the fewest blocks
    that hold them, or on ``grid`` blocks where given; ``threads`` a block (WIDE_BLOCK: see
    ``spread_kernel``). One row a thread beat two (H200, µs a step: LSTM 128 b1 2.7 on 8 blocks
    against 2.8 on 4; LSTM 512 b1 t25 8.3 on 128 against 9.1 on 64)."""
    if not standard or (cell == CELL_LSTM and peephole == PEEP_DENSE):
        return None
    chunks = -(-hidden // CHUNK)
    h_rows = h_buffers(cell)
    for rho in range(1, (most_rows // 2 if cell == CELL_GRU else most_rows) + 1):   # the GRU's: a phase's
        for blocks in ([grid] if grid else range(1, sms + 1)):
            units = -(-hidden // blocks)
            if blocks > sms or row_threads(cell, units, rho) * chunks > threads or units > threads:
                continue
            bc = min(MAX_BATCH_PASS, 1 << (max(batch, 1) - 1).bit_length())
            while bc > 1 and (bc * units > threads or bc * (h_rows * chunks * CHUNK + rho * threads) > SHARED):
                bc //= 2
            if h_rows * chunks * CHUNK + rho * threads <= SHARED:
                return rho, blocks, chunks, bc
    return None


def row_threads(cell, units, rho):
    """Threads that hold a chunk of the gate rows of ``units`` units, ``rho`` rows each: the LSTM's
    and the single gate's rows p, p + span, ... of all of them; the GRU's of one half of a phase's
    (``gru_layer``: z or r, then Uh or Vh), so that a thread's rows of phase 2 read one vector."""
    if cell == CELL_GRU:
        return 2 * -(-units // rho)
    return -(-FIRST_PHASE_GATES[cell] * units // rho)


def memory_rows(cell, rho):
    """Rows a thread of the spread kernel with ``rho`` rows (the GRU's: a phase) reads from memory
    every step, in each phase: those past MAX_ROWS (the GRU's past GRU_HELD)."""
    return max(0, rho - (GRU_HELD if cell == CELL_GRU else MAX_ROWS))


def rows_packed():
    """Whether the spread kernel reads the rows it takes from memory from their copy in its threads'
    order (``pack_memory_rows``). ``MPSRNN_SPREAD_ROWS_LAYOUT=packed|plain`` decides, for A/B
    benchmarks."""
    return knob("MPSRNN_SPREAD_ROWS_LAYOUT", ("packed", "plain")) != "plain"


def pack_memory_rows(cell, phases, H, nblocks, rho, threads):
    """The rows that the spread kernel's threads read from memory every step (``memory_rows``), in
    their threads' order, for ``nblocks`` blocks of ``threads`` threads and ``rho`` rows a thread:
    phase p (the LSTM's and the single gate's one; the GRU's two), block b, the thread's memory row
    m, input j of its chunk, thread t at (((p·nblocks + b)·M + m)·CHUNK + j)·threads + t, zeros past
    H and where a thread has no such row. ``phases``: [(matrix (gates·H, H), gates), ...] as
    ``PackedCell._phase_matrices`` gives them (the GRU's [Uz; Ur], Uh, and Vh where set). In U's
    transposed layout a warp's threads hold 8-10 neighbouring rows of 3-4 chunks, so one of its
    loads read runs of 20-40 bytes from 3-4 lines, and a thread's next input lay a row of U·h on;
    here it reads 128 consecutive bytes, and a block 4·threads."""
    M = memory_rows(cell, rho)
    chunks = -(-H // CHUNK)
    units = -(-H // nblocks)
    if cell == CELL_GRU:   # phase 2: [Uh; Vh] (zeros without Vh), so a row maps as in phase 1
        vh = phases[2][0] if len(phases) > 2 else np.zeros((H, H), np.float32)
        mats = [phases[0][0], np.concatenate([phases[1][0], vh])]
    else:
        mats = [phases[0][0]]
    out = np.zeros((len(mats), nblocks, M, CHUNK, threads), np.float32)
    tid = np.arange(threads)
    cols = np.arange(CHUNK)
    for p, matrix in enumerate(mats):
        padded = np.zeros((matrix.shape[0] + 1, chunks * CHUNK), np.float32)   # a last row of zeros: none
        padded[:-1, :H] = matrix
        for b in range(nblocks):
            rows, k = _thread_rows(cell, tid, b * units, units, rho, chunks, H)
            for m in range(M):
                r = np.where(rows[rho - M + m] >= 0, rows[rho - M + m], matrix.shape[0])
                out[p, b, m] = padded[r[None, :], (np.minimum(k, chunks - 1) * CHUNK)[None, :] + cols[:, None]]
    return out.reshape(-1)


def _thread_rows(cell, tid, u_lo, units, rho, chunks, H):
    """([rows of each thread's row slot q, -1 where none], chunk of each thread) of the spread
    kernel's threads ``tid`` in the block of units u_lo .., as ``gated_layer`` and ``gru_layer`` map
    them: a row of U's first-phase gates (the GRU's of [Uz; Ur], and the same row of [Uh; Vh])."""
    if cell == CELL_GRU:
        span = -(-units // rho)
        p, k = tid % (2 * span), tid // (2 * span)
        half = p // span
        rows = []
        for q in range(rho):
            iu = p % span + q * span
            ok = (k < chunks) & (iu < units) & (u_lo + iu < H)
            rows.append(np.where(ok, half * H + u_lo + iu, -1))
        return rows, k
    R = FIRST_PHASE_GATES[cell] * units
    span = -(-R // rho)
    p, k = tid % span, tid // span
    rows = []
    for q in range(rho):
        r = p + q * span
        ok = (k < chunks) & (r < R) & (u_lo + r % units < H)
        rows.append(np.where(ok, (r // units) * H + u_lo + r % units, -1))
    return rows, k


def batch_groups(blocks, bc, batch, sms, most):
    """(batch rows a pass, groups) for up to ``most`` groups of the spread kernel's ``blocks`` blocks
    (``spread_shape``: ``bc`` rows a pass), each group a copy of U over its own blocks that takes
    every groups-th pass of the batch rows, so a thread loops over fewer rows a step; at most
    ``sms`` blocks in all. The rows a pass shrink until every group has a pass."""
    groups = max(1, min(most, sms // blocks, batch))
    if groups == 1:
        return bc, 1
    rows = min(bc, -(-batch // groups))
    return rows, min(groups, -(-batch // rows))


def spread_kernel(cell, rho, nblocks, chunks, bc, projects, one_step=False, groups=1, tagged=False, epochs=False,
                  threads=BLOCK, packed=False):
    """The kernel of ``cell`` on ``nblocks`` blocks whose threads hold ``rho`` rows of ``chunks`` chunks,
    ``bc`` batch rows a pass; ``projects``: it computes its own input terms and zero initial states
    first (``sequence_persistent.project_own_rows``); ``one_step``: for runs of one step from zeros
    only (``step_from_zeros``); ``groups``: copies of those blocks, each taking every groups-th pass
    (``batch_groups``; not with ``one_step``); ``tagged``: h (and the GRU's r∘h0 and z∘h0) cross
    between blocks as tagged words (``kernels/exchange.py``) instead of through grid barriers;
    ``epochs`` (with ``tagged``): their tags count from the epoch, and the run starts without a grid
    barrier; ``threads``: a block's, BLOCK or WIDE_BLOCK. One block an SM of WIDE_BLOCK threads holds
    what two of BLOCK would, and a workgroup's size is in its shader, so Vulkan's compiler fits the
    whole block on an SM (128 registers a thread, spilling past them): every block resident, which
    two blocks an SM on Vulkan are not sure to be (``scheduler.recurrence.spread_per_sm``). Not with
    ``projects`` (``project_own_rows`` strides by BLOCK). ``packed``: the rows a thread reads from
    memory come from their copy in its threads' order (``pack_memory_rows``), one more array after
    the output. One compile per combination, on first use."""
    return _spread_kernels(cell, rho, nblocks, chunks, bc, projects, one_step, groups, tagged, epochs, threads,
                           packed)[0]


def paired_spread_kernel(cell, rho, nblocks, chunks, bc, projects, one_step=False, groups=1, tagged=False,
                         epochs=False, threads=BLOCK):
    """Two layers of the same shape at once (the two directions of a bidirectional level), each on
    ``nblocks`` × ``groups`` blocks of a grid of twice that: the arguments of ``spread_kernel``
    twice. Each layer meets only its own blocks at its grid barriers (the counters are in its frame)
    and reads only its own tagged words (its half of them, and its own epoch)."""
    return _spread_kernels(cell, rho, nblocks, chunks, bc, projects, one_step, groups, tagged, epochs, threads)[1]


@functools.lru_cache(maxsize=None)
def _spread_kernels(cell, rho, nblocks, chunks, bc, projects, one_step, groups, tagged=False, epochs=False,
                    threads=BLOCK, packed=False):
    assert groups == 1 or not one_step, "a one-step run's kernel reads only its own blocks' terms"
    assert threads == BLOCK or not projects, "project_own_rows strides by BLOCK threads"
    assert not (tagged and one_step), "tagged: a one-step run exchanges nothing"
    assert tagged or not epochs, "epochs: a form of the tagged words"
    assert not packed or memory_rows(cell, rho) > 0, "packed: rows read from memory"
    G = GATES[cell]
    TOTAL = nblocks * groups   # blocks of a layer: its groups of nblocks
    PAD = chunks * CHUNK    # h in shared memory, zero past H
    COPIES = (bc * PAD + threads - 1) // threads   # elements of h a thread copies a pass
    HS = h_buffers(cell) * bc * PAD   # floats of shared h
    M = memory_rows(cell, rho)   # rows a thread reads from memory in each phase

    EX = exchange_field(epochs) if tagged else None   # the tagged words (kernels/exchange.py)
    EP = epoch_field() if epochs else None

    @ti.func
    def group_passes(B, group):
        """Passes of ``bc`` batch rows that fall to ``group``: every groups-th from its own on."""
        return ((B + bc - 1) // bc - group + groups - 1) // groups

    @ti.func
    def copy_h(ws: ti.template(), src, hs: ti.template(), at, b0, B, H, tid):
        """Rows b0 .. b0+bc-1 of the state vectors at ws[src + b·H] into hs[at + r·PAD + j], zero past H
        and B. Every load is issued before any store, and none behind a branch: a load behind its own
        branch, or after a shared store (which may alias a generic pointer), waited for the one
        before it, 16 L2 round trips in a row, ~5 µs of a pass (ncu, LSTM 512 b16)."""
        got = ti.Vector([0.0] * COPIES, ti.f32)
        for e_ in ti.static(range(COPIES)):
            ok, off = h_element(tid, e_, b0, B, H)
            got[e_] = ti.select(ok, ws[src + ti.select(ok, off, 0)], 0.0)
        put_h(hs, at, got, tid)

    @ti.func
    def h_element(tid, e_, b0, B, H):
        """(whether it is a present element, its offset b·H + j in a state vector) of this thread's
        copy e_ of a pass of rows b0 ..: element e = tid + e_·threads of [row r, channel j] (PAD a row)."""
        e = tid + e_ * threads
        return e < bc * PAD and e % PAD < H and b0 + e // PAD < B, (b0 + e // PAD) * H + e % PAD

    @ti.func
    def put_h(hs: ti.template(), at, got, tid):
        """A thread's copies ``got`` into hs[at + e], after all of their loads."""
        for e_ in ti.static(range(COPIES)):
            if tid + e_ * threads < bc * PAD:
                hs[at + tid + e_ * threads] = got[e_]

    @ti.func
    def copy_tagged(ex: ti.template(), base, step, hs: ti.template(), at_hs, b0, B, H, tid):
        """``copy_h`` into hs from ``at_hs``, from the words of ``step`` at ex[base + b·H + j]
        (``kernels/exchange.py``): every word's first poll goes out before any is waited for, then
        each is polled until it carries ``step`` (a NaN where it never does: a lost word shows in
        the output)."""
        got = ti.Vector([0] * COPIES, ti.i64)
        at = ti.Vector([0] * COPIES, ti.i32)
        for e_ in ti.static(range(COPIES)):
            ok, off = h_element(tid, e_, b0, B, H)
            at[e_] = ti.select(ok, base + off, -1)
            got[e_] = tagged_word(step, 0.0)   # a word not read: zero, already "arrived"
            if ok:
                got[e_] = ti.atomic_add(ex[at[e_]], ti.i64(0))
        vals = ti.Vector([0.0] * COPIES, ti.f32)
        for e_ in ti.static(range(COPIES)):
            tries = 0
            while True:   # (a call in a while's condition breaks Taichi's IR)
                if word_step(got[e_]) == step or tries >= SPIN:
                    break
                got[e_] = ti.atomic_add(ex[at[e_]], ti.i64(0))
                tries += 1
            vals[e_] = ti.select(word_step(got[e_]) == step, word_value(got[e_]), ti.math.nan)
        put_h(hs, at_hs, vals, tid)

    @ti.func
    def read_vector(ws: ti.template(), src, base, step, hs: ti.template(), at, b0, B, H, tid):
        """A pass's rows of a vector that every block wrote (h, the GRU's r∘h0 or z∘h0) into hs from
        ``at``: its tagged words of ``step`` at EX[base + b·H + j]; else, past a grid barrier, the
        copy at ws[src + b·H + j]."""
        if ti.static(tagged):
            copy_tagged(EX, base, step, hs, at, b0, B, H, tid)
        else:
            copy_h(ws, src, hs, at, b0, B, H, tid)

    @ti.func
    def send(base, step, b, i, H, value):
        """With tagged words: element (b, i) of a vector, for ``read_vector`` at ``step``."""
        if ti.static(tagged):
            ti.atomic_max(EX[base + b * H + i], tagged_word(step, value))

    @ti.func
    def exchange_barrier(frame: ti.template(), tid, passed):
        """The grid barrier between a phase's writes of a vector and every block's reads of it (none
        with tagged words: each word says when it has arrived); returns the barriers' count."""
        barrier = passed
        if ti.static(not tagged):
            barrier += TOTAL
            grid_barrier(frame, tid, barrier)
        return barrier

    @ti.func
    def start_exchange(ex: ti.template(), ws: ti.template(), head: ti.template(), blk, group, tid, tag0, w0):
        """The run's first words: h0 of this block's units at the rows of its group's passes, tagged
        with step 1 (after ``tag0``), into slot 0 of the layer's words (from ``w0``). Without epochs
        the same words of slot 1 (and the GRU's r∘h0 and z∘h0 words) are zeroed, so that no earlier
        run's words meet this one's atomic max (plain stores: the grid barrier after this orders
        them); with epochs every earlier tag is under this run's, and the words go in by the atomic
        max."""
        _, B, H, _ = run_sizes(head)
        units = (H + nblocks - 1) // nblocks
        for q in range((B * units + threads - 1) // threads):
            e = tid + q * threads
            b = e // units
            i = blk * units + e % units
            if b < B and i < H and (b // bc) % groups == group:
                word = tagged_word(tag0 + 1, ws[head[F_WS_H] + b * H + i])
                if ti.static(epochs):
                    ti.atomic_max(ex[w0 + b * H + i], word)
                else:
                    ex[w0 + b * H + i] = word
                    ex[w0 + B * H + b * H + i] = ti.i64(0)
                    if ti.static(cell == CELL_GRU):   # r∘h0 and z∘h0, two slots: after h's
                        for k in ti.static(range(4)):
                            ex[w0 + (2 + k) * B * H + b * H + i] = ti.i64(0)

    @ti.func
    def finish_epoch(ex: ti.template(), ep: ti.template(), frame: ti.template(), head: ti.template(),
                     hs: ti.template(), tid, tag0, layer):
        """With epochs, a block's way out (``leave_grid``): the last to leave moves the layer's
        epoch past this run's tags (its last: tag0 + steps + 1), or past EPOCH_LIMIT zeroes the
        layer's words and its epoch, its whole block storing (told through hs, free by now)."""
        ti.simt.block.sync()
        if tid == 0:
            hs[0] = 0.0
            if leave_grid(frame, tid, TOTAL):
                top = tag0 + head[F_STEPS] + 2
                if top < EPOCH_LIMIT:
                    ti.atomic_max(ep[layer], ti.cast(top, ti.i64))
                else:
                    hs[0] = 1.0
        ti.simt.block.sync()
        if hs[0] > 0.5:
            for q in range(LAYER_WORDS // threads):
                ex[layer * LAYER_WORDS + q * threads + tid] = ti.i64(0)
            if tid == 0:
                ep[layer] = ti.i64(0)

    @ti.func
    def pass_products(part: ti.template(), w, wts: ti.template(), at: ti.template(), sj, H, hs: ti.template(),
                      at_v, lr: ti.template(), k, R, rows, held: ti.template(), mw: ti.template(), at_m):
        """The partial sums of this thread's rows lr[q] (negative: none) and chunk k for each of the
        pass's ``rows`` batch rows, against the vectors at hs[at_v + r·PAD] (at_v: the phase's, 0 or
        the GRU's z∘h0 after bc·PAD): part[(r·R + lr[q])·chunks + k]; the first ``held`` rows from
        the registers ``w``, the rest from memory. Threads without rows (k past the chunks) read a
        valid chunk and store nothing. ``rows_dot`` takes the chunk's column apart from where it
        lies in hs, for the rows it reads from memory; with ``packed``, those come from mw, the thread's
        first at ``at_m`` (``packed_rows_dot``). A run-time loop over the rows: unrolled, the
        products of 8 rows were interleaved and ran 2-3x slower (b8 against b1, per row)."""
        j0 = ti.min(k, chunks - 1) * CHUNK   # the chunk's first column
        for r in range(rows):
            sums = ti.Vector([0.0] * lr.n, ti.f32)
            if ti.static(packed):
                sums = packed_rows_dot(w, mw, at_m, hs, j0, at_v + r * PAD)
            else:
                sums = rows_dot(w, wts, at, sj, H, hs, j0, lr.n, held, at_v + r * PAD)
            for q in ti.static(range(lr.n)):
                if lr[q] >= 0:
                    part[(r * R + lr[q]) * chunks + k] = sums[q]

    @ti.func
    def packed_rows_at(blk, phase, tid):
        """Where thread tid of unit block blk finds its first packed row of ``phase`` (0, or the GRU's
        1): ``pack_memory_rows``'s order."""
        return ((phase * nblocks + blk) * M * CHUNK) * threads + tid

    @ti.func
    def packed_rows_dot(w, mw: ti.template(), at_m, hs: ti.template(), j0, v0):
        """``rows_dot`` for a thread whose rows past the held ones lie in the packed copy mw
        (``pack_memory_rows``): its row held + m at input j0 + j at at_m + (m·CHUNK + j)·threads,
        so each of a warp's loads reads 128 consecutive bytes and a block's 4·threads. Zeros past H
        and for rows that do not exist: nothing to clamp."""
        held = ti.static(rho - M)
        acc = ti.Vector([0.0] * (2 * rho), ti.f32)   # two accumulators a row
        for j in ti.static(range(CHUNK)):
            x = hs[v0 + j0 + j]
            for i in ti.static(range(rho)):
                if ti.static(i < held):
                    acc[2 * i + j % 2] += w[i * CHUNK + j] * x
                else:
                    acc[2 * i + j % 2] += w32(mw, at_m + ((i - held) * CHUNK + j) * threads) * x
        return ti.Vector([acc[2 * i] + acc[2 * i + 1] for i in ti.static(range(rho))], ti.f32)

    @ti.func
    def gate_sum(part: ti.template(), o):
        """Gate row o's recurrent term: its chunks' partial sums, side by side, added pairwise (a tree
        of log2(chunks) levels). Added in a row, LSTM 512's 16 chunks were 16 dependent adds on the
        path of the one warp that finishes the cells while the block waits at its barrier."""
        return tree_sum(ti.Vector([part[o * chunks + kk] for kk in ti.static(range(chunks))], ti.f32))

    @ti.func
    def run_layer(x: ti.template(), ws: ti.template(), wts: ti.template(),
                  frame: ti.template(), head: ti.template(), out: ti.template(),
                  hs: ti.template(), part: ti.template(), blk, tid, layer, mw: ti.template()):
        """Block blk's share of one layer's whole sequence (the kernel's body: see the module text);
        ``layer``: 1 for the second of a paired launch, whose tagged words are the field's second half;
        ``mw``: the packed rows (``packed``; else the weights, not read)."""
        barrier = 0   # grid barriers passed, times the blocks: what the next one waits for
        if ti.static(projects):
            # over all the groups' blocks: the grid barrier after it makes every term visible
            project_own_rows(x, ws, wts, frame, TOTAL, blk, tid)
            if ti.static(one_step):   # it reads only its own terms, written by its other threads
                ti.simt.block.sync()
            else:
                barrier += TOTAL
                grid_barrier(frame, tid, barrier)
        tag0 = 0   # the run's tags count from here: the layer's epoch, with epochs
        if ti.static(epochs):
            # a plain load: the epoch was last written by an earlier launch (its last block out, once
            # every block had read it), so nothing in this one races it. An atomic read here was
            # every thread of the grid on one address (32768 at LSTM 512), queued at L2
            tag0 = ti.cast(EP[layer], ti.i32)
        w0 = layer * LAYER_WORDS   # the layer's words
        if ti.static(tagged):   # the first words (from h0, which the projection may have written)
            start_exchange(EX, ws, head, blk % nblocks, blk // nblocks, tid, tag0, w0)
            if ti.static(not epochs):
                barrier += TOTAL
                grid_barrier(frame, tid, barrier)
        if ti.static(one_step):
            step_from_zeros(ws, wts, frame, head, out, blk, tid)
        elif ti.static(cell == CELL_GRU):
            gru_layer(ws, wts, frame, head, out, hs, part, blk % nblocks, blk // nblocks, tid, barrier, tag0, w0, mw)
        else:
            gated_layer(ws, wts, frame, head, out, hs, part, blk % nblocks, blk // nblocks, tid, barrier, tag0, w0,
                        mw)
        if ti.static(epochs):
            finish_epoch(EX, EP, frame, head, hs, tid, tag0, layer)
        else:
            leave_grid(frame, tid, TOTAL)

    @ti.func
    def step_from_zeros(ws: ti.template(), wts: ti.template(), frame: ti.template(), head: ti.template(),
                        out: ti.template(), blk, tid):
        """The one step of a run from zeros: U·h0 and V·c0 (a GRU's Vh·(z∘h0), an LSTM's peepholes on
        c0) are zero, so each (unit, batch row) of the block's units is its gates' neurons on its input
        terms alone. No U, no products, no grid barrier: each block reads only its own terms."""
        _, B, H, slot = run_sizes(head)
        units = (H + nblocks - 1) // nblocks
        diagonal = head[F_PEEP] == PEEP_DIAGONAL
        for q in range((B * units + threads - 1) // threads):
            e = tid + q * threads
            b = e // units
            i = blk * units + e % units
            if b < B and i < H:
                xw = head[F_WS_XW] + b * G * H + i
                hv = 0.0   # a row absent from the step keeps its zero state
                c = 0.0
                if b < frame[F_ROWS]:
                    if ti.static(cell == CELL_SINGLE_GATE):
                        hv = standard_single_gate_output(ws[xw])
                    elif ti.static(cell == CELL_GRU):
                        z, r_unused = standard_gru_gates(ws[xw], ws[xw + H])   # (r multiplies h0 = 0)
                        hv = standard_gru_output(head, ws[xw + 2 * H], z, 0.0)
                    else:
                        c = standard_lstm_cell_state(ws[xw], ws[xw + H], ws[xw + 2 * H], 0.0)
                        peep = diagonal_peepholes(wts, head, diagonal, H, i)   # the output gate's sees c1
                        hv = standard_lstm_output(ws[xw + 3 * H] + peep[3] * c, c)
                    store_output(out, head, 0, b, i, hv)
                ws[head[F_WS_H] + slot + b * H + i] = hv
                if ti.static(cell == CELL_LSTM):
                    ws[head[F_WS_C] + slot + b * H + i] = c

    @ti.func
    def gru_layer(ws: ti.template(), wts: ti.template(), frame: ti.template(), head: ti.template(),
                  out: ti.template(), hs: ti.template(), part: ti.template(), blk, group, tid, passed, tag0, w0,
                  mw: ti.template()):
        """The GRU: two phases a step, each a pass per bc batch rows, with a grid barrier after each.
        Phase 1: Uz and Ur against h give z and r of the block's units; r∘h0 and z∘h0 go to fresh
        slots of the C region (z to the scratch rows). Phase 2 needs every unit's r∘h0 and z∘h0: Uh
        against r∘h0 and Vh against z∘h0 (both copied into hs, z∘h0 after bc·PAD), then the output.
        A thread holds ``rho`` rows of each phase, all in one half of it: the rows of the block's
        units q, q + span, ... (span = ceil(units / rho)) in [Uz; Ur] and in [Uh; Vh], chunk k (rho
        = 1: row p of each). The first GRU_HELD of each phase stay in registers, the rest are read
        from memory every step (with ``packed``, from mw: ``pack_memory_rows``). Its phase-2 rows
        all read r∘h0 (Uh) or all z∘h0 (Vh), by an offset, so a warp that holds both kinds of row
        does not diverge. Without Vh (the conventional GRU: ``vh_is_set``, a uniform branch) z∘h0 is
        neither written nor read, and the threads of Vh's rows skip phase 2's products."""
        barrier = passed   # run_layer's count so far
        _, _, H, _ = run_sizes(head)
        units = (H + nblocks - 1) // nblocks
        u_lo = blk * units
        R = 2 * units
        span = (units + rho - 1) // rho
        p = tid % (2 * span)
        k = tid // (2 * span)
        half = p // span   # 0: Uz and Uh rows, 1: Ur and Vh rows
        u0, uso, usj = recurrent_weights(head)
        v0, vso, vsj = memory_weights(head)
        has_vh = vh_is_set(head)   # without Vh (the conventional GRU) z∘h0 neither crosses nor is multiplied
        lr = ti.Vector([-1] * rho, ti.i32)   # the thread's rows of each phase in [0, R), -1 where none
        lr2 = ti.Vector([-1] * rho, ti.i32)
        at1 = ti.Vector([-1] * rho, ti.i32)
        at2 = ti.Vector([-1] * rho, ti.i32)
        sj2 = ti.select(half == 1, vsj, usj)
        for q in ti.static(range(rho)):
            iu_ = p % span + q * span   # the row's unit among the block's
            if k < chunks and iu_ < units and u_lo + iu_ < H:
                u = u_lo + iu_
                lr[q] = half * units + iu_
                at1[q] = u0 + (half * H + u) * uso        # Uz (half 0) or Ur
                if half == 0 or has_vh:
                    lr2[q] = lr[q]
                    at2[q] = u0 + (2 * H + u) * uso        # Uh
                    if half == 1:
                        at2[q] = v0 + u * vso              # Vh
        w1 = load_rows(wts, at1, usj, k * CHUNK, H, rho, GRU_HELD)
        w2 = load_rows(wts, at2, sj2, k * CHUNK, H, rho, GRU_HELD)
        at_m1 = packed_rows_at(blk, 0, tid)
        at_m2 = packed_rows_at(blk, 1, tid)
        second = ti.select(half == 1, bc * PAD, 0)   # where this thread's phase-2 vector lies in hs
        bb = tid // units
        iu = tid % units
        i = u_lo + iu
        for s in range(head[F_STEPS]):
            _, B, H, slot = run_sizes(head)   # re-read each step: short register live ranges
            hp = head[F_WS_H] + s * slot
            rh = head[F_WS_C] + (2 * s) * slot   # fresh slots: no SM's L1 holds them stale
            zh = rh + slot
            zs = head[F_WS_SCRATCH]
            rz = w0 + (2 + 2 * (s % 2)) * B * H   # tagged: this step's r∘h0 words, then its z∘h0 words
            for q in range(group_passes(B, group)):   # phase 1: z and r
                b0 = (group + q * groups) * bc
                read_vector(ws, hp, w0 + (s % 2) * B * H, tag0 + s + 1, hs, 0, b0, B, H, tid)
                b = b0 + bb
                mine = bb < bc and i < H and b < B
                present = mine and b < frame[F_ROWS + s]
                xz = 0.0
                xr = 0.0
                if present:
                    xz = ws[head[F_WS_XW] + (s * B + b) * 3 * H + i]
                    xr = ws[head[F_WS_XW] + (s * B + b) * 3 * H + H + i]
                ti.simt.block.sync()
                pass_products(part, w1, wts, at1, usj, H, hs, 0, lr, k, R, ti.min(bc, B - b0), GRU_HELD, mw, at_m1)
                ti.simt.block.sync()
                if mine:
                    h0 = hs[bb * PAD + i]
                    z = 0.0
                    rg = 0.0
                    if present:
                        z, rg = standard_gru_gates(xz + gate_sum(part, bb * R + iu),
                                                   xr + gate_sum(part, bb * R + units + iu))
                    ws[zs + b * H + i] = z
                    if ti.static(tagged):
                        send(rz, tag0 + s + 1, b, i, H, rg * h0)
                        if has_vh:
                            send(rz + B * H, tag0 + s + 1, b, i, H, z * h0)
                    else:
                        ws[rh + b * H + i] = rg * h0
                        if has_vh:
                            ws[zh + b * H + i] = z * h0
                ti.simt.block.sync()   # before the next pass overwrites hs and part
            barrier = exchange_barrier(frame, tid, barrier)
            for q in range(group_passes(B, group)):   # phase 2: the proposed output and the new h
                b0 = (group + q * groups) * bc
                read_vector(ws, rh, rz, tag0 + s + 1, hs, 0, b0, B, H, tid)
                if has_vh:
                    read_vector(ws, zh, rz + B * H, tag0 + s + 1, hs, bc * PAD, b0, B, H, tid)
                b = b0 + bb
                mine = bb < bc and i < H and b < B
                present = mine and b < frame[F_ROWS + s]
                xh = 0.0
                z = 0.0
                h0 = 0.0
                if mine:
                    z = ws[zs + b * H + i]
                    h0 = ws[hp + b * H + i]
                    if present:
                        xh = ws[head[F_WS_XW] + (s * B + b) * 3 * H + 2 * H + i]
                ti.simt.block.sync()
                if lr2[0] >= 0:   # (a Vh row's thread without Vh has none: its products are skipped)
                    pass_products(part, w2, wts, at2, sj2, H, hs, second, lr2, k, R, ti.min(bc, B - b0), GRU_HELD,
                                  mw, at_m2)
                ti.simt.block.sync()
                if mine:
                    hv = h0
                    if present:
                        pre_h = xh + gate_sum(part, bb * R + iu)
                        if has_vh:
                            pre_h += gate_sum(part, bb * R + units + iu)
                        hv = standard_gru_output(head, pre_h, z, h0)
                        store_output(out, head, s, b, i, hv)
                    ws[hp + slot + b * H + i] = hv
                    send(w0 + ((s + 1) % 2) * B * H, tag0 + s + 2, b, i, H, hv)
                ti.simt.block.sync()
            barrier = exchange_barrier(frame, tid, barrier)

    @ti.func
    def gated_layer(ws: ti.template(), wts: ti.template(), frame: ti.template(), head: ti.template(),
                    out: ti.template(), hs: ti.template(), part: ti.template(), blk, group, tid, passed, tag0,
                    w0, mw: ti.template()):
        """The LSTM and the single gate: one phase a step. ``blk``: the block's share of the units;
        ``group``: its share of the batch's passes (``batch_groups``); ``tag0``: where the run's tags
        count from (``start_exchange``); ``w0``: the layer's first tagged word."""
        barrier = passed
        # this thread's gate rows lr[i] = p + i·span of the block's R (gate g = lr // units of unit
        # u_lo + lr % units) and its chunk k, loaded once for the whole launch
        _, _, H, _ = run_sizes(head)
        units = (H + nblocks - 1) // nblocks
        u_lo = blk * units
        R = G * units
        span = (R + rho - 1) // rho
        p = tid % span
        k = tid // span
        lr = ti.Vector([-1] * rho, ti.i32)   # -1 where none
        at = ti.Vector([-1] * rho, ti.i32)   # where the row starts in wts
        u0, uso, usj = recurrent_weights(head)
        diagonal = head[F_PEEP] == PEEP_DIAGONAL   # read once: in every pass it was two loads in a row
        for i in ti.static(range(rho)):
            r_ = p + i * span
            if k < chunks and r_ < R and u_lo + r_ % units < H:
                lr[i] = r_
                at[i] = u0 + ((r_ // units) * H + u_lo + r_ % units) * uso
        w = load_rows(wts, at, usj, k * CHUNK, H, rho, MAX_ROWS)
        at_m = packed_rows_at(blk, 0, tid)
        # the (unit, batch row) this thread finishes in each pass
        bb = tid // units
        iu = tid % units
        i = u_lo + iu
        for s in range(head[F_STEPS]):
            _, B, H, slot = run_sizes(head)   # re-read each step: short register live ranges
            hp = head[F_WS_H] + s * slot
            cp = head[F_WS_C] + s * slot
            for q in range(group_passes(B, group)):
                b0 = (group + q * groups) * bc
                read_vector(ws, hp, w0 + (s % 2) * B * H, tag0 + s + 1, hs, 0, b0, B, H, tid)
                b = b0 + bb
                mine = bb < bc and iu < units and i < H and b < B
                present = mine and b < frame[F_ROWS + s]
                xg = ti.Vector([0.0] * G, ti.f32)
                c = 0.0
                if present:
                    for g in ti.static(range(G)):
                        xg[g] = ws[head[F_WS_XW] + (s * B + b) * G * H + g * H + i]
                if ti.static(cell == CELL_LSTM):
                    if mine:
                        c = ws[cp + b * H + i]
                ti.simt.block.sync()
                pass_products(part, w, wts, at, usj, H, hs, 0, lr, k, R, ti.min(bc, B - b0), MAX_ROWS, mw, at_m)
                ti.simt.block.sync()
                if mine:
                    hv = 0.0
                    if present:
                        o = bb * R + iu
                        if ti.static(cell == CELL_SINGLE_GATE):
                            hv = standard_single_gate_output(xg[0] + gate_sum(part, o))
                        else:
                            peep = diagonal_peepholes(wts, head, diagonal, H, i)
                            a_i = xg[0] + gate_sum(part, o) + peep[0] * c
                            a_f = xg[1] + gate_sum(part, o + units) + peep[1] * c
                            a_c = xg[2] + gate_sum(part, o + 2 * units) + peep[2] * c
                            c = standard_lstm_cell_state(a_i, a_f, a_c, c)
                            a_o = xg[3] + gate_sum(part, o + 3 * units) + peep[3] * c
                            hv = standard_lstm_output(a_o, c)
                        store_output(out, head, s, b, i, hv)
                    else:
                        hv = ws[hp + b * H + i]
                    ws[hp + slot + b * H + i] = hv
                    if ti.static(cell == CELL_LSTM):
                        ws[cp + slot + b * H + i] = c
                    send(w0 + ((s + 1) % 2) * B * H, tag0 + s + 2, b, i, H, hv)
                ti.simt.block.sync()   # before the next pass overwrites hs and part
            barrier = exchange_barrier(frame, tid, barrier)

    # shared arrays: hs [batch row, channel], part [batch row, gate row, chunk]
    kind = ('single_gate', 'gru', 'lstm')[cell] + ('_fromzeros' if one_step else '')
    kind += ("_epochs" if epochs else "_tagged") if tagged else ""
    name = f"{kind}_spread{rho}x{nblocks}" + (f"x{groups}g" if groups > 1 else "") + (
        "_packed" if packed else "") + (f"_t{threads}" if threads != BLOCK else "")
    return grid_kernels(run_layer, TOTAL, threads, (HS, bc * rho * threads), name, rows=packed)
