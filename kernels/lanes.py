"""The CPU's weight layout: eight output rows side by side ("lanes").

A matrix M with rows o = g·H + i (gate g, unit i) and columns j is stored as
vectors of 8 floats. Block (u, g) holds units i = 8u .. 8u+7 of gate g (zeros
past H); its vector for column j is

    lanes[base + (u·G + g)·cols + j] = (M[g·H + 8u + m, j] for m in 0..7)

so the G gates of 8 units lie next to each other. A matrix-vector product walks
j once per block: ``acc += lanes[..j] * v[j]``, one vector load, one broadcast
and 8 lane-wise multiply-adds. Lanes never mix, so the sum needs no
reassociation and LLVM emits vector code without fast-math (which would let it
assume no NaN or infinity, values MPS's neurons produce on purpose), provided
Taichi keeps vectors whole: ``backend.init`` starts the CPU with
``real_matrix_scalarize=False``. Measured on this project's CPU, one thread
(``bench/probes/cpu_vector.py``): U·h at hidden 256 runs at 23 GFLOP/s in
lanes, 8.6 with ``dots.dot8``.

The lanes are float32 whatever the layer's weight type: float16 weights are
rounded to float16 first (``PackedCell``), then widened exactly, so results do not
change, and Taichi 1.7's CPU backend cannot widen a vector of float16 (LLVM asserts).
"""
import numpy as np
import taichi as ti

LANES = 8
LANE = ti.types.vector(LANES, ti.f32)
LANE_WEIGHTS = ti.types.ndarray(dtype=LANE, ndim=1)


def pack_lanes(matrix, gates, hidden):
    """``matrix`` (gates·hidden, cols) as (blocks·gates·cols, 8) lane vectors (layout above)."""
    cols = matrix.shape[1]
    blocks = (hidden + LANES - 1) // LANES
    padded = np.zeros((gates, blocks * LANES, cols), np.float32)
    padded[:, :hidden] = matrix.reshape(gates, hidden, cols)
    return padded.reshape(gates, blocks, LANES, cols).transpose(1, 0, 3, 2).reshape(-1, LANES)


@ti.func
def lane_blocks(H):
    """Blocks of 8 units that cover H units."""
    return (H + LANES - 1) // LANES


@ti.func
def block_span(u, H):
    """(first unit, units present) of block u: 8, or fewer in the last block."""
    return u * LANES, ti.min(LANES, H - u * LANES)


@ti.func
def accumulate_products(acc: ti.template(), lanes: ti.template(), b, cols, ws: ti.template(), v0):
    """acc[g] += Σ_j lanes[b + g·cols + j]·ws[v0 + j] for each accumulator g (a list of 8-float
    vectors, updated in place): the blocks of len(acc) consecutive gates of one unit block, with
    one pass over v for all of them."""
    for j in range(cols):
        vj = ws[v0 + j]
        for g in ti.static(range(len(acc))):
            acc[g] += lanes[b + g * cols + j] * vj


@ti.func
def add_products(ws: ti.template(), dst, lanes: ti.template(), base, layout_gates, first, count: ti.template(),
                 cols, v0, H):
    """ws[dst + g·H + i] += Σ_j M[(first + g)·H + i, j]·ws[v0 + j], for g < count and i < H.

    M is the lane-packed matrix at ``base`` with ``layout_gates`` gates and ``cols`` columns (the
    kernels' path for any neurons, whose gate math then runs unit by unit)."""
    for u in range(lane_blocks(H)):
        acc = [ti.Vector([0.0] * LANES) for _ in ti.static(range(count))]
        accumulate_products(acc, lanes, base + (u * layout_gates + first) * cols, cols, ws, v0)
        for g in ti.static(range(count)):
            for m in ti.static(range(LANES)):
                i = u * LANES + m
                if i < H:
                    ws[dst + g * H + i] += acc[g][m]
