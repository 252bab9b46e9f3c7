"""Whole sequences in one launch across the whole GPU (CUDA): persistent kernels.

Every SM gets two blocks (they keep twice the loads in flight: ``persistent_per_sm``)
that live for the whole sequence. Block k owns a slice of the hidden units (all gates of
each, so it can finish their state update itself). Per step its threads compute the
pre-activations of its gate rows for a chunk of batch rows: thread t takes row ``t % R``
(R = gates x units) and one
of ``256 // R`` slices of the input index j, so the dot products of a row are
split across threads and summed through shared memory. The block then applies
the gate math for its units and writes the new state to the next history slot.
The blocks meet at a grid barrier (a counter in the frame, spun on atomically,
after a memory fence) before anyone reads that state.

Why a new slot each step: a block reads h written by other SMs, through its own
L1, which is not coherent with theirs; a slot no one has read before (slots are
aligned to 128-byte lines, ``layout.F_SLOT``) cannot be stale in any L1.

A pass streams the weights in groups of loads issued together, four weights a load
(``quad_group``; U and a GRU's Vh, where set, in the layout of ``kernels/quads.py``), each
thread's groups in reverse on odd steps (``persistent_zigzag``), and each weight serves every
batch row of the pass's chunk. The terms it meets (the chunk's state vectors) are read four a
load too, from the kernel's own copy of every state vector it writes, kept in quads
(``term_slot``): the workspace is a float array, which LLVM cannot read 16 bytes at a time.
(Staging the chunk in shared memory first, one coalesced sweep, was slower: ``persistent_chunk``.)
Where a thread's share of the first phase's weights is short, it holds them in registers for
the whole sequence instead (``resident_terms``).

On every chunk of the GRU (and 1 batch row of the LSTM), the opening quads of each thread's run stay in
the shared memory the reduction buffer (sized to the chunk) and the header leave within 32 KiB
(``persistent_kept``): a step streams a group of loads fewer in a phase or both.

What the step's chain of latencies reads after a grid barrier (whose fence empties the L1), it
reads from shared memory where it can: the frame's header is copied there once a launch, and on
small chunks the projected input terms start the sums (``persistent_fold``), so the gate math waits
on no load from memory but the previous h (and the GRU's z).

For small projections the kernel also projects its own inputs first: a block
computes the input terms of the gate rows it owns (no other block reads them)
and its units' zero initial states, then meets the others at a grid barrier. A
layer is then one dispatch. The barrier count starts from 0 at every run: the
last block to leave the last barrier resets it (``F_DEPART``), since no
``project_inputs`` runs first to do it.

The grid must be resident all at once or the barrier never opens: two blocks
of 256 threads per SM (``persistent_per_sm``), 1.25-8.25 KiB of shared memory each (the reduction
buffer sized to the chunk, and the header; up to 30.25 with kept quads). Dense LSTM peepholes need a
second barrier per step and are left to the other paths.
Shapes: the grid, the batch chunk, the resident share, the kept counts and whether the kernel
projects are compile-time constants, so ``persistent_kernel`` builds (and caches) one kernel per
combination.

The grid's pieces (``grid_barrier``, ``leave_grid``, ``project_own_rows``, and ``grid_kernels``,
which builds a layer body's single and paired launch forms) also serve the spread and split
kernels.
"""
import functools

import taichi as ti

from .dots import w32
from .frame import (FRAME, HEADER_ROOM, INPUT, OUTPUT, WEIGHTS, WORKSPACE, copy_header, memory_weights,
                    recurrent_weights, run_sizes)
from .gate_math import (
    gru_gates,
    gru_output,
    lstm_cell_state,
    lstm_output,
    single_gate_output,
    standard_gru_gates,
    standard_gru_output,
    standard_lstm_cell_state,
    standard_lstm_output,
    standard_single_gate_output,
)
from .knobs import knob, one_or_two, switch
from .layout import (
    CELL_GRU,
    CELL_LSTM,
    CELL_SINGLE_GATE,
    F_BARRIER,
    F_DEPART,
    F_GATES,
    F_IN,
    F_PEEP,
    F_ROWS,
    F_STANDARD,
    F_STEPS,
    F_WS_C,
    F_WS_H,
    F_WS_SCRATCH,
    F_WS_XW,
    F_ZERO_STATE,
    FIRST_PHASE_GATES,
    GATES,
    PEEP_DIAGONAL,
)
from .grid import on_cuda
from .projection import ROWS_PER_THREAD, WARP, project_rows_in_lanes, projection_lanes, zero_initial_state
from .quads import QUAD, QUAD_WEIGHTS, kept_quads, stream_shape
from .sequence_copy import store_output

BLOCK = 256
MAX_CHUNK = 8
SHARED_LIMIT = 8192   # 4-byte words of shared memory a block may take: 32 KiB, Metal's threadgroup limit


def reduction_words(chunk, rows):
    """Floats of the reduction buffer: a sum for each of a thread's ``rows`` gate rows and ``chunk``
    batch rows (``partial_dots``), at most BLOCK x MAX_CHUNK (8 KiB)."""
    return BLOCK * rows * chunk


def kept_room(chunk, rows):
    """Quads a thread can keep in shared memory (``persistent_kept``): what 32 KiB leave past the
    reduction buffer and the header. 7 on chunks of 1 and 2 batch rows (the buffer takes 1 or 2
    KiB), 5 where it takes 8 KiB (two rows a thread on a chunk of 4, or a chunk of 8)."""
    return (SHARED_LIMIT - reduction_words(chunk, rows) - HEADER_ROOM) // (QUAD * BLOCK)


@ti.func
def rounds(n, tid):
    """How many of items tid, tid + BLOCK, ... are below n (a thread's share of n items)."""
    return (n - tid + BLOCK - 1) // BLOCK if tid < n else 0


@ti.func
def unit_pair(tid, q_, chunk, u_lo, b0):
    """The q_-th (unit, batch row) pair of this thread when a block finishes a chunk:
    (unit in the block, row in the chunk, unit index i, batch row b)."""
    q = tid + q_ * BLOCK
    return q // chunk, q % chunk, u_lo + q // chunk, b0 + q % chunk


@ti.func
def grid_barrier(frame: ti.template(), tid, target):
    """Wait until ``target`` block arrivals have been counted (all earlier writes visible)."""
    ti.simt.grid.memfence()
    ti.simt.block.sync()
    if tid == 0:
        ti.atomic_add(frame[F_BARRIER], 1)
        while ti.atomic_add(frame[F_BARRIER], 0) < target:
            pass
    ti.simt.block.sync()


