"""Whole sequences in one launch, one GPU block per sequence, the recurrent weights in registers.

The small layers' path (LSTM and GRU up to hidden 64, the single gate up to 128). The plain block
kernel (``sequence_blocks``) gives each gate row one thread that walks its row of U through the
cache at every step, a serial chain of H dependent loads: 1.6-3.2 µs a step on the H200 where
cuDNN takes 0.4-0.8. Here a layer's recurrent weights fit in one block's registers, so:

* every thread owns ``rho`` gate rows (rows p, p + ceil(R/rho), ... of the R gate rows) and one
  chunk ``k`` of CHUNK input channels, and loads the weights of its first HELD_ROWS rows (2 on
  blocks of 256 threads, 4 on 128) once per launch;
* a step multiplies them against the chunk of h in shared memory (every thread of a warp reads the
  same address: a broadcast; each load serves rho rows), and leaves the partial sums in shared
  memory; a block barrier. Rows past the held ones (rho up to 8: the LSTM up to hidden 128) are read
  from memory at every step, from L1 while they fit: 3x faster than the plain block kernel on
  Vulkan, slower on CUDA, where the scheduler takes the kernel only when every row is held;
* the thread of unit ``i`` adds its gates' partial sums to the projected input (loaded one step
  ahead, so its latency hides behind a whole step), finishes the cell with the usual neurons (the
  cell state stays in that thread's registers), and writes the new h to shared memory, the history
  and the destination; another barrier.

That is two barriers a step (the GRU, whose second phase needs r∘h0, four). h in shared memory is
padded with zeros to whole chunks, and weights past the layer's width are zero, so a chunk's
product needs no bounds test. The GRU's threads (rho = 1) hold a second set: a row of Uh (against
r∘h0) or of Vh (against z∘h0).

What keeps the weights in registers (each found with ncu's local-memory counts on the H200; a
spilled kernel ran 2-4x slower than the plain block kernel):

* 256 threads: Taichi's CUDA build caps a kernel's registers by its block size (128 a thread at
  256 threads, 64 at 512, whatever ``gpu_max_reg`` says), so at most 64 weights a thread; an LSTM
  that needs 64 (hidden 33-64) still spilled a little, and takes 128 threads of up to 128 weights;
* the usual cells only (sigmoid gates, tanh: the frame's F_STANDARD, with ``gate_math``'s
  ``standard_*`` functions): the sixteen-way neuron choice, inlined at every gate, spilled them;
* the partial sums of a row side by side and summed in a static loop (``gate_sum``): a run-time
  loop over chunks kept ~30 addresses live across the time loop (read in the PTX).

What shortens a step, whose time is a chain of latencies through one warp's gate math (``ncu``
source counters, LSTM 32 b1: half the samples are warps waiting at the barriers for it): the
frame's header is copied to shared memory once a launch (a read of the frame in memory is two
dependent loads, Taichi reloading the array's address first: the sizes, offsets and output view
every step, on that chain), and an LSTM unit's diagonal peepholes (flag and weights) are read once
a row rather than every step. H200, kernel time, before / after: LSTM 32 b1 t2000 1355 / 1180 µs,
GRU 64 b1 t1000 764 / 720, the single gate 128 b4 t2000 1073 / 1055; LSTM 64 b1 t1000 794 / 724
(the header in 50 ints). The header takes 64 ints, whole 128-byte lines: in 50 the single gate ran
4% slower than before, as if the arrays after it had lost their alignment. Not kept: the next
step's row count fetched into shared memory by a thread without gate math (LSTM 32 1189 → 1286).

Limits: ceil(R/rho) x chunks ≤ the block's threads (``registers_shape``); shared memory ~9.7 KiB.
Only block barriers: CUDA, Vulkan and Metal. Dense LSTM peepholes (a second product per step) are
left to the other paths. A row absent at a step copies its state forward.
"""
import functools

import taichi as ti

from .dots import w32
from .frame import (FRAME, HEADER_ROOM, OUTPUT, WEIGHTS, WORKSPACE, copy_header, diagonal_peepholes, memory_weights,
                    recurrent_weights, run_sizes)
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
    FIRST_PHASE_GATES,
    GATES,
    PEEP_DENSE,
    PEEP_DIAGONAL,
)
from .sequence_copy import store_output

