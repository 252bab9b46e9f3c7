"""The persistent kernel's weight layout: four consecutive inputs of a row side by side ("quads").

The persistent kernel splits each gate row's dot product across threads: a thread
walks its row o over a run of inputs j. In the GPU's transposed layout those
weights lie a column apart, so every one is a load of its own. Here a matrix M
with rows o and columns j is stored as vectors of 4 floats,

    quads[base + q·rows + o] = (M[o, 4q + e] for e in 0..3)   (zeros past the last column)

so a thread reads four weights with one 128-bit load, and the 32 threads of a warp,
which hold neighbouring rows, read 512 contiguous bytes where a block's rows of one gate fill a
warp (where they do not, the streams layout below keeps a warp's loads contiguous). Why it matters: the stream
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


# The same quads in the order the persistent kernel's threads read them ("streams").
#
# In the layout above, a warp's threads read neighbouring rows only where a block's rows of one gate
# fill a warp: at GRU 2816 on 264 blocks a block owns 11 units, so a warp's 32 loads fall in three
# runs of ~176 bytes at three places (two gates, two input splits). Stored in the order each block's
# threads consume them, every load instruction of a warp reads 512 contiguous bytes, and a block
# walks one contiguous run a phase. H200, a probe of the stream alone (``bench/probes/
# stream_layout.py``, GRU 2816's first phase, 60.5 MiB): 17.4 µs a sweep in rows, 15.3 in streams.
#
# A phase streams the rows of ``gates`` gates; each block owns ``units`` units (all their gates),
# dealt to lanes ``rows`` a thread and the inputs' quads split across the threads of a lane
# (``sequence_persistent.partial_dots``). Quad ``qi`` of the run of thread ``tid`` (= split·lanes
# + lane), its row r, in block blk, lies at
#
#     ((blk·padded + qi)·rows + r)·threads + tid          (threads = lanes·splits)
#
# with each thread's run of ``run`` quads padded with zeros to ``padded`` (past the ``kept`` quads that
# open the run and that the kernel copies to shared memory once, a whole number of load groups:
# ``stream_shape``), and
# the rows a thread has past its block's or past H all zeros: the kernel reads whole groups and masks
# nothing.


def kept_quads(run, rows, loads, room):
    """Quads of a thread's run of ``run`` (``rows`` rows each) that the persistent kernel keeps in
    shared memory for the whole sequence, within ``room`` quads a thread: the run's partial group
    (its length past whole groups of ``loads``) and then as many whole groups as fit, or none where
    even the partial group does not fit. Keeping the partial group takes a whole group of loads
    (and its padding) off every step."""
    part = run % loads
    if part * rows > room:
        return 0
    return min(part + (room - part * rows) // (loads * rows) * loads, run)


def stream_shape(rows_r, rows, hidden, block, loads, kept=0):
    """(lanes, splits, quads of a run, run padded to whole groups of ``loads`` past its ``kept``
    opening quads) of a phase whose block streams ``rows_r`` gate rows over ``hidden`` inputs,
    ``rows`` rows a thread, on ``block`` threads (``kept``: quads of each run held in shared memory,
    ``kept_quads``). Plain integer arithmetic: the kernel computes the same (``ti.func``)."""
    lanes = (rows_r + rows - 1) // rows
    splits = block // lanes
    run = ((hidden + QUAD - 1) // QUAD + splits - 1) // splits
    return lanes, splits, run, kept + (run - kept + loads - 1) // loads * loads


def pack_streams(phases, hidden, nblocks, rows, loads, block, kept=None):
    """The quads of every phase's matrix in the order the persistent kernel's threads stream them
    (above), one phase after the other. ``phases``: (matrix, gates) pairs, the matrix (gates·H, H)
    float32, gate g's row of unit i at g·H + i; ``kept``: each phase's quads a thread held in shared
    memory (``kept_quads``; none where not given)."""
    units = -(-hidden // nblocks)
    hq = -(-hidden // QUAD)
    parts = []
    for n, (matrix, gates) in enumerate(phases):
        quads = pack_quads(matrix).reshape(hq, gates * hidden, QUAD)   # [quad, row]
        lanes, splits, run, padded = stream_shape(gates * units, rows, hidden, block, loads,
                                                  kept[n] if kept else 0)
        blk, qi, r, tid = np.meshgrid(np.arange(nblocks), np.arange(padded), np.arange(rows),
                                      np.arange(lanes * splits), indexing="ij")
        rr = tid % lanes + r * lanes            # the thread's row among its block's
        i = blk * units + rr % units            # its unit
        q = (tid // lanes) * run + qi           # its quad of the row's inputs
        real = (rr < gates * units) & (i < hidden) & (qi < run) & (q < hq)
        part = np.zeros(blk.shape + (QUAD,), np.float32)
        part[real] = quads[q[real], ((rr // units) * hidden + i)[real]]
        parts.append(part.reshape(-1, QUAD))
    return np.concatenate(parts)
