"""Whole sequences in one launch, one GPU block per sequence (small hidden sizes).

A block runs every step of one batch row (a fixed grid of ``grid.row_blocks()``
blocks: block b takes rows b, b + row_blocks(), ..., see ``grid.py``). Its threads compute the gate
pre-activations, row o = g·H + i each (with the transposed weight layout,
neighbouring threads read neighbouring addresses), against h held in shared
memory; a block barrier; then the gate math of ``gate_math.py`` for the units,
which updates h and c in shared memory and writes them to the state history;
another barrier; next step. Blocks never wait for one another (rows are
independent sequences), so no grid barrier is needed and the kernel runs
wherever Taichi has block barriers and shared memory: CUDA, Vulkan, Metal.

It replaces T step launches (each ~10-60 µs from Python, ~9 µs in a graph)
by one, and keeps the state on chip. Limits: output channels ≤ MAX_HIDDEN
(shared memory: 2048 floats = 8 KiB, well inside Metal's 32 KiB), 256 threads
per block. A row absent at a step (variable length) copies its state forward.

Sizes and weight offsets are read from the frame again at every step instead of
being held in registers across the time loop: that is what the persistent
kernel needed (``sequence_persistent.py``: 1.5-2x at GRU batch 2-4).
"""
import taichi as ti

from .dots import dot8, w32
from .frame import FRAME, OUTPUT, WEIGHTS, WORKSPACE, memory_weights, recurrent_weights, run_sizes, vh_is_set
from .gate_math import gru_gates, gru_output, lstm_cell_state, lstm_output, single_gate_output
from .grid import block_share, row_blocks
from .layout import F_PEEP, F_ROWS, F_WS_C, F_WS_H, F_WS_XW, PEEP_DENSE, PEEP_DIAGONAL
from .sequence_copy import store_output

BLOCK = 256
MAX_HIDDEN = 256


@ti.func
def rounds(n, tid):
    """How many of items tid, tid + BLOCK, ... are below n (a thread's share of n items)."""
    return (n - tid + BLOCK - 1) // BLOCK if tid < n else 0


@ti.kernel
def single_gate_blocks(ws: WORKSPACE, wts: WEIGHTS, frame: FRAME, out: OUTPUT):
    ti.loop_config(block_dim=BLOCK)
    for t in range(ti.static(row_blocks() * BLOCK)):
        T, B, H, slot = run_sizes(frame)
        blk = t // BLOCK
        first, count, stride = block_share(B, blk)
        tid = t % BLOCK
        pre = ti.simt.block.SharedArray((MAX_HIDDEN,), ti.f32)
        h = ti.simt.block.SharedArray((MAX_HIDDEN,), ti.f32)
        for q in range(count):
            r = first + q * stride
            for k in range(rounds(H, tid)):
                h[tid + k * BLOCK] = ws[frame[F_WS_H] + r * H + tid + k * BLOCK]
            ti.simt.block.sync()
            for s in range(T):
                _, _, H, slot = run_sizes(frame)   # re-read each step: see the note above
                u0, uso, usj = recurrent_weights(frame)
                h_next = frame[F_WS_H] + (s + 1) * slot + r * H
                if r < frame[F_ROWS + s]:
                    xw = frame[F_WS_XW] + (s * B + r) * H
                    for k in range(rounds(H, tid)):
                        o = tid + k * BLOCK
                        pre[o] = ws[xw + o] + dot8(wts, u0 + o * uso, usj, h, 0, H)
                    ti.simt.block.sync()
                    for k in range(rounds(H, tid)):
                        i = tid + k * BLOCK
                        h[i] = single_gate_output(frame, i, pre[i])
                        ws[h_next + i] = h[i]
                        store_output(out, frame, s, r, i, h[i])
                    ti.simt.block.sync()
                else:
                    for k in range(rounds(H, tid)):
                        ws[h_next + tid + k * BLOCK] = h[tid + k * BLOCK]


