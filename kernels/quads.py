"""The persistent kernel's weight layout: four consecutive inputs of a row side by side ("quads").

The persistent kernel splits each gate row's dot product across threads: a thread
walks its row o over a run of inputs j. In the GPU's transposed layout those
weights lie a column apart, so every one is a load of its own. Here a matrix M
with rows o and columns j is stored as vectors of 4 floats,

    quads[base + q·rows + o] = (M[o, 4q + e] for e in 0..3)   (zeros past the last column)

so a thread reads four weights with one 128-bit load, and the 32 threads of a warp,
which hold neighbouring rows, read 512 contiguous bytes. Why it matters: the stream
of U is bound by the bytes in flight, not by bandwidth (``sequence_persistent``),
and a load in flight now carries four weights. CUDA emits the 128-bit load
(``ld.v4.f32``) only where Taichi keeps vectors whole (``backend.init``:
``real_matrix_scalarize`` off there); elsewhere it reads four scalars, the same
values.

The quads are float32 whatever the layer's weight type: float16 weights were
rounded once when the layer was made (``PackedCell``) and widen exactly.
"""
import numpy as np
import taichi as ti

QUAD = 4
QUAD_WEIGHTS = ti.types.ndarray(dtype=ti.types.vector(QUAD, ti.f32), ndim=1)


def pack_quads(matrix):
    """``matrix`` (rows, cols) as (ceil(cols / 4)·rows, 4) quads (layout above)."""
    rows, cols = matrix.shape
    nq = -(-cols // QUAD)
    padded = np.zeros((rows, nq * QUAD), np.float32)
    padded[:, :cols] = matrix
    return np.ascontiguousarray(padded.reshape(rows, nq, QUAD).transpose(1, 0, 2).reshape(-1, QUAD))