BLOCK = 256        # threads per block (128 registers a thread; see above)
SMALL_BLOCK = 128  # threads per block for the LSTMs that spill at BLOCK (255 registers a thread: registers_shape)
CHUNK = 32         # input channels of a thread's share of a row
MAX_CHUNKS = 4     # input chunks of the widest layer (single gate, hidden 128)
HELD_ROWS = 2      # gate rows a thread holds in registers at BLOCK threads (held_rows: at others); any more
                   # it reads from memory (L1) each step
MAX_ROWS = 8       # gate rows a thread computes (rho)
MAX_GATE_ROWS = 512  # gate rows of a phase (LSTM 128: 4 x 128)
PADDED = MAX_CHUNKS * CHUNK   # h in shared memory, zero past H; at most one element a thread
assert PADDED <= SMALL_BLOCK


def held_rows(threads):
    """Gate rows a thread holds in registers at ``threads`` a block: Taichi's CUDA build allows
    32768 / threads registers a thread (128 at 256 threads, 255 at 128)."""
    return HELD_ROWS * BLOCK // threads


def registers_rows(cell, peephole, hidden, standard, threads=BLOCK):
    """Gate rows per thread (rho) with which a layer's recurrent weights fit one block of ``threads``,
    fewest first; None where they do not fit or the cell is not the usual one (``standard``: the
    frame's F_STANDARD). The GRU's second phase (rows of Uh and Vh, 2H) takes as many threads as its
    first, and its threads hold one row of each (rho = 1)."""
    if not standard or (cell == CELL_LSTM and peephole == PEEP_DENSE):
        return None
    chunks = -(-hidden // CHUNK)
    if chunks > MAX_CHUNKS:
        return None
    rows = FIRST_PHASE_GATES[cell] * hidden   # gate rows of the first product
    if rows > MAX_GATE_ROWS:
        return None
    for rho in range(1, (1 if cell == CELL_GRU else MAX_ROWS) + 1):   # a GRU thread holds two sets
        if -(-rows // rho) * chunks <= threads:
            return rho
    return None


def registers_shape(cell, peephole, hidden, standard, cuda):
    """(rho, threads a block) of the registers kernel for a layer, or None where it does not fit.
    256 threads, except on CUDA for an LSTM whose threads would hold two rows there (hidden 33-64):
    at 128 registers that kernel spilled (36 bytes, LSTM 64), so it takes 128 threads of up to four
    rows each (226 registers, no spill). H200, same process, 3 rounds, µs a step, 256 / 128 threads:
    LSTM 64 b1 t1000 1.15 / 0.93, 1.07 / 0.98, 1.06 / 0.99; b8 t1000 1.15 / 1.01, 1.07 / 0.99,
    1.06 / 0.99; LSTM 32 (one row a thread either way) 0.78 / 0.78; but the single gate 128 b4 t2000,
    which does not spill at 256, 0.61-0.65 / 0.65-0.68. MPSRNN_REGISTERS_BLOCK=128|256 decides
    when set (any arch)."""
    rho = registers_rows(cell, peephole, hidden, standard)
    if rho is None:
        return None
    forced = knob("MPSRNN_REGISTERS_BLOCK", ("128", "256"))
    threads = BLOCK
    if forced:
        threads = int(forced)
    elif cuda and cell == CELL_LSTM and rho == HELD_ROWS:
        threads = SMALL_BLOCK
    rho = registers_rows(cell, peephole, hidden, standard, threads)
    return None if rho is None else (rho, threads)


@ti.func
def load_rows(wts: ti.template(), rows: ti.template(), sj, j0, H, rho: ti.template(),
              held: ti.template() = HELD_ROWS):
    """The weights a thread holds: of its first min(rho, held) rows (``held_rows``; first elements at
    rows[i], negative: none) at input channels j0 .. j0+CHUNK-1 (stride sj), as float32, row i at
    [i·CHUNK + j]; zero past H."""
    w = ti.Vector([0.0] * (min(rho, held) * CHUNK), ti.f32)
    for i in ti.static(range(min(rho, held))):
        if rows[i] >= 0:
            for j in ti.static(range(CHUNK)):
                if j0 + j < H:
                    w[i * CHUNK + j] = w32(wts, rows[i] + (j0 + j) * sj)
    return w


@ti.func
def rows_dot(w, wts: ti.template(), rows: ti.template(), sj, H, v: ti.template(), j0, rho: ti.template(),
             held: ti.template() = HELD_ROWS, v0=0):
    """Σ_j W(row i, j0 + j)·v[v0 + j0 + j] over one chunk for each of ``rho`` rows: the first ``held``
    from the registers ``w`` (w[i·CHUNK + j]), the rest from ``wts`` (at rows[i] + j·sj). Reads from
    memory stay inside the matrix: past H the column is clamped to H - 1, where v is zero, and a row
    that does not exist (rows[i] < 0) reads from 0 and its sum is never stored. Each load of v serves
    every row; independent accumulators per row keep the multiply-adds overlapped."""
    per = ti.static(4 if rho <= held else 2)   # accumulators per row
    acc = ti.Vector([0.0] * (per * rho), ti.f32)
    for j in ti.static(range(CHUNK)):
        x = v[v0 + j0 + j]
        for i in ti.static(range(rho)):
            if ti.static(i < held):
                acc[i * per + j % per] += w[i * CHUNK + j] * x
            else:
                acc[i * per + j % per] += w32(wts, ti.max(rows[i], 0) + ti.min(j0 + j, H - 1) * sj) * x
    sums = ti.Vector([0.0] * rho, ti.f32)
    for i in ti.static(range(rho)):
        for a in ti.static(range(per)):
            sums[i] += acc[i * per + a]
    return sums


@ti.func
def gate_sum(part: ti.template(), chunks, o):
    """The whole recurrent term of gate row o: its chunks' partial sums, which lie side by side
    (part[o·MAX_CHUNKS + k]: a run-time loop over k, or a layout with a stride per chunk, left ~30
    loop-invariant addresses live across the time loop and the weights spilled)."""
    total = part[o * MAX_CHUNKS]
    for k in ti.static(range(1, MAX_CHUNKS)):
        if k < chunks:
            total += part[o * MAX_CHUNKS + k]
    return total


def _kernel(cell, rho, threads, held):
    G = GATES[cell]
    assert cell != CELL_GRU or rho == 1

    def kernel(ws: WORKSPACE, wts: WEIGHTS, frame: FRAME, out: OUTPUT):
        ti.loop_config(block_dim=threads)
        for t in range(ti.static(row_blocks() * threads)):
            blk = t // threads
            tid = t % threads
            # the frame's header, copied to shared memory once: a read of the frame in memory is two
            # dependent loads (Taichi reloads the array's address before each), on the critical path
            # of every step (the sizes, the offsets, the peephole flag, the output view)
            head = ti.simt.block.SharedArray((HEADER_ROOM,), ti.i32)
            copy_header(frame, head, tid, threads)
            T, B, H, slot = run_sizes(head)
            first, count, stride = block_share(B, blk)
            part = ti.simt.block.SharedArray((MAX_GATE_ROWS * MAX_CHUNKS,), ti.f32)   # partial sums [row, chunk]
            h = ti.simt.block.SharedArray((PADDED,), ti.f32)       # h0, zero past H
            rh = ti.simt.block.SharedArray((PADDED,), ti.f32)      # GRU: r∘h0, zero past H
            zh = ti.simt.block.SharedArray((PADDED,), ti.f32)      # GRU: z∘h0, zero past H
            # this thread's rows o[i] = p + i·span of the first product, chunk k (for the GRU also
            # row o of [Uh; Vh]), loaded once for every batch row and step the block runs
            R = ti.static(FIRST_PHASE_GATES[cell]) * H
            chunks = (H + CHUNK - 1) // CHUNK
            span = (R + rho - 1) // rho
            p = tid % span
            k = tid // span
            o = ti.Vector([0] * rho, ti.i32)     # the rows, -1 where none
            at = ti.Vector([-1] * rho, ti.i32)   # where they start in wts
            u0, uso, usj = recurrent_weights(head)
            v0, vso, vsj = memory_weights(head)
            for i in ti.static(range(rho)):
                o[i] = p + i * span
                if count > 0 and k < chunks and o[i] < R:   # (a block without rows loads nothing)
                    at[i] = u0 + o[i] * uso
                else:
                    o[i] = -1
            w1 = load_rows(wts, at, usj, k * CHUNK, H, rho, held)
            w2 = ti.Vector([0.0] * CHUNK, ti.f32)
            at2 = ti.Vector([-1], ti.i32)
            if ti.static(cell == CELL_GRU):
                if o[0] >= 0:
                    at2[0] = u0 + (2 * H + o[0]) * uso
                    if o[0] >= H:
                        at2[0] = v0 + (o[0] - H) * vso
                w2 = load_rows(wts, at2, ti.select(o[0] >= H, vsj, usj), k * CHUNK, H, 1, held)
            for q in range(count):
                r = first + q * stride
                if tid < PADDED:   # one element a thread (PADDED <= threads)
                    v = 0.0
                    if tid < H:
                        v = ws[head[F_WS_H] + r * H + tid]
                    h[tid] = v
                    rh[tid] = 0.0
                    zh[tid] = 0.0
                c = 0.0
                peep = ti.Vector([0.0] * 4, ti.f32)   # the unit's diagonal peepholes, read once a row
                if ti.static(cell == CELL_LSTM):
                    if tid < H:
                        c = ws[head[F_WS_C] + r * H + tid]
                        peep = diagonal_peepholes(wts, head, head[F_PEEP] == PEEP_DIAGONAL, H, tid)
                x_next = ti.Vector([0.0] * G, ti.f32)
                if tid < H:
                    for g in ti.static(range(G)):
                        x_next[g] = ws[head[F_WS_XW] + r * G * H + g * H + tid]
                ti.simt.block.sync()
                for s in range(T):
                    _, _, H, slot = run_sizes(head)   # re-read each step: short register live ranges
                    x = x_next
                    if tid < H and s + 1 < T:           # the next step's inputs, a step ahead
                        for g in ti.static(range(G)):
                            x_next[g] = ws[head[F_WS_XW] + ((s + 1) * B + r) * G * H + g * H + tid]
                    h_next = head[F_WS_H] + (s + 1) * slot + r * H
                    c_next = head[F_WS_C] + (s + 1) * slot + r * H
                    if r < frame[F_ROWS + s]:
                        sums = rows_dot(w1, wts, at, usj, H, h, k * CHUNK, rho, held)
                        for i in ti.static(range(rho)):
                            if o[i] >= 0:
                                part[o[i] * MAX_CHUNKS + k] = sums[i]
                        ti.simt.block.sync()
                        hv = 0.0
                        if ti.static(cell == CELL_SINGLE_GATE):
                            if tid < H:
                                hv = standard_single_gate_output(x[0] + gate_sum(part, chunks, tid))
                        elif ti.static(cell == CELL_LSTM):
                            if tid < H:
                                a_i = x[0] + gate_sum(part, chunks, tid) + peep[0] * c
                                a_f = x[1] + gate_sum(part, chunks, H + tid) + peep[1] * c
                                a_c = x[2] + gate_sum(part, chunks, 2 * H + tid) + peep[2] * c
                                c = standard_lstm_cell_state(a_i, a_f, a_c, c)
                                a_o = x[3] + gate_sum(part, chunks, 3 * H + tid) + peep[3] * c
                                hv = standard_lstm_output(a_o, c)
                                ws[c_next + tid] = c
                        else:   # GRU: z and r, then the proposed output from r∘h0 and z∘h0
                            z = 0.0
                            if tid < H:
                                rg = 0.0
                                z, rg = standard_gru_gates(x[0] + gate_sum(part, chunks, tid),
                                                           x[1] + gate_sum(part, chunks, H + tid))
                                rh[tid] = rg * h[tid]
                                zh[tid] = z * h[tid]
                            ti.simt.block.sync()
                            if o[0] >= 0:
                                at_part = o[0] * MAX_CHUNKS + k
                                if o[0] < H:
                                    part[at_part] = rows_dot(w2, wts, at2, usj, H, rh, k * CHUNK, 1, held)[0]
                                else:
                                    part[at_part] = rows_dot(w2, wts, at2, vsj, H, zh, k * CHUNK, 1, held)[0]
                            ti.simt.block.sync()
                            if tid < H:
                                pre_h = x[2] + gate_sum(part, chunks, tid) + gate_sum(part, chunks, H + tid)
                                hv = standard_gru_output(head, pre_h, z, h[tid])
                        if tid < H:
                            h[tid] = hv
                            ws[h_next + tid] = hv
                            store_output(out, head, s, r, tid, hv)
                        ti.simt.block.sync()
                    elif tid < H:
                        ws[h_next + tid] = h[tid]
                        if ti.static(cell == CELL_LSTM):
                            ws[c_next + tid] = c

    kernel.__name__ = f"{('single_gate', 'gru', 'lstm')[cell]}_registers{rho}x{threads}"   # the name profilers show
    return ti.kernel(kernel)


@functools.lru_cache(maxsize=None)
def registers_kernel(cell, rho, threads):
    """The kernel of ``cell`` on blocks of ``threads`` whose threads hold ``rho`` gate rows (one compile
    per combination, on first use)."""
    return _kernel(cell, rho, threads, held_rows(threads))