@ti.kernel
def gru_blocks(ws: WORKSPACE, wts: WEIGHTS, frame: FRAME, out: OUTPUT):
    ti.loop_config(block_dim=BLOCK)
    for t in range(ti.static(row_blocks() * BLOCK)):
        T, B, H, slot = run_sizes(frame)
        blk = t // BLOCK
        first, count, stride = block_share(B, blk)
        tid = t % BLOCK
        pre = ti.simt.block.SharedArray((2 * MAX_HIDDEN,), ti.f32)   # z and r pre-activations, then z
        h = ti.simt.block.SharedArray((MAX_HIDDEN,), ti.f32)
        rh = ti.simt.block.SharedArray((MAX_HIDDEN,), ti.f32)          # r∘h0
        zh = ti.simt.block.SharedArray((MAX_HIDDEN,), ti.f32)          # z∘h0
        for q in range(count):
            r = first + q * stride
            for k in range(rounds(H, tid)):
                h[tid + k * BLOCK] = ws[frame[F_WS_H] + r * H + tid + k * BLOCK]
            ti.simt.block.sync()
            for s in range(T):
                _, _, H, slot = run_sizes(frame)   # re-read each step: see the note above
                u0, uso, usj = recurrent_weights(frame)
                vh, vso, vsj = memory_weights(frame)
                h_next = frame[F_WS_H] + (s + 1) * slot + r * H
                if r < frame[F_ROWS + s]:
                    xw = frame[F_WS_XW] + (s * B + r) * 3 * H
                    for k in range(rounds(2 * H, tid)):
                        o = tid + k * BLOCK
                        pre[o] = ws[xw + o] + dot8(wts, u0 + o * uso, usj, h, 0, H)
                    ti.simt.block.sync()
                    for k in range(rounds(H, tid)):
                        i = tid + k * BLOCK
                        z, rg = gru_gates(frame, i, pre[i], pre[H + i])
                        rh[i] = rg * h[i]
                        zh[i] = z * h[i]
                        pre[i] = z
                    ti.simt.block.sync()
                    if 2 * H <= BLOCK:
                        # two threads a unit, or half the block would idle: one takes Uh·(r∘h0), the
                        # other Vh·(z∘h0); with Vh nil, each takes half of Uh·(r∘h0). Their sums meet
                        # in pre[H ..], past the z kept in pre[.. H]
                        if tid < 2 * H:
                            i = tid % H
                            half = tid // H
                            part = 0.0
                            if vh_is_set(frame):
                                if half == 0:
                                    part = dot8(wts, u0 + (2 * H + i) * uso, usj, rh, 0, H)
                                else:
                                    part = dot8(wts, vh + i * vso, vsj, zh, 0, H)
                            else:
                                j0 = half * (H // 2)
                                part = dot8(wts, u0 + (2 * H + i) * uso + j0 * usj, usj, rh, j0,
                                            ti.select(half == 0, H // 2, H - H // 2))
                            pre[H + tid] = part
                        ti.simt.block.sync()
                        if tid < H:
                            ph = ws[xw + 2 * H + tid] + pre[H + tid] + pre[2 * H + tid]
                            h[tid] = gru_output(frame, tid, ph, pre[tid], h[tid])
                            ws[h_next + tid] = h[tid]
                            store_output(out, frame, s, r, tid, h[tid])
                    else:
                        for k in range(rounds(H, tid)):
                            i = tid + k * BLOCK
                            ph = ws[xw + 2 * H + i] + dot8(wts, u0 + (2 * H + i) * uso, usj, rh, 0, H)
                            if vh_is_set(frame):
                                ph += dot8(wts, vh + i * vso, vsj, zh, 0, H)
                            h[i] = gru_output(frame, i, ph, pre[i], h[i])
                            ws[h_next + i] = h[i]
                            store_output(out, frame, s, r, i, h[i])
                    ti.simt.block.sync()
                else:
                    for k in range(rounds(H, tid)):
                        ws[h_next + tid + k * BLOCK] = h[tid + k * BLOCK]


@ti.kernel
def lstm_blocks(ws: WORKSPACE, wts: WEIGHTS, frame: FRAME, out: OUTPUT):
    ti.loop_config(block_dim=BLOCK)
    for t in range(ti.static(row_blocks() * BLOCK)):
        T, B, H, slot = run_sizes(frame)
        blk = t // BLOCK
        first, count, stride = block_share(B, blk)
        tid = t % BLOCK
        pre = ti.simt.block.SharedArray((4 * MAX_HIDDEN,), ti.f32)
        h = ti.simt.block.SharedArray((MAX_HIDDEN,), ti.f32)
        c = ti.simt.block.SharedArray((MAX_HIDDEN,), ti.f32)
        for q in range(count):
            r = first + q * stride
            for k in range(rounds(H, tid)):
                i = tid + k * BLOCK
                h[i] = ws[frame[F_WS_H] + r * H + i]
                c[i] = ws[frame[F_WS_C] + r * H + i]
            ti.simt.block.sync()
            for s in range(T):
                _, _, H, slot = run_sizes(frame)   # re-read each step: see the note above
                u0, uso, usj = recurrent_weights(frame)
                v0, vso, vsj = memory_weights(frame)
                peep = frame[F_PEEP]
                h_next = frame[F_WS_H] + (s + 1) * slot + r * H
                c_next = frame[F_WS_C] + (s + 1) * slot + r * H
                if r < frame[F_ROWS + s]:
                    xw = frame[F_WS_XW] + (s * B + r) * 4 * H
                    for k in range(rounds(4 * H, tid)):
                        o = tid + k * BLOCK
                        acc = ws[xw + o] + dot8(wts, u0 + o * uso, usj, h, 0, H)
                        if peep == PEEP_DENSE and o < 3 * H:
                            acc += dot8(wts, v0 + o * vso, vsj, c, 0, H)
                        pre[o] = acc
                    ti.simt.block.sync()
                    for k in range(rounds(H, tid)):
                        i = tid + k * BLOCK
                        a_i = pre[i]
                        a_f = pre[H + i]
                        a_c = pre[2 * H + i]
                        c_old = c[i]
                        if peep == PEEP_DIAGONAL:
                            a_i += w32(wts, v0 + i) * c_old
                            a_f += w32(wts, v0 + H + i) * c_old
                            a_c += w32(wts, v0 + 2 * H + i) * c_old
                        c_new = lstm_cell_state(frame, i, a_i, a_f, a_c, c_old)
                        c[i] = c_new
                        ws[c_next + i] = c_new
                        if peep != PEEP_DENSE:
                            a_o = pre[3 * H + i]
                            if peep == PEEP_DIAGONAL:
                                a_o += w32(wts, v0 + 3 * H + i) * c_new
                            h[i] = lstm_output(frame, i, a_o, c_new)
                            ws[h_next + i] = h[i]
                            store_output(out, frame, s, r, i, h[i])
                    ti.simt.block.sync()
                    if peep == PEEP_DENSE:   # Vo·c1 needs the whole new cell vector
                        for k in range(rounds(H, tid)):
                            i = tid + k * BLOCK
                            a_o = pre[3 * H + i] + dot8(wts, v0 + (3 * H + i) * vso, vsj, c, 0, H)
                            h[i] = lstm_output(frame, i, a_o, c[i])
                            ws[h_next + i] = h[i]
                            store_output(out, frame, s, r, i, h[i])
                        ti.simt.block.sync()
                else:
                    for k in range(rounds(H, tid)):
                        i = tid + k * BLOCK
                        ws[h_next + i] = h[i]
                        ws[c_next + i] = c[i]


BLOCK_KERNELS = {0: single_gate_blocks, 1: gru_blocks, 2: lstm_blocks}
