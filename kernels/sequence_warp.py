"""Whole sequences in one launch, one warp a sequence: the smallest layers (LSTM and GRU up to hidden
32, the single gate up to 64; any GPU), and on four warps the LSTM and GRU up to hidden 64 (CUDA).

The registers kernel (``sequence_registers``) spreads a step's product over a block of 128-256
threads, each a chunk of a gate row, and one warp finishes the cells: every step two block
barriers and a round trip of partial sums through shared memory, and at hidden 32 a step still
took ~1000 cycles on the H200 (0.5-0.6 µs, cuDNN 0.4-0.5). Here a block is one warp of 32 lanes,
and lane i owns whole units, i and (single gate, hidden 33-64) i + 32, with every gate row of them
in its registers for the whole launch (at most 128 weights a lane: 4 rows x 32 for the LSTM, the
GRU's z, r, Uh and Vh rows x 32, the single gate's 2 rows x 64). A step:

1. each lane's gate rows against h, read from shared memory four floats a load (every lane reads
   the same address: a broadcast), zeros past H on both sides, so nothing is masked;
2. the lane adds the projected input terms (loaded a step ahead, as is the step's row count, so
   neither round trip to memory lies on the step's chain), finishes its cells with the usual
   neurons (the LSTM's c stays in the lane's registers), writes the new h to the other of two h
   buffers in shared memory, to the history and to the destination;
3. one barrier (a warp's: cheap), after which every lane reads the new h. Two buffers, taken in
   turn by a time loop unrolled by two, so that their addresses are known when compiling and no
   lane overwrites an h that another still reads. The GRU adds a barrier between its phases: its
   second product takes every unit's r∘h0 and z∘h0.

Past hidden 32 an LSTM's or GRU's unit outgrows a lane (4 rows x 64 weights), so two lanes of a
warp share it (``split``), lane l and l + 16, each holding its rows' weights in alternate quads of
columns (so that at each load the warp's two halves read other banks), on four compute warps of
16 units. Each sums its half; a warp shuffle hands the second lane's sums to the first, which
finishes the cell: still one barrier a step, and no partial sums through shared memory. The
shuffle is CUDA's (Taichi's SPIR-V subgroup shuffles are Vulkan's and Metal's, not yet used here).

A block runs its batch rows one after another (block_share); each row's h and c start from the
workspace. A row absent at a step copies its state forward. Only block barriers and shared memory:
CUDA, Vulkan and Metal (a block of 32 threads is one warp on NVIDIA, one SIMD group on Apple); the
CPU runs the lanes kernel. The input projection runs apart. Limits (``warp_shape``): the usual
neurons (F_STANDARD), no dense LSTM peepholes.
"""
import functools

import taichi as ti

from .dots import w32
from .frame import (FRAME, HEADER_ROOM, OUTPUT, WEIGHTS, WORKSPACE, copy_header, diagonal_peepholes, memory_weights,
                    recurrent_weights, run_sizes, vh_is_set)
from .gate_math import (
    standard_gru_gates,
    standard_gru_output,
    standard_lstm_cell_state,
    standard_lstm_output,
    standard_single_gate_output,
)
from .grid import block_share, row_blocks
from .knobs import knob
from .layout import (
    CELL_GRU,
    CELL_LSTM,
    CELL_SINGLE_GATE,
    F_PEEP,
    F_ROWS,
    F_WS_C,
    F_WS_H,
    F_WS_XW,
    GATES,
    PEEP_DENSE,
    PEEP_DIAGONAL,
)
from .sequence_copy import store_output

WARP = 32          # threads a block: one warp
MAX_WEIGHTS = 128  # weights a lane holds in registers (Taichi's CUDA cap at 32 threads a block is 255 registers)
ROWS_A_UNIT = {CELL_SINGLE_GATE: 1, CELL_GRU: 4, CELL_LSTM: 4}   # gate rows a unit holds (GRU: z, r, Uh, Vh)


SPLIT_WARPS = 4   # compute warps where two lanes share a unit: 16 units a warp, hidden up to 64


