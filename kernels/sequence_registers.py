"""Whole sequences in one launch, one GPU block per sequence, the recurrent weights in registers.

The small layers' path (LSTM and GRU up to hidden 64, the single gate up to 128). The plain block
kernel (``sequence_blocks``) gives each gate row one thread that walks its row of U through the
cache at every step, a serial chain of H dependent loads: 1.6-6.6 µs a step on the H100 where
cuDNN takes 0.5-2.4. Here a layer's recurrent weights fit in one block's registers, so:

* every thread owns one gate row ``o`` and one chunk ``k`` of CHUNK input channels
  (thread ``tid = k·R + o``, R gate rows), and loads those CHUNK weights once per launch;
* a step multiplies them against the chunk of h in shared memory (every thread of a warp reads the
  same address: a broadcast) with four independent accumulators, and leaves the partial sum in
  shared memory; a block barrier;
* the thread of unit ``i`` adds its gates' partial sums to the projected input (loaded one step
  ahead, so its latency hides behind a whole step), finishes the cell with ``gate_math`` (the cell
  state stays in that thread's registers), and writes the new h to shared memory, the history and
  the destination; another barrier.

That is two barriers a step (the GRU, whose second phase needs r∘h0, four). h in shared memory is
padded with zeros to whole chunks, and weights past the layer's width are zero, so a chunk's
product needs no bounds test. The GRU's threads hold a second set: the rows of Uh (against r∘h0)
and of Vh (against z∘h0).

Limits: gate rows x chunks ≤ BLOCK = 512 threads (``registers_fit``), CHUNK (32) weights a thread,
the GRU 64; shared memory ~3.5 KiB. Only block barriers: CUDA, Vulkan and Metal. Dense LSTM
peepholes (a second product per step) are left to the other paths. A row absent at a step copies
its state forward.
"""
import taichi as ti

from .dots import w32
from .frame import FRAME, OUTPUT, PARAMS, WEIGHTS, WORKSPACE, memory_weights, recurrent_weights, run_sizes
from .gate_math import gru_gates, gru_output, lstm_cell_state, lstm_output, single_gate_output
from .grid import block_share, row_blocks
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

BLOCK = 512        # threads per block
CHUNK = 32         # weights of one gate row a thread holds
MAX_CHUNKS = 4     # input chunks of the widest layer (single gate, hidden 128)
PADDED = MAX_CHUNKS * CHUNK


def first_phase_rows(cell, hidden):
    """Gate rows a step's first product computes: every gate (LSTM, single gate), z and r (GRU)."""
    return (2 if cell == CELL_GRU else GATES[cell]) * hidden


