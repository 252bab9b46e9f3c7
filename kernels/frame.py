"""The arrays every recurrence kernel takes, and reading a layer's frame (see ``layout.py``): one
place for the argument types and the field list."""
import taichi as ti

from .layout import (F_BATCH, F_HAS_VH, F_HEADER, F_OUT, F_OUT_BASE, F_OUT_ROW, F_OUT_STEP, F_SLOT, F_STEPS, F_U,
                     F_U_SJ, F_U_SO, F_V, F_V_SJ, F_V_SO, F_X_BASE, F_X_ROW, F_X_STEP)

# argument types of the recurrence kernels: (ws, wts, frame, out)
WORKSPACE = ti.types.ndarray(dtype=ti.f32, ndim=1)   # projected inputs, state history, scratch
WEIGHTS = ti.types.ndarray(ndim=1)                    # float16 or float32 weight matrices
FRAME = ti.types.ndarray(dtype=ti.i32, ndim=1)       # sizes, offsets, rows per step
OUTPUT = ti.types.ndarray(ndim=1)                     # the caller's destination (float16 or float32)
INPUT = ti.types.ndarray(ndim=1)                      # a layer's input sequence (float16 or float32)

HEADER_ROOM = 64   # ints of shared memory for the frame's header (F_HEADER), whole 128-byte lines
assert F_HEADER <= HEADER_ROOM


@ti.func
def run_sizes(frame: ti.template()):
    """(T steps, B batch rows, H output channels, elements between history slots)."""
    return frame[F_STEPS], frame[F_BATCH], frame[F_OUT], frame[F_SLOT]


@ti.func
def recurrent_weights(frame: ti.template()):
    """(offset, stride per output row, stride per input) of U in the weight array."""
    return frame[F_U], frame[F_U_SO], frame[F_U_SJ]


@ti.func
def vh_is_set(frame: ti.template()):
    """Whether a GRU's Vh is set: nil is zero, so kernels skip Vh·(z∘h0) (a uniform branch) rather
    than sum a zero matrix's products."""
    return frame[F_HAS_VH] != 0


@ti.func
def memory_weights(frame: ti.template()):
    """(offset, stride per output row, stride per input) of V: LSTM peepholes or GRU Vh."""
    return frame[F_V], frame[F_V_SO], frame[F_V_SJ]


@ti.func
def diagonal_peepholes(wts: ti.template(), frame: ti.template(), diagonal, H, i):
    """Unit i's diagonal LSTM peepholes (V's entries for the gates i, f, c, o) as float32, or zeros
    where not ``diagonal``: the kernels that finish a cell a thread read them through L1."""
    peep = ti.Vector([0.0] * 4, ti.f32)
    if diagonal:
        for g in ti.static(range(4)):
            peep[g] = ti.cast(wts[frame[F_V] + g * H + i], ti.f32)
    return peep


@ti.func
def input_view(frame: ti.template()):
    """(base, step stride, row stride) of the layer's input x, in elements (see F_X_BASE)."""
    return frame[F_X_BASE], frame[F_X_STEP], frame[F_X_ROW]


@ti.func
def output_view(frame: ti.template()):
    """(base, step stride, row stride) of where each new h also goes; a negative base: nowhere."""
    return frame[F_OUT_BASE], frame[F_OUT_STEP], frame[F_OUT_ROW]


@ti.func
def param(frame: ti.template(), k):
    """Float parameter ``k`` of the layer (a bias, a neuron's a, b or c, a PReLU slope, the GRU's p;
    offsets F_P_*): the frame's tail holds them as their bits, so they reach a kernel without an
    array of their own (an ndarray argument costs Taichi's launcher ~2.7 µs a dispatch, H200)."""
    return ti.bit_cast(frame[k], ti.f32)


@ti.func
def copy_header(frame: ti.template(), head: ti.template(), tid, block: ti.template()):
    """The frame's header into ``head`` (HEADER_ROOM ints of shared memory) by a block of ``block``
    threads (each an entry, or several where the block is smaller than F_HEADER), for a kernel's
    time loop to read there: a read of the frame in memory is two dependent loads (Taichi reloads
    the array's address first), from L2 after every grid barrier (its fence empties the L1), on
    the chain of latencies of every step. H200, µs a step,
    the kernels before / with the copy (separate processes, 2 rounds each): split, LSTM 1024 b4 t25
    13.9, 13.0 / 12.5, 12.8, GRU 1024 b2 t1500 8.83, 8.85 / 8.18, 8.19, LSTM 1024 b1 9.6, 9.5 / 9.6,
    9.4; spread, LSTM 512 b4 t25 10.1, 10.0 / 9.7, 10.7; the persistent kernel's: see there."""
    for k in ti.static(range(-(-F_HEADER // block))):
        if tid + k * block < F_HEADER:
            head[tid + k * block] = frame[tid + k * block]
    ti.simt.block.sync()