def warp_shape(cell, peephole, hidden, standard, shuffles):
    """(units a lane, lanes a unit) with which a layer's recurrent weights fit the warp kernel's
    registers (MAX_WEIGHTS a lane), or None where they do not or the cell is not the usual one
    (``standard``: the frame's F_STANDARD). Up to one warp's worth of units a lane owns one or two
    whole units; an LSTM or GRU of hidden 33-64 takes two lanes a unit, each half of its columns,
    on SPLIT_WARPS warps, where the arch has warp shuffles to add the halves (``shuffles``: CUDA)."""
    if not standard or (cell == CELL_LSTM and peephole == PEEP_DENSE):
        return None
    units = -(-hidden // WARP)
    if ROWS_A_UNIT[cell] * units * units * WARP <= MAX_WEIGHTS:
        return units, 1
    if shuffles and cell != CELL_SINGLE_GATE and hidden <= SPLIT_WARPS * WARP // 2:
        return 1, 2
    return None


def _kernel(cell, units, split, stores_apart):
    G = GATES[cell]
    R = ROWS_A_UNIT[cell]
    UA = WARP // split                             # units a warp: a unit's lanes are lane and lane + UA
    WARPS = 1 if split == 1 else SPLIT_WARPS       # compute warps
    WIDTH = units * WARP if split == 1 else WARPS * UA   # h in shared memory, zero past H: the products' length
    COLS = WIDTH // split                          # columns of a row a lane holds
    THREADS = WARP * (WARPS + (1 if stores_apart else 0))   # the compute warps, and the store warp where apart

    @ti.func
    def unit_of(tid, u: ti.template()):
        """The unit a compute thread's u-th share of units is."""
        return (tid // WARP) * UA + tid % UA + u * WARP

    @ti.func
    def half(tid):
        """Which of a unit's lanes a compute thread is (0: the one that finishes the cell)."""
        p = 0
        if ti.static(split > 1):
            p = (tid % WARP) // UA
        return p

    @ti.func
    def finishes(tid):
        """Whether a thread finishes cells: a compute lane, the first of its unit's."""
        return tid < WARPS * WARP and half(tid) == 0

    @ti.func
    def column(q: ti.template(), p):
        """The first column of the q-th quad of columns a lane holds: with two lanes a unit, quads
        alternate between them, so that at each load the two halves of a warp read other banks."""
        first = 4 * q
        if ti.static(split > 1):
            first = 4 * (split * q + p)
        return first

    @ti.func
    def load_weights(wts: ti.template(), head: ti.template(), H, tid):
        """The lane's gate rows in registers, row (u·R + g) at [(u·R + g)·COLS + k], zero past H:
        gate g of unit ``unit_of(tid, u)``, the columns of quad q of the lane's at k = 4q .. 4q + 3
        (GRU: z, r, Uh, then Vh, zero where Vh is nil)."""
        w = ti.Vector([0.0] * (units * R * COLS), ti.f32)
        u0, uso, usj = recurrent_weights(head)
        v0, vso, vsj = memory_weights(head)
        p = half(tid)
        for u in ti.static(range(units)):
            i = unit_of(tid, u)
            if i < H:
                for g in ti.static(range(R)):
                    if ti.static(cell == CELL_GRU and g == 3):
                        if vh_is_set(head):
                            for q in ti.static(range(COLS // 4)):   # (nested: Taichi warns past 32)
                                for e in ti.static(range(4)):
                                    j = column(q, p) + e
                                    if j < H:
                                        w[(u * R + g) * COLS + 4 * q + e] = w32(wts, v0 + i * vso + j * vsj)
                    else:
                        for q in ti.static(range(COLS // 4)):
                            for e in ti.static(range(4)):
                                j = column(q, p) + e
                                if j < H:
                                    w[(u * R + g) * COLS + 4 * q + e] = w32(wts, u0 + (g * H + i) * uso + j * usj)
        return w

    @ti.func
    def products(w: ti.template(), src: ti.template(), g0: ti.template(), g1: ti.template(), p):
        """Σ_j W(row u·R + g, j)·src[j] for gates g0 .. g1 - 1 of each unit, at [u·(g1 - g0) + g - g0]:
        src read four floats a load, each load serving every row. With two lanes a unit, each sums
        its half of the columns and the first lane adds the second's (a shuffle: no shared memory,
        no barrier); the second's sums are partial."""
        n = ti.static(g1 - g0)
        per = ti.static(4 if units * n == 1 else 2)   # accumulators a row: 8 chains of multiply-adds at least
        acc = ti.Vector([0.0] * (per * units * n), ti.f32)
        for q in ti.static(range(COLS // 4)):
            j = column(q, p)
            h4 = ti.Vector([src[j + e] for e in ti.static(range(4))])
            for u in ti.static(range(units)):
                for g in ti.static(range(g0, g1)):
                    for e in ti.static(range(4)):
                        acc[per * (u * n + g - g0) + e % per] += w[(u * R + g) * COLS + 4 * q + e] * h4[e]
        sums = ti.Vector([0.0] * (units * n), ti.f32)
        for k in ti.static(range(units * n)):
            for a in ti.static(range(per)):
                sums[k] += acc[per * k + a]
        if ti.static(split > 1):
            for k in ti.static(range(units * n)):
                sums[k] += ti.simt.warp.shfl_down_f32(ti.u32(0xFFFFFFFF), sums[k], UA)
        return sums

    @ti.func
    def store_state(ws: ti.template(), out: ti.template(), head: ti.template(), h: ti.template(), cs: ti.template(),
                    s, r, lane, live):
        """The store warp's part (``stores_apart``): step s's h (in ``h``) and an LSTM's c (in ``cs``) to
        the history, and h to the destination where row r was present at the step (``live``)."""
        _, _, H, slot = run_sizes(head)
        h_at = head[F_WS_H] + (s + 1) * slot + r * H
        c_at = head[F_WS_C] + (s + 1) * slot + r * H
        for k in ti.static(range(WIDTH // WARP)):
            i = lane + k * WARP
            if i < H:
                ws[h_at + i] = h[i]
                if ti.static(cell == CELL_LSTM):
                    ws[c_at + i] = cs[i]
                if r < live:
                    store_output(out, head, s, r, i, h[i])

    @ti.func
    def step(ws: ti.template(), frame: ti.template(), out: ti.template(), head: ti.template(), w: ti.template(),
             src: ti.template(), dst: ti.template(), csrc: ti.template(), cdst: ti.template(), rh: ti.template(),
             zh: ti.template(), s, r, tid, x: ti.template(), c: ti.template(), peep: ti.template(),
             live: ti.template(), live_prev: ti.template()):
        """Step ``s`` of batch row ``r``: h from ``src`` to ``dst`` (shared memory), the history and the
        destination; ``x`` (the step's input terms) and ``live`` (its row count) become the next
        step's, loaded here a step ahead; ``c``: the LSTM's cell states. With ``stores_apart`` the
        compute warp leaves h and c in shared memory only (c in ``cdst``), and the store warp writes
        the step before's meanwhile (``store_state``), off the compute warp's chain."""
        lane = tid % WARP
        computes = tid < WARPS * WARP
        p = half(tid)
        owner = finishes(tid)
        T, B, H, slot = run_sizes(head)   # re-read each step: short live ranges
        x_next = x
        live_next = live
        if s + 1 < T:
            live_next = frame[F_ROWS + s + 1]
            if owner:
                for u in ti.static(range(units)):
                    i = unit_of(tid, u)
                    if i < H:
                        for g in ti.static(range(G)):
                            x_next[u * G + g] = ws[head[F_WS_XW] + ((s + 1) * B + r) * G * H + g * H + i]
        if ti.static(stores_apart):
            if not computes and s > 0:
                store_state(ws, out, head, src, csrc, s - 1, r, lane, live_prev)
        h_next = head[F_WS_H] + (s + 1) * slot + r * H
        c_next = head[F_WS_C] + (s + 1) * slot + r * H
        if r < live:
            hv = ti.Vector([0.0] * units, ti.f32)
            z = ti.Vector([0.0] * units, ti.f32)
            if computes:
                if ti.static(cell == CELL_SINGLE_GATE):
                    sums = products(w, src, 0, 1, p)
                    for u in ti.static(range(units)):
                        hv[u] = standard_single_gate_output(x[u] + sums[u])
                elif ti.static(cell == CELL_LSTM):
                    sums = products(w, src, 0, 4, p)
                    for u in ti.static(range(units)):
                        cu = c[u]
                        a_i = x[u * 4] + sums[u * 4] + peep[u * 4] * cu
                        a_f = x[u * 4 + 1] + sums[u * 4 + 1] + peep[u * 4 + 1] * cu
                        a_c = x[u * 4 + 2] + sums[u * 4 + 2] + peep[u * 4 + 2] * cu
                        cu = standard_lstm_cell_state(a_i, a_f, a_c, cu)
                        a_o = x[u * 4 + 3] + sums[u * 4 + 3] + peep[u * 4 + 3] * cu
                        hv[u] = standard_lstm_output(a_o, cu)
                        c[u] = cu
                else:   # GRU: z and r, then (below) the proposed output from r∘h0 and z∘h0
                    sums = products(w, src, 0, 2, p)
                    for u in ti.static(range(units)):
                        i = unit_of(tid, u)
                        zu, ru = standard_gru_gates(x[u * 3] + sums[u * 2], x[u * 3 + 1] + sums[u * 2 + 1])
                        z[u] = zu
                        if p == 0:   # (a unit's second lane has partial sums)
                            rh[i] = ru * src[i]   # (past H h is zero, and so are these)
                            zh[i] = zu * src[i]
            if ti.static(cell == CELL_GRU):
                ti.simt.block.sync()   # (every thread of the block: the store warp too)
                if computes:
                    s_h = products(w, rh, 2, 3, p)
                    s_v = ti.Vector([0.0] * units, ti.f32)
                    if vh_is_set(head):   # (nil is zero: skipped, a uniform branch, as the other kernels do)
                        s_v = products(w, zh, 3, 4, p)
                    for u in ti.static(range(units)):
                        i = unit_of(tid, u)
                        hv[u] = standard_gru_output(head, x[u * 3 + 2] + s_h[u] + s_v[u], z[u], src[i])
            if owner:
                for u in ti.static(range(units)):
                    i = unit_of(tid, u)
                    if i < H:
                        dst[i] = hv[u]
                        if ti.static(stores_apart):
                            cdst[i] = c[u]
                        else:
                            ws[h_next + i] = hv[u]
                            if ti.static(cell == CELL_LSTM):
                                ws[c_next + i] = c[u]
                            store_output(out, head, s, r, i, hv[u])
                    else:
                        dst[i] = 0.0
        elif owner:   # absent at this step: the state carries forward
            for u in ti.static(range(units)):
                i = unit_of(tid, u)
                dst[i] = src[i]
                if ti.static(stores_apart):
                    cdst[i] = c[u]
                elif i < H:
                    ws[h_next + i] = src[i]
                    if ti.static(cell == CELL_LSTM):
                        ws[c_next + i] = c[u]
        live_prev = live
        x = x_next
        live = live_next
        ti.simt.block.sync()

    def kernel(ws: WORKSPACE, wts: WEIGHTS, frame: FRAME, out: OUTPUT):
        ti.loop_config(block_dim=THREADS)
        for t in range(ti.static(row_blocks() * THREADS)):
            blk = t // THREADS
            tid = t % THREADS
            computes = tid < WARPS * WARP
            # the frame's header in shared memory: a read of the frame in memory is two dependent
            # loads, and the sizes, offsets and output view are read every step
            head = ti.simt.block.SharedArray((HEADER_ROOM,), ti.i32)
            copy_header(frame, head, tid, THREADS)
            T, B, H, _ = run_sizes(head)
            first, count, stride = block_share(B, blk)
            ha = ti.simt.block.SharedArray((WIDTH,), ti.f32)   # h, zero past H: the two buffers
            hb = ti.simt.block.SharedArray((WIDTH,), ti.f32)
            ca = ti.simt.block.SharedArray((WIDTH,), ti.f32)   # c, the same (stores_apart: the store warp's)
            cb = ti.simt.block.SharedArray((WIDTH,), ti.f32)
            rh = ti.simt.block.SharedArray((WIDTH,), ti.f32)   # GRU: r∘h0 and z∘h0, zero past H
            zh = ti.simt.block.SharedArray((WIDTH,), ti.f32)
            w = ti.Vector([0.0] * (units * R * COLS), ti.f32)
            if count > 0 and computes:   # (a block without rows loads nothing)
                w = load_weights(wts, head, H, tid)
            for q in range(count):
                r = first + q * stride
                c = ti.Vector([0.0] * units, ti.f32)
                peep = ti.Vector([0.0] * (4 * units), ti.f32)   # the units' diagonal peepholes
                x = ti.Vector([0.0] * (G * units), ti.f32)      # the step's input terms, [u·G + g]
                if finishes(tid):
                    for u in ti.static(range(units)):
                        i = unit_of(tid, u)
                        v = 0.0
                        if i < H:
                            v = ws[head[F_WS_H] + r * H + i]
                            for g in ti.static(range(G)):
                                x[u * G + g] = ws[head[F_WS_XW] + r * G * H + g * H + i]
                            if ti.static(cell == CELL_LSTM):
                                c[u] = ws[head[F_WS_C] + r * H + i]
                                p4 = diagonal_peepholes(wts, head, head[F_PEEP] == PEEP_DIAGONAL, H, i)
                                for g in ti.static(range(4)):
                                    peep[u * 4 + g] = p4[g]
                        ha[i] = v
                        rh[i] = 0.0
                        zh[i] = 0.0
                live = frame[F_ROWS]   # rows present at the step
                live_prev = live
                ti.simt.block.sync()
                # two steps a pass, so that each buffer's role is known when compiling
                for s2 in range((T + 1) // 2):
                    step(ws, frame, out, head, w, ha, hb, ca, cb, rh, zh, 2 * s2, r, tid, x, c, peep, live, live_prev)
                    if 2 * s2 + 1 < T:
                        step(ws, frame, out, head, w, hb, ha, cb, ca, rh, zh, 2 * s2 + 1, r, tid, x, c, peep, live,
                             live_prev)
                if ti.static(stores_apart):   # the last step's state, then the buffers are free again
                    if not computes:
                        if T % 2 == 1:
                            store_state(ws, out, head, hb, cb, T - 1, r, tid % WARP, live_prev)
                        else:
                            store_state(ws, out, head, ha, ca, T - 1, r, tid % WARP, live_prev)
                    ti.simt.block.sync()

    kernel.__name__ = (f"{('single_gate', 'gru', 'lstm')[cell]}_warp{units}"   # the name profilers show
                       + (f"x{split}" if split > 1 else "") + ("_stores" if stores_apart else ""))
    return ti.kernel(kernel)


@functools.lru_cache(maxsize=None)
def warp_kernel(cell, units, split=1, stores_apart=False):
    """The kernel of ``cell`` whose lanes own ``units`` units each, or share a unit among ``split``
    lanes (``warp_shape``), with a warp for the stores where ``stores_apart`` (``warp_stores_apart``;
    one compile per combination, on first use)."""
    return _kernel(cell, units, split, stores_apart)


def warp_stores_apart(cell, split):
    """Whether the warp kernel's block takes a warp that writes each step's h and c to the history
    and the destination while the compute warp computes the next step: the stores' chain (each
    array's address loaded from Taichi's argument buffer, the output view read from shared
    memory, ~150 of a hidden-32 step's ~680 cycles in its SASS) leaves the compute warp's path to
    its barrier. The LSTM's on one warp, which issues the most a step (H200, same process, median
    of 2 rounds, µs a step, compute / apart: LSTM 32 b1 t2000 0.54 / 0.50); not the single gate's
    or the GRU's (single gate 32 b1 t672 0.40 / 0.41, GRU 32 b1 t1000 0.53 / 0.55, b4 0.52 / 0.54),
    nor on four compute warps (``split``: LSTM 64 b1 t1000 0.63 / 0.89, GRU 64 0.73 / 1.04).
    ``MPSRNN_WARP_STORES=apart|compute`` decides."""
    forced = knob("MPSRNN_WARP_STORES", ("apart", "compute"))
    return cell == CELL_LSTM and split == 1 if forced is None else forced == "apart"