def registers_fit(cell, peephole, hidden):
    """Whether a layer's recurrent weights fit this kernel: a thread per (gate row, input chunk)
    within one block. The GRU's second phase (rows of Uh and Vh, 2H) takes as many as its first."""
    if cell == CELL_LSTM and peephole == PEEP_DENSE:
        return False
    chunks = -(-hidden // CHUNK)
    return chunks <= MAX_CHUNKS and first_phase_rows(cell, hidden) * chunks <= BLOCK


@ti.func
def rounds(n, tid):
    """How many of items tid, tid + BLOCK, ... are below n (a thread's share of n items)."""
    return (n - tid + BLOCK - 1) // BLOCK if tid < n else 0


@ti.func
def load_chunk(wts: ti.template(), at, sj, j0, H, active):
    """CHUNK weights of one row, from ``at`` (the row's first element) at input channels j0, j0+1, ...
    (stride sj), as float32; zero past H or for an idle thread."""
    w = ti.Vector([0.0] * CHUNK, ti.f32)
    if active:
        for j in ti.static(range(CHUNK)):
            if j0 + j < H:
                w[j] = w32(wts, at + (j0 + j) * sj)
    return w


@ti.func
def chunk_dot(w, v: ti.template(), j0):
    """Σ_j w[j]·v[j0 + j] over one chunk, with four independent accumulators."""
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    for j in ti.static(range(0, CHUNK, 4)):
        a0 += w[j] * v[j0 + j]
        a1 += w[j + 1] * v[j0 + j + 1]
        a2 += w[j + 2] * v[j0 + j + 2]
        a3 += w[j + 3] * v[j0 + j + 3]
    return (a0 + a1) + (a2 + a3)


@ti.func
def gate_sum(part: ti.template(), rows, chunks, o):
    """The whole recurrent term of gate row o: its chunks' partial sums."""
    total = 0.0
    for k in range(chunks):
        total += part[k * rows + o]
    return total


def _kernel(cell):
    G = GATES[cell]

    @ti.kernel
    def kernel(ws: WORKSPACE, wts: WEIGHTS, prm: PARAMS, frame: FRAME,
               out: OUTPUT, out_base: ti.i32, out_step: ti.i32, out_row: ti.i32):
        ti.loop_config(block_dim=BLOCK)
        for t in range(ti.static(row_blocks() * BLOCK)):
            T, B, H, slot = run_sizes(frame)
            blk = t // BLOCK
            tid = t % BLOCK
            first, count, stride = block_share(B, blk)
            part = ti.simt.block.SharedArray((BLOCK,), ti.f32)     # partial sums, one per thread
            h = ti.simt.block.SharedArray((PADDED,), ti.f32)       # h0, zero past H
            rh = ti.simt.block.SharedArray((PADDED,), ti.f32)      # GRU: r∘h0, zero past H
            zh = ti.simt.block.SharedArray((PADDED,), ti.f32)      # GRU: z∘h0, zero past H
            # this thread's weights: row o of the first product, chunk k (and for the GRU, row o of
            # [Uh; Vh], chunk k); loaded once for every row and step the block runs
            R = ti.static(2 if cell == CELL_GRU else G) * H
            chunks = (H + CHUNK - 1) // CHUNK
            o = tid % R
            k = tid // R
            active = k < chunks
            u0, uso, usj = recurrent_weights(frame)
            v0, vso, vsj = memory_weights(frame)
            w1 = load_chunk(wts, u0 + o * uso, usj, k * CHUNK, H, active)
            w2 = ti.Vector([0.0] * CHUNK, ti.f32)
            if ti.static(cell == CELL_GRU):
                if o < H:
                    w2 = load_chunk(wts, u0 + (2 * H + o) * uso, usj, k * CHUNK, H, active)
                else:
                    w2 = load_chunk(wts, v0 + (o - H) * vso, vsj, k * CHUNK, H, active)
            # the unit thread's diagonal peepholes (LSTM)
            peep = ti.Vector([0.0] * 4, ti.f32)
            if ti.static(cell == CELL_LSTM):
                if tid < H and frame[F_PEEP] == PEEP_DIAGONAL:
                    for g in ti.static(range(4)):
                        peep[g] = w32(wts, v0 + g * H + tid)
            for q in range(count):
                r = first + q * stride
                for e in range(rounds(PADDED, tid)):
                    i = tid + e * BLOCK
                    v = 0.0
                    if i < H:
                        v = ws[frame[F_WS_H] + r * H + i]
                    h[i] = v
                    rh[i] = 0.0
                    zh[i] = 0.0
                c = 0.0
                if ti.static(cell == CELL_LSTM):
                    if tid < H:
                        c = ws[frame[F_WS_C] + r * H + tid]
                x_next = ti.Vector([0.0] * G, ti.f32)
                if tid < H:
                    for g in ti.static(range(G)):
                        x_next[g] = ws[frame[F_WS_XW] + r * G * H + g * H + tid]
                ti.simt.block.sync()
                for s in range(T):
                    _, _, H, slot = run_sizes(frame)   # re-read each step: short register live ranges
                    x = x_next
                    if tid < H and s + 1 < T:           # the next step's inputs, a step ahead
                        for g in ti.static(range(G)):
                            x_next[g] = ws[frame[F_WS_XW] + ((s + 1) * B + r) * G * H + g * H + tid]
                    h_next = frame[F_WS_H] + (s + 1) * slot + r * H
                    c_next = frame[F_WS_C] + (s + 1) * slot + r * H
                    if r < frame[F_ROWS + s]:
                        if active:
                            part[tid] = chunk_dot(w1, h, k * CHUNK)
                        ti.simt.block.sync()
                        hv = 0.0
                        if ti.static(cell == CELL_SINGLE_GATE):
                            if tid < H:
                                hv = single_gate_output(frame, prm, tid, x[0] + gate_sum(part, R, chunks, tid))
                        elif ti.static(cell == CELL_LSTM):
                            if tid < H:
                                a_i = x[0] + gate_sum(part, R, chunks, tid) + peep[0] * c
                                a_f = x[1] + gate_sum(part, R, chunks, H + tid) + peep[1] * c
                                a_c = x[2] + gate_sum(part, R, chunks, 2 * H + tid) + peep[2] * c
                                c = lstm_cell_state(frame, prm, tid, a_i, a_f, a_c, c)
                                a_o = x[3] + gate_sum(part, R, chunks, 3 * H + tid) + peep[3] * c
                                hv = lstm_output(frame, prm, tid, a_o, c)
                                ws[c_next + tid] = c
                        else:   # GRU: z and r, then the proposed output from r∘h0 and z∘h0
                            z = 0.0
                            if tid < H:
                                rg = 0.0
                                z, rg = gru_gates(frame, prm, tid, x[0] + gate_sum(part, R, chunks, tid),
                                                  x[1] + gate_sum(part, R, chunks, H + tid))
                                rh[tid] = rg * h[tid]
                                zh[tid] = z * h[tid]
                            ti.simt.block.sync()
                            if active:
                                if o < H:
                                    part[tid] = chunk_dot(w2, rh, k * CHUNK)
                                else:
                                    part[tid] = chunk_dot(w2, zh, k * CHUNK)
                            ti.simt.block.sync()
                            if tid < H:
                                pre_h = x[2] + gate_sum(part, R, chunks, tid) + gate_sum(part, R, chunks, H + tid)
                                hv = gru_output(frame, prm, tid, pre_h, z, h[tid])
                        if tid < H:
                            h[tid] = hv
                            ws[h_next + tid] = hv
                            store_output(out, out_base, out_step, out_row, s, r, tid, hv)
                        ti.simt.block.sync()
                    elif tid < H:
                        ws[h_next + tid] = h[tid]
                        if ti.static(cell == CELL_LSTM):
                            ws[c_next + tid] = c

    return kernel


REGISTER_KERNELS = {cell: _kernel(cell) for cell in (CELL_SINGLE_GATE, CELL_GRU, CELL_LSTM)}