@ti.func
def project_own_rows(x: ti.template(), ws: ti.template(), wts: ti.template(),
                     frame: ti.template(), nblocks, blk, tid):
    """The input terms of this block's own gate rows (its units: ceil(H / nblocks) from blk on),
    every step and batch row (no other block reads them), and its units' zero initial states when
    the run has none (every block reads those: the caller's grid barrier follows)."""
    T, B, H, _ = run_sizes(frame)
    units = (H + nblocks - 1) // nblocks
    rows_here = frame[F_GATES] * units
    jobs = ((T * B + ROWS_PER_THREAD - 1) // ROWS_PER_THREAD) * rows_here   # (gate row, 8 rows) pairs
    lanes = 1   # threads a job: one without warp shuffles (Vulkan runs these kernels only in tests)
    if ti.static(on_cuda()):
        # a short sequence leaves most threads without a job, and a job's dot over every input is a
        # chain of dependent loads (~40 µs at 512 inputs, H200): so its inputs are shared by lanes
        lanes = projection_lanes(jobs, BLOCK, frame[F_IN])
    jobs_a_warp = WARP // lanes
    for q in range((jobs * lanes + BLOCK - 1) // BLOCK):   # the same count for every thread
        e = tid + q * BLOCK
        job = (e // WARP) * jobs_a_warp + e % jobs_a_warp
        lo = job % rows_here
        i = blk * units + lo % units
        project_rows_in_lanes(x, ws, wts, frame, (lo // units) * H + i,
                              (job // rows_here) * ROWS_PER_THREAD, job < jobs and i < H,
                              (e % WARP) // jobs_a_warp, lanes, jobs_a_warp)
    if frame[F_ZERO_STATE] != 0:
        for q in range(rounds(B * units, tid)):
            e = tid + q * BLOCK
            i = blk * units + e % units
            if i < H:
                zero_initial_state(ws, frame, (e // units) * H + i)


@ti.func
def leave_grid(frame: ti.template(), tid, nblocks):
    """Count this block out of the kernel. Every block has passed its last grid barrier once it is
    counted here, so the last one counted resets the arrival count for the next run (the only
    reset: no other kernel touches it, and a new frame starts at 0). Returns, to thread 0, whether
    its block was the last counted (every other thread: False)."""
    last = False
    if tid == 0:
        if ti.atomic_add(frame[F_DEPART], 1) == nblocks - 1:
            frame[F_BARRIER] = 0
            frame[F_DEPART] = 0
            last = True
    return last


def term_slot(batch, hidden):
    """Quads between two slots of the persistent kernel's copy of its terms (``row_starts``): B rows
    of ceil(H / 4) quads (zeros past H, never written), rounded up to a 128-byte line, so that every
    slot is fresh in every L1 as the workspace's are (module docstring)."""
    return (batch * ((hidden + QUAD - 1) // QUAD) + 7) // 8 * 8


term_slot_ti = ti.func(term_slot)
stream_shape_ti = ti.func(stream_shape)


def term_quads(cell_kind, hidden, batch, steps):
    """Quads the terms' copy holds: T + 1 slots of h (slot 0, the initial state), and for a GRU its
    r∘h0 and z∘h0 of every step (two slots a step, from slot T + 1 on)."""
    return (steps + 1 + (2 * steps if cell_kind == CELL_GRU else 0)) * term_slot(batch, hidden)


@ti.func
def copy_initial_terms(ws: ti.template(), terms: ti.template(), frame: ti.template(), nblocks, blk, tid):
    """The initial state (history slot 0) of this block's units into slot 0 of the terms' copy;
    the caller's grid barrier follows (every block reads every unit)."""
    _, B, H, _ = run_sizes(frame)
    units = (H + nblocks - 1) // nblocks
    for q in range(rounds(B * units, tid)):
        e = tid + q * BLOCK
        b = e // units
        i = blk * units + e % units
        if i < H:
            write_term(terms, 0, b, i, H, ws[frame[F_WS_H] + b * H + i])


@ti.func
def term_row(slot, b, H):
    """Where batch row b of a slot of the terms' copy starts (its quad index; ``term_slot``)."""
    return slot + b * ((H + QUAD - 1) // QUAD)


@ti.func
def write_term(terms: ti.template(), slot, b, i, H, value):
    """Entry (batch row b, unit i) of a slot of the terms' copy."""
    terms[term_row(slot, b, H) + i // QUAD][i % QUAD] = value


def grid_kernels(run_layer, nblocks, block, shared, name, rows=False):
    """(kernel, paired) for a layer body ``run_layer`` that runs one layer's whole sequence on
    ``nblocks`` blocks of ``block`` threads (the spread and split kernels): ``kernel`` takes one
    layer's arrays; ``paired`` takes two layers' (the two directions of a bidirectional level) on
    2 × ``nblocks`` blocks, each layer's blocks meeting only each other at its grid barriers (the
    counts are in its frame). ``shared``: the floats of each shared array a block makes, passed to
    ``run_layer`` after the output array, before the block and thread index. ``run_layer`` takes the
    frame and then where to read its header: a copy in shared memory (``copy_header``) where the
    arrays leave room for it within SHARED_LIMIT, else the frame itself; last, which layer of the
    launch it runs (0, or 1 for a pair's second: whatever the layers share apart from their
    arrays, such as the spread kernel's tagged words, it splits by this); after that, the packed
    rows where ``rows`` (``kernel`` then takes one more weight array after the output: the spread
    kernel's, ``sequence_spread.pack_memory_rows``; and there is no ``paired``, None), else the
    layer's weights again, not read. ``name``: the kernels' names in profiles (the paired one's ends
    in ``_paired``)."""
    room = sum(shared) + HEADER_ROOM <= SHARED_LIMIT

    @ti.func
    def one_layer(x: ti.template(), ws: ti.template(), wts: ti.template(), frame: ti.template(),
                  out: ti.template(), mw: ti.template(), t):
        """Thread t of a one-layer launch: its block's shared arrays and header, then the body."""
        arrays = [ti.simt.block.SharedArray((n,), ti.f32) for n in ti.static(shared)]
        if ti.static(room):
            head = ti.simt.block.SharedArray((HEADER_ROOM,), ti.i32)
            copy_header(frame, head, t % block, block)
            run_layer(x, ws, wts, frame, head, out, *arrays, t // block, t % block, 0, mw)
        else:
            run_layer(x, ws, wts, frame, frame, out, *arrays, t // block, t % block, 0, mw)

    def kernel(x: INPUT, ws: WORKSPACE, wts: WEIGHTS, frame: FRAME, out: OUTPUT):
        ti.loop_config(block_dim=block)
        for t in range(nblocks * block):
            one_layer(x, ws, wts, frame, out, wts, t)

    def kernel_with_rows(x: INPUT, ws: WORKSPACE, wts: WEIGHTS, frame: FRAME, out: OUTPUT, mw: WEIGHTS):
        ti.loop_config(block_dim=block)
        for t in range(nblocks * block):
            one_layer(x, ws, wts, frame, out, mw, t)

    def paired(x: INPUT, ws: WORKSPACE, wts: WEIGHTS, frame: FRAME, out: OUTPUT,
               x2: INPUT, ws2: WORKSPACE, wts2: WEIGHTS, frame2: FRAME, out2: OUTPUT):
        ti.loop_config(block_dim=block)
        for t in range(2 * nblocks * block):
            arrays = [ti.simt.block.SharedArray((n,), ti.f32) for n in ti.static(shared)]
            blk = t // block
            if ti.static(room):
                head = ti.simt.block.SharedArray((HEADER_ROOM,), ti.i32)
                if blk < nblocks:   # (a block is all of one layer: the branch is uniform, its barrier safe)
                    copy_header(frame, head, t % block, block)
                    run_layer(x, ws, wts, frame, head, out, *arrays, blk, t % block, 0, wts)
                else:
                    copy_header(frame2, head, t % block, block)
                    run_layer(x2, ws2, wts2, frame2, head, out2, *arrays, blk - nblocks, t % block, 1, wts2)
            elif blk < nblocks:
                run_layer(x, ws, wts, frame, frame, out, *arrays, blk, t % block, 0, wts)
            else:
                run_layer(x2, ws2, wts2, frame2, frame2, out2, *arrays, blk - nblocks, t % block, 1, wts2)

    if rows:
        kernel_with_rows.__name__ = name
        return ti.kernel(kernel_with_rows), None
    kernel.__name__ = name
    paired.__name__ = name + "_paired"
    return ti.kernel(kernel), ti.kernel(paired)


@functools.lru_cache(maxsize=None)
def persistent_kernel(cell, nblocks, chunk, resident, projects, loads, clamp_all, rows=1, zigzag=False, vh=True,
                      streams=False, fold=False, kept=(0, 0)):
    """The persistent kernel of ``cell`` for a grid of ``nblocks`` blocks and batch chunks of ``chunk``;
    ``resident``: each thread's share of the first phase's weights, held in registers for the whole
    sequence (0: they are read from memory at every step; see ``resident_terms``);
    ``projects``: the kernel computes its own input terms and zero initial states first (no
    ``project_inputs`` dispatch before it; see ``project_own_rows``);
    ``loads``: weight loads (quads) a thread issues together; ``clamp_all``: every group of them clamped
    and masked as the last one is (``persistent_loads``); ``rows``: gate rows a thread streams at
    once, each term it reads serving all of them (``persistent_rows``; 1 with resident weights,
    and rows x chunk at most MAX_CHUNK, the reduction buffer's room); ``zigzag``: odd steps stream
    each thread's quads in reverse (``persistent_zigzag``); ``vh``: a GRU's Vh is set (nil, the
    conventional GRU's, it is zero: the second phase then streams Uh alone, over r∘h0); ``streams``: the
    weight quads come in the order the threads read them (``kernels/quads.py``'s ``pack_streams``),
    not in rows (``persistent_layout``); ``fold``: the projected input terms start the
    first slice's sums (``partial_dots``) rather than being read by the gate math after them
    (``persistent_fold``); ``kept``: the opening quads of each thread's run that stay in shared
    memory for the whole sequence, in the first phase and in the GRU's second (``kept_counts``;
    with ``streams`` and no resident weights only, ``rows`` x their sum at most ``kept_room``). The
    counts are exact: they depend on the hidden size, so each layer that keeps quads compiles its
    own kernel, whose products over them are unrolled with nothing masked."""
    assert rows == 1 or (resident == 0 and rows * chunk <= MAX_CHUNK), (rows, resident, chunk)
    kept_a, kept_b = kept
    slot_b = kept_a * rows   # where the second phase's kept quads start in shared memory
    # (computed here: inside the kernel, ``rows`` is the step's rows)
    kept_words = (kept_a + kept_b) * rows * QUAD * BLOCK
    red_words = reduction_words(chunk, rows)
    assert kept == (0, 0) or (streams and resident == 0 and (kept_a + kept_b) * rows <= kept_room(chunk, rows)), \
        (kept, resident)
    gates_a = FIRST_PHASE_GATES[cell]
    half_loads = max(loads // 2, 1)

    @ti.func
    def load_resident(wts: ti.template(), u0, uso, usj, rows_r, units, u_lo, tid, H):
        """This thread's weights of its first-phase row o and split of j, read once (zero past H)."""
        w = ti.Vector([0.0] * max(resident, 1), ti.f32)
        if ti.static(resident > 0):
            n_split = BLOCK // rows_r
            lane = tid % rows_r
            split = tid // rows_r
            i = u_lo + lane % units
            o = (lane // units) * H + i
            jl = (H + n_split - 1) // n_split
            if i < H and split < n_split:
                for k in ti.static(range(resident)):
                    j = split * jl + k
                    if k < jl and j < H:
                        w[k] = w32(wts, u0 + o * uso + j * usj)
        return w

    @ti.func
    def row_starts(vec, B, H, b0):
        """Where row k of the chunk starts in slot ``vec`` of the terms' copy (a quad index; rows past
        B read as B - 1, their sums unused)."""
        start = ti.Vector([0] * chunk, ti.i32)
        for k in ti.static(range(chunk)):
            start[k] = term_row(vec, ti.min(b0 + k, B - 1), H)
        return start

    @ti.func
    def write_h(ws: ti.template(), terms: ti.template(), hn, tn, b, i, H, value):
        """The new h of batch row b, unit i: to the history slot at ``hn`` and to the terms' copy's
        slot at ``tn``."""
        ws[hn + b * H + i] = value
        write_term(terms, tn, b, i, H, value)

    @ti.func
    def group_products(src: ti.template(), acc: ti.template(), wv, vv, tq, x1, x2, group: ti.template(),
                       with2: ti.template()):
        """acc[r·chunk + k] += Σ_u W(row r, u)·src[x1[k] + tq[u]] (+ V's over x2) for a group's loaded
        weights ``wv`` (``vv``: V's), weight quad u of row r at QUAD·(u·rows + r): the terms' quads
        ``tq`` read one load each, every load serving every row of the thread."""
        for k in ti.static(range(chunk)):
            for u in ti.static(range(group)):
                t4 = src[x1[k] + tq[u]]   # the quad's four terms, one load
                t4b = t4
                if ti.static(with2):
                    t4b = src[x2[k] + tq[u]]
                for e in ti.static(range(QUAD)):
                    for r in ti.static(range(rows)):
                        acc[r * chunk + k] += wv[QUAD * (u * rows + r) + e] * t4[e]
                        if ti.static(with2):
                            acc[r * chunk + k] += vv[QUAD * (u * rows + r) + e] * t4b[e]

    @ti.func
    def quad_group(wq: ti.template(), src: ti.template(), acc: ti.template(), w_rows, v_rows, rows_w, x1, x2, q,
                   q_end, H, group: ti.template(), with2: ti.template(), masked: ti.template()):
        """acc[r·chunk + k] += Σ_p W(row r, quad p)·src[x1[k] + p] (+ V(row r, quad p)·src[x2[k] + p])
        over quads p = q .. q+group-1, for the thread's ``rows`` rows (``kernels/quads.py``: W's
        quad p of row r at w_rows[r] + p·rows_w, V's at v_rows[r] + p·H; ``src``: the terms' copy,
        a quad of terms a load). The group's loads are all issued before any is used: the stream
        of U is bound by the loads in flight (an SM's warps wait out each memory round trip
        together), and each load brings four weights; each term quad read serves every row.
        ``masked``: the last group, whose quads may run past this thread's (clamped to q_end - 1,
        their weights zero). Past H, within the last quad, both the weights' and the terms'
        padding are zero. The full groups read no clamped index."""
        wv = ti.Vector([0.0] * (QUAD * group * rows), ti.f32)
        vv = ti.Vector([0.0] * (QUAD * group * rows), ti.f32)
        qc = ti.Vector([0] * group, ti.i32)   # the quads read: q + u, or clamped
        for u in ti.static(range(group)):
            qc[u] = q + u
            if ti.static(masked):
                qc[u] = ti.min(q + u, q_end - 1)
            for r in ti.static(range(rows)):
                w4 = wq[w_rows[r] + qc[u] * rows_w]
                v4 = w4
                if ti.static(with2):
                    v4 = wq[v_rows[r] + qc[u] * H]
                for e in ti.static(range(QUAD)):
                    wv[QUAD * (u * rows + r) + e] = w4[e]
                    if ti.static(with2):
                        vv[QUAD * (u * rows + r) + e] = v4[e]
                if ti.static(masked):
                    if q + u >= q_end:
                        for e in ti.static(range(QUAD)):
                            wv[QUAD * (u * rows + r) + e] = 0.0
                            vv[QUAD * (u * rows + r) + e] = 0.0
        group_products(src, acc, wv, vv, qc, x1, x2, group, with2)

    @ti.func
    def stream_quads(wq: ti.template(), src: ti.template(), acc: ti.template(), w_rows, v_rows, rows_w, x1, x2, q0,
                     q_end, H, group: ti.template(), with2: ti.template(), back):
        """acc[r·chunk + k] += Σ W(row r, j)·src[x1[k] + j] (+ V) over the inputs of quads q0 .. q_end - 1,
        in groups (``quad_group``): whole groups of quads that lie inside H, then one masked group
        for the rest (fewer than a group of whole quads, and the partial quad at H, if any).
        ``back`` (1 on a zigzag kernel's odd steps): the whole groups in reverse order, so that a
        step starts on the weights the step before read last, the ones most likely still in L2."""
        if ti.static(clamp_all):
            n_groups = (ti.max(q_end - q0, 0) + group - 1) // group
            for p in range(n_groups):
                pp = ti.select(back != 0, n_groups - 1 - p, p)
                quad_group(wq, src, acc, w_rows, v_rows, rows_w, x1, x2, q0 + pp * group, q_end, H, group, with2,
                           True)
        else:
            n = ti.max(ti.min(q_end, H // QUAD) - q0, 0)   # whole quads inside H
            n_groups = n // group
            for p in range(n_groups):
                pp = ti.select(back != 0, n_groups - 1 - p, p)
                quad_group(wq, src, acc, w_rows, v_rows, rows_w, x1, x2, q0 + pp * group, q_end, H, group, with2,
                           False)
            rest = q0 + n - n % group
            if rest < q_end:
                quad_group(wq, src, acc, w_rows, v_rows, rows_w, x1, x2, rest, q_end, H, group, with2, True)

    @ti.func
    def stream_part(rows_r, H, kq):
        """Quads of one phase's part of the streams layout (``pack_streams``): every block's runs
        (``kq``: the phase's kept quads a run)."""
        lanes_p, splits, _, padded = stream_shape_ti(rows_r, rows, H, BLOCK, loads, kq)
        return nblocks * padded * rows * lanes_p * splits

    @ti.func
    def kept_slot(shq: ti.template(), slot, tid):
        """Quad ``slot`` of this thread's kept quads in shared memory, where each of its four floats
        lies a block apart (consecutive threads, consecutive words: no bank conflicts)."""
        return ti.Vector([shq[(slot * QUAD + e) * BLOCK + tid] for e in ti.static(range(QUAD))])

    @ti.func
    def copy_kept(wq: ti.template(), shq: ti.template(), rows_r, H, kq: ti.template(), seg, slot0, blk, tid):
        """This thread's ``kq`` kept quads of one phase (the opening quads of its run in the streams
        layout, part at quad ``seg``) into shared memory from slot ``slot0`` on, read once a launch:
        U does not change while it runs, and no other thread reads them."""
        lanes, splits, _, padded = stream_shape_ti(rows_r, rows, H, BLOCK, loads, kq)
        threads = lanes * splits
        if tid < threads:
            own = seg + (blk * padded * rows) * threads + tid
            for qi in ti.static(range(kq)):
                for r in ti.static(range(rows)):
                    w4 = wq[own + (qi * rows + r) * threads]
                    for e in ti.static(range(QUAD)):
                        shq[((slot0 + qi * rows + r) * QUAD + e) * BLOCK + tid] = w4[e]

    @ti.func
    def kept_products(shq: ti.template(), src: ti.template(), acc: ti.template(), x1, slot0, q0, hq,
                      kq: ti.template(), tid):
        """acc[r·chunk + k] += Σ W(row r, quad q0 + qi)·src[x1[k] + q0 + qi] over the thread's ``kq``
        kept quads (shared memory from slot ``slot0``), unrolled, so that every term load is issued
        at once: they are the phase's only memory round trip outside its groups."""
        for qi in ti.static(range(kq)):
            tq = ti.min(q0 + qi, hq - 1)   # (run quads past the row are zeros: their terms in bounds)
            for k in ti.static(range(chunk)):
                t4 = src[x1[k] + tq]
                for r in ti.static(range(rows)):
                    w4 = kept_slot(shq, slot0 + qi * rows + r, tid)
                    for e in ti.static(range(QUAD)):
                        acc[r * chunk + k] += w4[e] * t4[e]

    @ti.func
    def stream_runs(wq: ti.template(), src: ti.template(), acc: ti.template(), at, vat, threads, x1, x2, q0, hq,
                    padded, group: ti.template(), with2: ti.template(), back):
        """acc[r·chunk + k] += Σ W(row r, j)·src[x1[k] + j] (+ V) over a thread's run of quads in the
        streams layout (``kernels/quads.py``): its quad qi of row r at at + (qi·rows + r)·threads (V's
        from vat), ``padded`` of them from input quad q0 on, in groups of ``group`` loads issued
        together. Quads past the run, and rows past the block's or past H, are zeros in the layout:
        nothing is masked; their terms are read at the last quad (hq - 1), in bounds. ``back``: the
        groups in reverse (``stream_quads``)."""
        n_groups = padded // group
        for p in range(n_groups):
            pp = ti.select(back != 0, n_groups - 1 - p, p)
            wv = ti.Vector([0.0] * (QUAD * group * rows), ti.f32)
            vv = ti.Vector([0.0] * (QUAD * group * rows), ti.f32)
            tq = ti.Vector([0] * group, ti.i32)   # the terms' quads, the last in bounds past the row
            for u in ti.static(range(group)):
                tq[u] = ti.min(q0 + pp * group + u, hq - 1)
                for r in ti.static(range(rows)):
                    w4 = wq[at + ((pp * group + u) * rows + r) * threads]
                    for e in ti.static(range(QUAD)):
                        wv[QUAD * (u * rows + r) + e] = w4[e]
                    if ti.static(with2):
                        v4 = wq[vat + ((pp * group + u) * rows + r) * threads]
                        for e in ti.static(range(QUAD)):
                            vv[QUAD * (u * rows + r) + e] = v4[e]
            group_products(src, acc, wv, vv, tq, x1, x2, group, with2)

    @ti.func
    def partial_dots(wq: ti.template(), src: ti.template(), red: ti.template(), rows_w, row0, rows_r, units, u_lo,
                     tid, H, x1, v_quads, x2, with2: ti.template(), held: ti.template(), wreg, back, blk, seg, vseg,
                     ws: ti.template(), xw0, b0, live, shq: ti.template(), kq: ti.template(), slot0):
        """red[(tid·rows + r)·chunk + k] = this thread's slice of Σ_j W(o, j)·h1_k[j] (+ Vh(i, j)·h2_k[j]
        with ``with2``) for its rows r, o = row0 + g·H + i, the terms h1_k, h2_k of batch row k read
        four a load from the terms' copy ``src`` (rows at quads x1[k], x2[k]), the weights from the quads
        (``rows_w``: rows of U; Vh's quads from ``v_quads`` on), or with ``held`` (the first phase
        of a kernel with resident weights) from ``wreg``. The block's rows_r rows are dealt
        to ceil(rows_r / rows) lanes, ``rows`` each (block row lane + r·lanes), and the inputs split
        across the BLOCK // lanes threads of a lane. A thread takes a run of whole quads; ``loads``
        of them are issued together (``quad_group``), so their latencies overlap, and each serves
        every batch row of the chunk (and a term every row of the thread). With ``streams`` the
        weights come from the phase's part of the streams layout, which starts at quad ``seg``
        (Vh's at ``vseg``), and ``rows_w``, ``row0`` and ``v_quads`` are not read. With ``fold`` the
        first slice's sums (split 0) start from the rows' projected input terms, ws[xw0 + b·rows_w + o]
        for the chunk's batch rows b = b0 + k below ``live``: their loads are issued before the weights'
        and have the whole stream to arrive, where the gate math would wait on them after the
        reduction. With ``kq`` kept quads, the opening quads of each thread's run come from shared
        memory (``shq`` from slot ``slot0``: ``kept_counts``) and the stream starts past them."""
        lanes = (rows_r + rows - 1) // rows
        lane = tid % lanes
        split = tid // lanes
        n_split = BLOCK // lanes
        g = lane // units
        iu = lane % units
        i = u_lo + iu
        o = row0 + g * H + i
        acc = ti.Vector([0.0] * (chunk * rows), ti.f32)
        if ti.static(fold):
            if split == 0:
                for r in ti.static(range(rows)):
                    rr = lane + r * lanes
                    ir = u_lo + rr % units
                    if rr < rows_r and ir < H:
                        for k in ti.static(range(chunk)):
                            if b0 + k < live:
                                acc[r * chunk + k] = ws[xw0 + (b0 + k) * rows_w + row0 + (rr // units) * H + ir]
        if ti.static(held):   # the first phase, weights in registers (rows == 1)
            if i < H and split < n_split:
                jl = (H + n_split - 1) // n_split   # the thread's share of the inputs
                j0 = split * jl
                for kk in ti.static(range(resident)):
                    if kk < jl and j0 + kk < H:
                        for k in ti.static(range(chunk)):
                            acc[k] += wreg[kk] * src[x1[k] + (j0 + kk) // QUAD][(j0 + kk) % QUAD]
        elif ti.static(streams):
            _, _, run, padded = stream_shape_ti(rows_r, rows, H, BLOCK, loads, kq)
            threads = lanes * n_split
            if tid < threads:
                hq = (H + QUAD - 1) // QUAD
                if ti.static(kq > 0):
                    kept_products(shq, src, acc, x1, slot0, split * run, hq, kq, tid)
                # the thread's first streamed quad in the phase's part, past its kept ones
                own = (blk * padded * rows + kq * rows) * threads + tid
                stream_runs(wq, src, acc, seg + own, vseg + own, threads, x1, x2, split * run + kq,
                            hq, padded - kq, ti.static(half_loads if with2 else loads), with2, back)
        elif i < H and split < n_split:
            # the thread's rows, a row past the block's or past H read as its first (and not summed)
            w_rows = ti.Vector([o] * rows, ti.i32)
            v_rows = ti.Vector([v_quads + i] * rows, ti.i32)
            for r in ti.static(range(1, rows)):
                rr = lane + r * lanes
                ir = u_lo + rr % units
                if rr < rows_r and ir < H:
                    w_rows[r] = row0 + (rr // units) * H + ir
                    v_rows[r] = v_quads + ir
            hq = (H + QUAD - 1) // QUAD
            ql = (hq + n_split - 1) // n_split
            q0 = split * ql
            q_end = ti.min(hq, q0 + ql)   # this thread's quads: q0 .. q_end - 1
            if ti.static(with2):   # two streams: half the group from each, as many loads in flight
                stream_quads(wq, src, acc, w_rows, v_rows, rows_w, x1, x2, q0, q_end, H, half_loads, True, back)
            else:
                stream_quads(wq, src, acc, w_rows, v_rows, rows_w, x1, x2, q0, q_end, H, loads, False, back)
        for r in ti.static(range(rows)):
            for k in ti.static(range(chunk)):
                red[(tid * rows + r) * chunk + k] = acc[r * chunk + k]

    @ti.func
    def reduced(red: ti.template(), rows_r, units, g, iu, k):
        """The full dot product of gate g, unit iu, batch k of the chunk: the sum over slices
        (``partial_dots``: block row g·units + iu is row r of lane l)."""
        lanes = (rows_r + rows - 1) // rows
        rr = g * units + iu
        total = 0.0
        for split in range(BLOCK // lanes):
            total += red[((split * lanes + rr % lanes) * rows + rr // lanes) * chunk + k]
        return total

    @ti.func
    def projected(ws: ti.template(), xw):
        """The projected input term at ws[xw], or 0 where ``fold`` has added it to the sums."""
        v = 0.0
        if ti.static(not fold):
            v = ws[xw]
        return v

    @ti.func
    def single_h(head: ti.template(), frame: ti.template(), i, pre):
        """single_gate_output, its usual neuron's branch taken on ``head`` (the header's copy in shared
        memory); only other neurons read the frame (their parameters are in its tail)."""
        h = 0.0
        if head[F_STANDARD] != 0:
            h = standard_single_gate_output(pre)
        else:
            h = single_gate_output(frame, i, pre)
        return h

    @ti.func
    def gru_z_r(head: ti.template(), frame: ti.template(), i, pre_z, pre_r):
        """gru_gates, as ``single_h``."""
        z = 0.0
        r = 0.0
        if head[F_STANDARD] != 0:
            z, r = standard_gru_gates(pre_z, pre_r)
        else:
            z, r = gru_gates(frame, i, pre_z, pre_r)
        return z, r

    @ti.func
    def gru_h(head: ti.template(), frame: ti.template(), i, pre_h, z, h0):
        """gru_output, as ``single_h``."""
        h = 0.0
        if head[F_STANDARD] != 0:
            h = standard_gru_output(head, pre_h, z, h0)
        else:
            h = gru_output(frame, i, pre_h, z, h0)
        return h

    @ti.func
    def cell_state(head: ti.template(), frame: ti.template(), i, pre_i, pre_f, pre_c, c0):
        """lstm_cell_state, as ``single_h``."""
        c = 0.0
        if head[F_STANDARD] != 0:
            c = standard_lstm_cell_state(pre_i, pre_f, pre_c, c0)
        else:
            c = lstm_cell_state(frame, i, pre_i, pre_f, pre_c, c0)
        return c

    @ti.func
    def lstm_h(head: ti.template(), frame: ti.template(), i, pre_o, c1):
        """lstm_output, as ``single_h``."""
        h = 0.0
        if head[F_STANDARD] != 0:
            h = standard_lstm_output(pre_o, c1)
        else:
            h = lstm_output(frame, i, pre_o, c1)
        return h

    def kernel(x: INPUT, ws: WORKSPACE, wts: WEIGHTS, wq: QUAD_WEIGHTS, terms: QUAD_WEIGHTS, frame: FRAME,
               out: OUTPUT):
        ti.loop_config(block_dim=BLOCK)
        for t in range(nblocks * BLOCK):
            # the frame is read inside the loop: a statement before it would be a separate
            # serial task on the device, a second launch per call (see grid.py). The sizes and
            # offsets are read again every step rather than kept live across the time loop:
            # held in registers for the whole kernel they cost the GRU 1.3-1.6x at batch 2-4.
            blk = t // BLOCK
            tid = t % BLOCK
            smem = ti.simt.block.SharedArray((red_words,), ti.f32)   # the reduction buffer
            # the frame's header, read from shared memory at every step and in every gate's math
            # (``copy_header``). H200, µs a step, the kernel before / with the copy (separate
            # processes, 2 rounds each): GRU 1536 b1 t187 13.3, 13.6 / 12.8, 12.8, b4 16.8, 16.7 /
            # 16.0, 16.0, GRU 2048 b1 17.1, 16.9 / 16.0, 16.0, LSTM 1536 b1 t50 13.4, 13.4 / 12.9, 12.8
            hd = ti.simt.block.SharedArray((HEADER_ROOM,), ti.i32)
            copy_header(frame, hd, tid, BLOCK)
            # the kept quads (``kept_counts``; one word, unused, where the kernel keeps none)
            shq = ti.simt.block.SharedArray((kept_words or 1,), ti.f32)
            if ti.static(kept != (0, 0)):
                _, _, Hk, _ = run_sizes(hd)
                unitsk = (Hk + nblocks - 1) // nblocks
                copy_kept(wq, shq, gates_a * unitsk, Hk, kept_a, 0, 0, blk, tid)
                if ti.static(kept_b > 0):
                    copy_kept(wq, shq, unitsk, Hk, kept_b, stream_part(gates_a * unitsk, Hk, kept_a), slot_b, blk,
                              tid)
            barrier = 0
            if ti.static(projects):
                project_own_rows(x, ws, wts, frame, nblocks, blk, tid)
                ti.simt.block.sync()   # the block's units' zero initial states are written
            copy_initial_terms(ws, terms, frame, nblocks, blk, tid)
            barrier += nblocks
            grid_barrier(frame, tid, barrier)
            _, _, H0, _ = run_sizes(frame)
            units0 = (H0 + nblocks - 1) // nblocks
            r0, rso, rsj = recurrent_weights(frame)
            wreg = load_resident(wts, r0, rso, rsj, gates_a * units0, units0, blk * units0, tid, H0)
            for s in range(frame[F_STEPS]):
                _, B, H, slot = run_sizes(hd)
                v0, _, _ = memory_weights(hd)
                rows_w = hd[F_GATES] * H   # U's rows: the stride of its quads and of the projected terms
                xw0 = hd[F_WS_XW] + s * B * rows_w   # the step's projected input terms
                v_quads = (H + QUAD - 1) // QUAD * rows_w   # where Vh's quads start (GRU)
                peep = hd[F_PEEP]
                units = (H + nblocks - 1) // nblocks
                u_lo = blk * units
                rows = frame[F_ROWS + s]
                back = 0
                if ti.static(zigzag):
                    back = s % 2
                hp = hd[F_WS_H] + s * slot
                hn = hp + slot
                # the step's slots in the terms' copy: h's, then the GRU's r∘h0 and z∘h0 (of every unit,
                # for the second phase)
                tslot = term_slot_ti(B, H)
                thp = s * tslot
                trh = (hd[F_STEPS] + 1 + 2 * s) * tslot
                for bc in range((B + chunk - 1) // chunk):
                    b0 = bc * chunk
                    # (the sums' last readers met at the end of the pass before, or a grid barrier did)
                    x1 = row_starts(thp, B, H, b0)
                    partial_dots(wq, terms, smem, rows_w, 0, gates_a * units, units, u_lo, tid, H, x1, 0, x1,
                                 False, resident > 0, wreg, back, blk, 0, 0, ws, xw0, b0, rows, shq, kept_a, 0)
                    ti.simt.block.sync()
                    for q_ in range(rounds(units * chunk, tid)):
                        iu, k, i, b = unit_pair(tid, q_, chunk, u_lo, b0)
                        if i < H and b < B:
                            if ti.static(cell == CELL_LSTM):
                                cp = hd[F_WS_C] + s * slot + b * H + i
                                cn = cp + slot
                                hv = 0.0   # the unit's new h
                                if b < rows:
                                    xw = xw0 + b * rows_w + i
                                    a_i = projected(ws, xw) + reduced(smem, 4 * units, units, 0, iu, k)
                                    a_f = projected(ws, xw + H) + reduced(smem, 4 * units, units, 1, iu, k)
                                    a_c = projected(ws, xw + 2 * H) + reduced(smem, 4 * units, units, 2, iu, k)
                                    a_o = projected(ws, xw + 3 * H) + reduced(smem, 4 * units, units, 3, iu, k)
                                    c_old = ws[cp]
                                    if peep == PEEP_DIAGONAL:
                                        a_i += w32(wts, v0 + i) * c_old
                                        a_f += w32(wts, v0 + H + i) * c_old
                                        a_c += w32(wts, v0 + 2 * H + i) * c_old
                                    c_new = cell_state(hd, frame, i, a_i, a_f, a_c, c_old)
                                    if peep == PEEP_DIAGONAL:
                                        a_o += w32(wts, v0 + 3 * H + i) * c_new
                                    ws[cn] = c_new
                                    hv = lstm_h(hd, frame, i, a_o, c_new)
                                    store_output(out, hd, s, b, i, hv)
                                else:   # a row absent at this step carries its state forward
                                    ws[cn] = ws[cp]
                                    hv = ws[hp + b * H + i]
                                write_h(ws, terms, hn, thp + tslot, b, i, H, hv)
                            elif ti.static(cell == CELL_SINGLE_GATE):
                                hv = 0.0
                                if b < rows:
                                    xw = xw0 + b * rows_w + i
                                    pre = projected(ws, xw) + reduced(smem, units, units, 0, iu, k)
                                    hv = single_h(hd, frame, i, pre)
                                    store_output(out, hd, s, b, i, hv)
                                else:
                                    hv = ws[hp + b * H + i]
                                write_h(ws, terms, hn, thp + tslot, b, i, H, hv)
                            else:  # GRU, first phase: z and r
                                h0 = ws[hp + b * H + i]
                                z = 0.0
                                rg = 0.0
                                if b < rows:
                                    xw = xw0 + b * rows_w + i
                                    z, rg = gru_z_r(hd, frame, i,
                                                    projected(ws, xw) + reduced(smem, 2 * units, units, 0, iu, k),
                                                    projected(ws, xw + H) + reduced(smem, 2 * units, units, 1, iu, k))
                                ws[hd[F_WS_SCRATCH] + b * H + i] = z
                                write_term(terms, trh, b, i, H, rg * h0)   # the second phase's terms
                                if ti.static(vh):
                                    write_term(terms, trh + tslot, b, i, H, z * h0)
                    ti.simt.block.sync()
                if ti.static(cell == CELL_GRU):
                    # second phase: Uh·(r∘h0) + Vh·(z∘h0) needs every unit's r and z
                    barrier += nblocks
                    grid_barrier(frame, tid, barrier)
                    for bc in range((B + chunk - 1) // chunk):
                        b0 = bc * chunk
                        x1 = row_starts(trh, B, H, b0)
                        x2 = row_starts(trh + tslot, B, H, b0)
                        seg = stream_part(gates_a * units, H, kept_a)   # (streams: Uh's part, then Vh's)
                        partial_dots(wq, terms, smem, rows_w, 2 * H, units, units, u_lo, tid, H, x1, v_quads, x2,
                                     vh, False, wreg, back, blk, seg, seg + stream_part(units, H, kept_b), ws,
                                     xw0, b0, rows, shq, kept_b, slot_b)
                        ti.simt.block.sync()
                        for q_ in range(rounds(units * chunk, tid)):
                            iu, k, i, b = unit_pair(tid, q_, chunk, u_lo, b0)
                            if i < H and b < B:
                                hv = ws[hp + b * H + i]   # h0, carried forward where the row is absent
                                if b < rows:
                                    xw = xw0 + b * rows_w + 2 * H + i
                                    hv = gru_h(hd, frame, i, projected(ws, xw) + reduced(smem, units, units, 0, iu, k),
                                               ws[hd[F_WS_SCRATCH] + b * H + i], hv)
                                    store_output(out, hd, s, b, i, hv)
                                write_h(ws, terms, hn, thp + tslot, b, i, H, hv)
                        ti.simt.block.sync()
                barrier += nblocks
                grid_barrier(frame, tid, barrier)
            leave_grid(frame, tid, nblocks)

    # the name profilers show: lstm_persistent264, lstm_persistent264x2 with two rows a thread, a z
    # appended where odd steps stream in reverse, an s where the weights lie in streams (``persistent_layout``),
    # an f where the projected terms start the sums (``persistent_fold``), k and the counts of each phase
    # where quads are kept in shared memory (``kept_counts``)
    kernel.__name__ = (f"{('single_gate', 'gru', 'lstm')[cell]}_persistent{nblocks}" + (f"x{rows}" if rows > 1 else "")
                       + ("z" if zigzag else "") + ("s" if streams else "") + ("f" if fold else "")
                       + (f"k{kept_a}_{kept_b}" if kept != (0, 0) else ""))
    return ti.kernel(kernel)


def persistent_chunk(batch):
    """Batch rows a pass of the persistent kernel takes: the batch rounded up to a power of two, at
    most MAX_CHUNK (the reduction buffer's room). Each weight load serves a whole chunk, so the
    chunk never shrinks: re-reading the weights per row cost 4x at GRU 2560, batch 4.

    Its terms are read where they are, four a load from the kernel's own copy of them
    (``term_slot``). Until the twentieth session a chunk that fit 24 or 32 KiB of shared memory was
    staged there first, one coalesced sweep a pass; reading in place was faster. H200, same
    process, median of 2 rounds, µs a step, staged / in place: GRU (Vh nil) 2048 b4 t187 31.8 /
    26.2, b2 24.3 / 19.3, b1 19.8 / 17.3, GRU 2560 b2 39.3 / 33.7, GRU 2816 b1 40.7 / 36.9, GRU
    1536 b4 22.8 / 19.9, b1 15.5 / 14.7, LSTM 1536 b4 t50 24.1 / 23.5, LSTM 2048 b1 t25 24.7 /
    24.6, b2 28.1 / 27.7, b4 36.6 / 35.1 (eight loads a group in place, ``persistent_loads``);
    and in place, one float / four a load: GRU 2560 b4 t187 46.3 / 44.5, GRU 2816 b4 52.3 / 50.3.
    The suite rerun after it (twenty-first session) confirmed it; the stage and the one-float
    reads were then removed."""
    return min(MAX_CHUNK, 1 << (max(batch, 1) - 1).bit_length())


# Register-resident weights pay only for short shares and small chunks. H100, CUDA, same machine,
# µs a step with / without: shares of 6-16 gained (LSTM 192 b4 5.8 / 6.3, LSTM 256 b4 7.6 / 8.1,
# GRU 512 b1 10.9 / 12.6); a share of 32 lost (LSTM 512 b4 22.5 / 15.6, b16 60.9 / 27.4, b64
# 196 / 99.5: the fully unrolled products over a chunk of 8 rows); 64 lost (GRU 1024 b1 18.2 / 16.2).
MAX_RESIDENT = 16   # weights per thread kept in registers
MAX_RESIDENT_CHUNK = 4


def resident_terms(cell_kind, hidden, nblocks, chunk):
    """How many first-phase weights each thread holds in registers for the whole sequence: its
    share of the dot product, ceil(H / splits), when that is at most MAX_RESIDENT and the batch
    chunk at most MAX_RESIDENT_CHUNK, else 0 (the weights are read from memory every step). The
    share is a compile-time length, so each (hidden, grid) with resident weights compiles its own
    kernel. ``MPSRNN_RESIDENT_WEIGHTS=off`` turns them off, for A/B benchmarks."""
    if not switch("MPSRNN_RESIDENT_WEIGHTS", True) or chunk > MAX_RESIDENT_CHUNK:
        return 0
    n_split = BLOCK // first_phase_rows(cell_kind, hidden, nblocks)
    share = -(-hidden // n_split)
    return share if share <= MAX_RESIDENT else 0


def first_phase_rows(cell_kind, hidden, nblocks):
    """Gate rows a block owns in the first phase: its units (ceil(H / nblocks)) times their gates."""
    return FIRST_PHASE_GATES[cell_kind] * -(-hidden // nblocks)


def persistent_fits(cell_kind, peep, hidden, nblocks):
    """Whether the persistent kernel handles this layer on a grid of ``nblocks``."""
    from .layout import PEEP_DENSE
    return first_phase_rows(cell_kind, hidden, nblocks) <= BLOCK and not (cell_kind == CELL_LSTM and peep == PEEP_DENSE)


def persistent_loads(chunk, from_hbm=False):
    """(weight loads, four weights each, a thread of the persistent kernel issues together, whether
    every group is clamped), from ``MPSRNN_PERSISTENT_LOADS`` (2, 4, 8 or 16, ``c`` appended:
    clamped, in the rows layout only: streams have no partial group) for A/B benchmarks, else two
    on a chunk of 4 batch rows, and on a chunk of 8 whose weights stay in L2 (not ``from_hbm``: ``quads_outgrow_l2``); four on other chunks.

    A group's registers are its weights and the terms its products read, chunk x group quads of
    them: at a chunk of 4 with four loads (and two rows a thread) the kernel sits at Taichi's cap of
    128 registers a thread, and what holds more in flight spills (``bench/analysis.md``). H200,
    same process, µs a step, the default before (four; eight for an LSTM's two rows) / two: at a
    chunk of 4, GRU 2560 b4 t187 44.2 / 41.4 and 43.0 / 40.7, GRU 2816 b4 49.1 / 47.3 and 48.9 /
    46.7, GRU 2048 b4 26.2 / 25.4 and 25.9 / 25.4, GRU 1536 b4 20.2 / 19.1 and 19.5 / 19.0, LSTM
    1536 b4 t50 24.5 / 24.2 and 23.4 / 22.7, LSTM 2048 b4 t25 (two rows) 37.1 / 33.7, 36.1 / 31.3
    and 36.1 / 31.4 (four: 39.4, 38.5, 40.5); at a chunk of 2 two lose, GRU 2560 b2 33.7 / 39.0 and
    33.2 / 38.7, LSTM 2048 b2 25.0 / 28.7 and 27.6 / 32.1; at 1, even (GRU 2048 b1 17.6 / 17.5 and
    17.8 / 18.2). At a chunk of 8 (batch 5-8), four / two: from L2, GRU 2048 b8 t100 43.2 / 40.8
    and 43.2 / 41.2, GRU 1536 b6 30.7 / 28.7, LSTM 1536 b8 t50 37.0 / 35.9, GRU 1024 b8 15.2 /
    15.0, LSTM 1024 b8 16.9 / 16.8; from HBM, LSTM 2048 b8 t50 52.8 / 54.6, GRU 2560 b8 72.7 / 72.7
    (a stream from HBM wants more loads in flight). Before quad terms, eight lost or tied
    everywhere but an LSTM's two rows."""
    forced = knob("MPSRNN_PERSISTENT_LOADS", ("2", "4", "8", "16", "2c", "4c", "8c", "16c"))
    if forced:
        return int(forced.rstrip("c")), forced.endswith("c")
    return (2 if chunk == 4 or (chunk == 8 and not from_hbm) else 4), False


def persistent_rows(chunk, resident):
    """Gate rows a thread of the persistent kernel streams at once (``partial_dots``): two on a
    chunk of 4 batch rows, else one; ``MPSRNN_PERSISTENT_ROWS`` (1 or 2) decides instead, for A/B
    benchmarks. Two only where they fit (no resident weights, 2 x chunk at most MAX_CHUNK).

    Two rows halve the terms read (L1 loads) per multiply-add, and give each thread twice the weight
    loads over half the inputs. H200, same process, µs a step, one / two rows: from HBM at batch 4,
    GRU 2816 (Vh nil) 78.5 / 71.7 and 86.6 / 75.3, GRU 2560 68.3 / 63.6 and 69.1 / 62.9 (and,
    with two loads a group, GRU 2560 b4 43.7 / 41.5, LSTM 2048 b4 t50 35.0 / 30.1, GRU 2816 b4 50.5
    / 47.9). From L2 two rows gained nothing while a group took four loads (GRU 2048 b4 47.5 / 47.6,
    GRU 1536 b4 27.9 / 29.5, LSTM 1536 b4 30.6 / 30.1), so until the twenty-third session they were
    the rule from HBM only; with two loads (``persistent_loads``) they gain from L2 too, 3 rounds
    each: LSTM 1536 b4 t50 22.9 / 20.6 and 22.8 / 20.2, LSTM 1536 b3 22.8 / 20.3, GRU 1536 b4 t187
    19.1 / 18.3, t750 18.1 / 17.5, GRU 2048 b3 22.4 / 22.2; GRU 2048 b4 even (24.3 / 24.5 and 24.6 /
    25.0). At a chunk of 2 they lose (GRU 2816 b2 37.3 / 40.6, LSTM 2048 b2 23.1 / 25.2)."""
    rows = one_or_two("MPSRNN_PERSISTENT_ROWS") or (2 if chunk == 4 else 1)
    return rows if resident == 0 and rows * chunk <= MAX_CHUNK else 1


def persistent_layout():
    """How the persistent kernel's weight quads are laid out, from ``MPSRNN_PERSISTENT_LAYOUT``:
    ``rows`` (``kernels/quads.py``'s quads of each row, rows side by side) or ``streams`` (the
    order each block's threads read them: ``pack_streams``); streams where unset.

    In streams every load instruction of a warp reads 512 contiguous bytes; in rows, where a block
    owns few units (GRU 2816: 11 on 264 blocks), a warp's loads fall in two or three runs of ~176.
    H200, same process, 2 rounds, median µs a step, rows / streams: GRU 2560 b4 t187 40.6 / 35.6,
    GRU 1536 b4 18.1 / 16.6, b1 14.1 / 13.3, LSTM 1536 b4 t50 20.1 / 19.4, GRU 2048 b2 19.0 / 18.7,
    GRU 2816 b1 36.7 / 36.4, b2 37.2 / 37.1, LSTM 2048 b1 t25 23.7 / 23.5, LSTM 1536 b1 14.0 / 14.2.
    (The stream alone: ``bench/probes/stream_layout.py``.)"""
    return knob("MPSRNN_PERSISTENT_LAYOUT", ("rows", "streams")) or "streams"


def kept_counts(cell_kind, hidden, nblocks, rows, loads, room, vh):
    """(first phase's, GRU second phase's) quads a thread the persistent kernel keeps in shared
    memory, within ``room`` quads a thread (``persistent_kept``): of the splits of the room between
    the phases, the one that leaves a step the fewest groups of loads to stream, and of those the
    one that keeps the fewest quads (each is a shared-memory load a step, and registers); the
    second phase keeps none with Vh (its two streams share one run shape). Each phase keeps what
    ``kept_quads`` picks within its share of the room. Taking the room for the first phase first
    was not the same: GRU 2560 b1 with room for 7 would keep 6 quads there (a partial group of 2
    and a whole group) where 2 in each phase also take two groups off."""
    units = -(-hidden // nblocks)
    run_a = stream_shape(FIRST_PHASE_GATES[cell_kind] * units, rows, hidden, BLOCK, loads)[2]
    run_b = stream_shape(units, rows, hidden, BLOCK, loads)[2] if cell_kind == CELL_GRU and not vh else 0

    def groups(run, kept):   # groups of loads a thread streams a step past its kept quads
        return -(-(run - kept) // loads)

    best = None
    for share in range(room, -1, -1):   # (on a tie, the first phase keeps more)
        first = kept_quads(run_a, rows, loads, share)
        second = kept_quads(run_b, rows, loads, room - first * rows) if run_b else 0
        cost = (groups(run_a, first) + groups(run_b, second), first + second)
        if best is None or cost < best[0]:
            best = cost, (first, second)
    return best[1]


KEPT_CHUNKS = {CELL_GRU: (1, 2, 4, 8), CELL_LSTM: (1,), CELL_SINGLE_GATE: (1, 2)}   # chunks that keep quads by default
KEPT_ROOM_PAST_ONE = 5   # the most quads a thread keeps by default on chunks past 1 (more cost registers)


def persistent_kept(cell_kind, resident, streams, chunk, rows):
    """Room, in quads a thread, for the persistent kernel of a ``cell_kind`` layer to keep weight
    quads in shared memory for the whole sequence (``kept_counts`` picks which), where the weights
    lie in streams and none are resident in registers: on a chunk of 1 batch row ``kept_room``,
    what 32 KiB leave past the reduction buffer (for ``chunk`` batch rows and ``rows`` gate rows a
    thread) and the header (7); on the larger chunks of KEPT_CHUNKS (all the GRU's, the single
    gate's 2) at most KEPT_ROOM_PAST_ONE (5); none on the LSTM's chunks past 1.
    ``MPSRNN_PERSISTENT_KEPT`` (on: ``kept_room`` at any chunk, off, or a room of 1-7 quads, at most
    ``kept_room``) decides instead, for A/B benchmarks.

    A thread's run is streamed in groups of loads issued together, padded to whole groups, and the
    stream is what bounds the step at large hidden sizes. Keeping the run's partial group (or a
    whole one) on chip takes a group off every step: GRU 2560 b1 14 → 13 groups in the first phase
    and 7 → 6 in the second, GRU 1536 b1 5 → 4 and 3 → 2, LSTM 2048 b1 16 → 15.

    H200, same process, 2 rounds, µs a step, without / with (the kept counts in brackets: first
    phase, GRU second phase). Room for 5, before the reduction buffer was sized to the chunk: GRU
    2560 b1 t187 (2, 2) 29.81 / 27.70, b2 31.79 / 29.65, GRU 2816 b2 (4, 0) 36.41 / 35.80, LSTM
    2048 b1 t25 (4, 0) 22.87 / 21.54. Twenty-seventh session, without / room for 5 / room for 7:
    GRU 2816 b1 t187 36.49 / 35.13 (0, 3) / 33.93 (4, 3), b2 36.98 / 35.31 (0, 3) / 40.65 (4, 3);
    LSTM 1536 b1 t50 12.97 / 13.55 (3, 0; 12.52 and 14.58) / 12.92 (7, 0), b2 16.03 / 16.44 / 16.41;
    GRU 1536 b1 t187 (3, 2) 12.52 / 11.67 / 11.57, b2 13.44 / 13.26 / 13.24; GRU 2048 b2 (4, 0)
    18.45 / 17.78 / 17.63; LSTM 2048 b2 (4, 0) 26.41 / 27.04 / 27.67. So a chunk of 2 takes 7
    quads badly (GRU 2816 b2 +10%), and the LSTM loses there at any count. Chunks of 4 (two rows a
    thread, room for 5), without / with: GRU 2816 b4 t187 (1, 1) 41.78 / 40.45, GRU 2560 b4 (0, 1)
    35.12 / 34.12 and 34.31, LSTM 2048 b4 t25 (2, 0) 30.92 / 34.06 and 32.63, LSTM 1536 b4 t50
    (1, 0) 18.57 / 18.48. Chunks of 8 (room for 5): GRU 2560 b8 t100 (2, 2) 68.20 / 64.01, GRU 2816
    b8 (0, 3) 78.16 / 75.05, GRU 2048 b8 (4, 0) 39.21 / 38.81, GRU 1536 b8 (5, 0) 26.74 / 26.78;
    LSTM 2048 b8 t50 (4, 0) 48.87 / 48.55, even, so the LSTM keeps none there either.

    Before the counts were compiled in, one kernel for every hidden size unrolled the most a phase
    can keep and masked the rest: at a chunk of 1 it gained as much (GRU 2560 b1 30.03 / 28.20,
    30.26 / 28.12; GRU 2816 b1 36.63 / 35.40; GRU 2048 b1 16.41 / 16.06; GRU 1536 b1 t1500 11.56 /
    11.38; LSTM 2048 b1 23.80 / 22.53; LSTM 1536 b1 t50 13.49 / 12.85, 12.88 / 12.96), but it lost
    at 2 (GRU 2816 b2 36.67 / 42.23, GRU 2560 b2 32.50 / 35.53, GRU 2048 b2 18.08 / 19.62, LSTM 1536
    b2 15.48 / 16.02; ``ptxas``, GRU 2816: 111 → 128 registers a thread and spills, where a chunk
    of 1 went 96 → 126), at 4 (GRU 2816 b4 41.85 / 44.35, LSTM 2048 b4 t25 30.25 / 33.06) and at 8
    (GRU 1536 b8 t100 25.85 / 27.58). With the masked kernel, loading the kept quads' terms before
    the stream changed nothing (GRU 2560 b1 28.18, LSTM 2048 b1 22.41), nor did taking their
    products after it (GRU 2560 b1 28.93 against 28.73)."""
    forced = knob("MPSRNN_PERSISTENT_KEPT", ("on", "off") + tuple(str(n) for n in range(1, 8)))
    wanted = forced != "off" if forced else chunk in KEPT_CHUNKS[cell_kind]
    room = kept_room(chunk, rows)
    if forced and forced.isdigit():
        room = min(int(forced), room)
    elif not forced and chunk > 1:
        room = min(KEPT_ROOM_PAST_ONE, room)
    return room if wanted and streams and resident == 0 else 0


def persistent_fold(chunk):
    """Whether the persistent kernel's first slice of each dot product starts from the projected
    input term (``partial_dots``' ``fold``), rather than the gate math reading it after the
    reduction: on a chunk of 1 or 2 batch rows. ``MPSRNN_PERSISTENT_FOLD`` (on or off) decides
    instead, for A/B benchmarks.

    The gate math's loads from memory come after the block's reduction, on the step's chain of
    latencies: once the header was read from shared memory, those were the projected terms and h0
    (and the GRU's z), issued together, each an L2 round trip. H200, same process, 2 rounds, µs a
    step, the header's copy alone / with fold: GRU 1536 b1 t187 12.78 / 12.22, b2 13.82 / 13.37,
    GRU 2816 b1 35.94 / 36.09; at a chunk of 4, where split 0's threads load chunk x rows terms
    more, GRU 2048 b4 21.46 / 21.68, GRU 2560 b4 35.23 / 35.35, GRU 2816 b4 41.94 / 42.08. Keeping
    h0, z and the LSTM's c in shared memory as well (the gate math then reading nothing from
    memory) added nothing: GRU 1536 b1 12.22 / 12.20, GRU 2816 b4 42.08 / 43.10."""
    forced = knob("MPSRNN_PERSISTENT_FOLD", ("on", "off"))
    return forced == "on" if forced else chunk <= 2


def persistent_zigzag():
    """Whether odd steps stream each thread's weights in reverse (``stream_quads``), from
    ``MPSRNN_PERSISTENT_ZIGZAG`` (on or off) for A/B benchmarks, else on.

    A cyclic sweep over weights that outgrow L2 a little evicts every line before its next use
    (ncu, H200, LSTM 2048 b1: an L2 hit rate of 1.5% on its 64 MiB of quads); sweeping back and
    forth starts each step on the lines the last one left there. H200, same process, µs a step,
    forward only / zigzag: LSTM 2048 b1 31.3 / 25.1, b4 56.0 / 50.1, GRU 2048 b1 35.7 / 32.3,
    GRU 2560 b2 59.0 / 55.9, GRU 2816 b4 101.9 / 95.6; where the weights fit L2, no change
    (LSTM 1536 b4 31.3 / 31.8)."""
    return switch("MPSRNN_PERSISTENT_ZIGZAG", True)


def persistent_per_sm(l2_bytes):
    """Blocks of the persistent kernel per SM on a CUDA device with ``l2_bytes`` of L2 cache (0: no
    device, one block): two. ``MPSRNN_PERSISTENT_PER_SM`` (1 or 2) decides instead, for A/B
    benchmarks.

    A step waits on the loads in flight (the weights from L2 or HBM, the terms from L1), and a
    second block per SM doubles the warps that keep loads in flight. H200 (60 MiB of L2), same
    process, µs a step, one / two blocks per SM: LSTM 2048 (64 MiB of quads) b1 t25 42.9 / 37.9,
    b4 79.3 / 60.3, GRU 2816 (127 MiB) b1 68.3 / 54.4; GRU 1536 (36 MiB) b4 t187, its chunk read in
    place, 39.8 / 32.7. (Only where a chunk was staged in shared memory, before the twentieth
    session, did one block pay from L2: LSTM 1024 b4 21.7 / 23.5, GRU 1024 b4 19.7 / 21.0.) Two
    blocks need both on an SM at once, or the first grid barrier never opens: 256 threads at
    Taichi's cap of 128 registers each (it asks for two blocks an SM) and at most 8.25 KiB of shared
    memory (up to 30.25 with kept quads: ``persistent_kept``) fit twice (``ncu``: a block limit of 2 by registers)."""
    return one_or_two("MPSRNN_PERSISTENT_PER_SM") or (2 if l2_bytes > 0 else 1)


def quads_outgrow_l2(cell_kind, hidden, l2_bytes, vh=True):
    """Whether the quads the persistent kernel streams every step (U, and a GRU's Vh where set)
    outgrow an L2 cache of ``l2_bytes`` (0: no CUDA device, never)."""
    streamed_rows = GATES[cell_kind] * hidden + (hidden if cell_kind == CELL_GRU and vh else 0)
    return 0 < l2_bytes < streamed_rows * -(-hidden // QUAD) * QUAD * 4
