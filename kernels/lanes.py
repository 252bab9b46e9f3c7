"""The CPU's weight layout: L = ``LANES`` output rows side by side ("lanes"; 16 on a CPU with
AVX-512, else 8: ``lane_width``).

A matrix M with rows o = g·H + i (gate g, unit i) and columns j is stored as
vectors of L floats per gate. Block (u, g) holds units i = Lu .. Lu+L-1 of gate g
(zeros past H). A vector holds the blocks of ``group`` gates of one unit block
(``lane_group``): the LSTM's four, side by side, so one load per column serves
all four gates of its units; one gate for the other cells. Its vector for
column j is

    lanes[base + (u·G/group + g//group)·cols + j][(g % group)·L + m] = M[g·H + Lu + m, j]

(with group 1: lanes[base + (u·G + g)·cols + j] = (M[g·H + Lu + m, j] for m in 0..L-1)),
so the G gates of L units lie next to each other. A matrix-vector product walks
j once per vector: ``acc += lanes[..j] * v[j]``, one vector load, one broadcast
and lane-wise multiply-adds. Lanes never mix, so the sum needs no
reassociation and LLVM emits vector code without fast-math (which would let it
assume no NaN or infinity, values MPS's neurons produce on purpose), provided
Taichi keeps vectors whole: ``backend.init`` starts the CPU with
``real_matrix_scalarize=False``. Measured on this project's CPU, one thread
(``bench/probes/cpu_vector.py``): U·h at hidden 256 runs at 23 GFLOP/s in
lanes of 8, 8.6 with ``dots.dot8``.

Why the LSTM's four gates share a vector: each ndarray load costs its own index
arithmetic (Taichi's i32 index, sign-extended at the load, which LLVM cannot hoist),
so four loads of L floats at four places cost more than one of 4L; and one
stream of U is easier on the prefetcher than four. LSTM 256's U·h, one thread
(``bench/probes/cpu_lanes.py``, 8 lanes), median of 6 rounds, µs: four gates apart 25.0, together 20.5.
The GRU keeps one gate a vector: its step reads z and r first, then the third
gate against r∘h0.

The lanes are float32 whatever the layer's weight type: float16 weights are
rounded to float16 first (``PackedCell``), then widened exactly, so results do not
change, and Taichi 1.7's CPU backend cannot widen a vector of float16 (LLVM asserts).
"""
import numpy as np
import taichi as ti

from .knobs import knob
from .layout import CELL_LSTM, F_GATES, F_LANE_U, F_OUT


def lane_width(cpu_flags=None):
    """Units of a gate a lane vector holds (``LANES``): 16 where the CPU has AVX-512 (``cpu_flags``, by
    default this machine's), else 8; ``MPSRNN_CPU_LANES`` (8 or 16) decides instead, for A/B
    benchmarks and tests. Read once, at import: the kernels are compiled for it.

    Why 16 with AVX-512: a column's step of the product is one vector load of U, one broadcast of
    h[j] and its multiply and add, behind Taichi's index arithmetic for both loads (an i32 index,
    sign-extended at every load), whatever the vector's width; a wider vector spreads that cost
    over twice the multiply-adds. Xeon VM with AVX-512, one thread, a single gate's U·h at hidden
    128 for 4 rows, µs, 8 / 16 / 32 lanes: 6.4–6.9 / 4.5–5.0 / 3.6–4.1; ``mpsrnn bench`` in fresh
    processes, 5 rounds, median µs a step, 8 / 16: LSTM 256 b1 29.6 / 26.4, LSTM 64 b2 7.6 / 4.7,
    LSTM 64 b1 3.65 / 3.06, GRU 128 b2 18.5 / 15.6, LSTM 128 b8 34.1 / 28.8 (RNN 128 b4: 9–18 at
    either width, the pool's late second thread). 32 lost at LSTM 256 b1 (16 / 32: 23.9 / 27.3)
    and took minutes to compile an LSTM. Without AVX-512 (AVX2's 16 vector registers, NEON's 32 of a
    quarter the width) the projection's accumulators, two rows of four blocks, would not fit the
    registers at 16."""
    forced = knob("MPSRNN_CPU_LANES", ("8", "16"))
    if forced:
        return int(forced)
    return 16 if cpu_has_avx512(cpu_flags) else 8


def cpu_has_avx512(cpu_flags=None):
    """Whether the CPU has AVX-512 (``cpu_flags``, by default this machine's)."""
    return "avx512f" in (_cpu_flags() if cpu_flags is None else cpu_flags)


def _cpu_flags():
    """The instruction-set flags of this machine's CPU where the system lists them (Linux), else none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].split()
    except OSError:
        pass
    return []


LANES = lane_width()
LANE_WEIGHTS = ti.types.ndarray(ndim=1)   # vectors of LANES x lane_group floats (one compile per width)
LANE_TERMS = ti.types.ndarray(dtype=ti.types.vector(LANES, ti.f32), ndim=1)   # input terms: ``term_at``


def lane_group(kind):
    """Gates a lane vector holds for a cell of ``kind``: the LSTM's four, one for the others."""
    return 4 if kind == CELL_LSTM else 1


def lane_block_count(hidden):
    """Blocks of LANES units that cover ``hidden`` units (``lane_blocks`` in Taichi scope)."""
    return (hidden + LANES - 1) // LANES


lane_blocks = ti.func(lane_block_count)


def lane_terms(steps, batch, gates, hidden):
    """Vectors of LANES floats that a run's input terms take (``term_at``)."""
    return steps * batch * gates * lane_block_count(hidden)


def pack_lanes(matrix, gates, hidden, group=1):
    """``matrix`` (gates·hidden, cols) as (blocks·gates/group·cols, LANES·group) lane vectors of ``group``
    gates each (layout above; ``gates`` a multiple of ``group``)."""
    cols = matrix.shape[1]
    blocks = lane_block_count(hidden)
    padded = np.zeros((gates, blocks * LANES, cols), np.float32)
    padded[:, :hidden] = matrix.reshape(gates, hidden, cols)
    return (padded.reshape(gates // group, group, blocks, LANES, cols).transpose(2, 0, 4, 1, 3)
            .reshape(-1, group * LANES))


def vector_gates(lanes):
    """Gates a vector of the lane array ``lanes`` holds (its width / LANES), known when compiling."""
    return lanes.element_shape()[0] // LANES


@ti.func
def gate_lanes(v, g: ti.template()):
    """The LANES lanes of gate g (its place in the vector) of a vector of several gates' lanes."""
    return ti.Vector([v[g * LANES + m] for m in ti.static(range(LANES))])


@ti.func
def term_at(frame: ti.template(), n):
    """Where the input terms W·x + b of row n = s·B + r start in a run's terms array: a vector of
    LANES floats per (gate g, unit block u), at term_at(n) + g·blocks + u (units past H: lanes no
    step reads).

    Why vectors of their own, not the workspace's floats: Taichi's index into an ndarray is i32,
    sign-extended at each load, so LLVM cannot prove that ws[b], ws[b+1] .. are neighbours and
    moves a block's LANES floats one at a time (a load, an insert into the vector) where one
    vector load would do. A vector element of an ndarray is one load or store. The terms are the
    step's most moved data: written by the projection, read by the step, and a pair's products
    added into them. This project's 2-core EPYC VM (Zen 5), ``ab_trees.py``, 3 rounds, µs a step,
    terms in the workspace / here: LSTM 128 b8 t1000 12.4 / 9.1, LSTM 192 b4 12.2 / 9.5, LSTM 256
    b1 t50 8.8 / 7.0, LSTM 64 b1 t50 1.35 / 1.12, GRU 128 b8 11.7 / 9.1, single gate 128 b4 t50
    3.75 / 3.08. The gathers were also most of the kernels' code: a cold compile of LSTM 256 b1's
    pipelined kernel took 36.6 s, now 6.4; LSTM 128 b4's 24.2 s, now 5.4; GRU 128 b2's 16.5, now 3.3."""
    return n * frame[F_GATES] * lane_blocks(frame[F_OUT])


@ti.func
def bias_vector(lanes: ti.template(), frame: ti.template(), e):
    """The biases of vector e of a unit block's gates (e = (u·G + g) // group, as W's and U's
    vectors are counted), packed like a one-column matrix just before U (``PackedCell``)."""
    G = frame[F_GATES]
    group = ti.static(vector_gates(lanes))
    return lanes[frame[F_LANE_U] - lane_blocks(frame[F_OUT]) * (G // group) + e]


@ti.func
def zigzag_block(k, lo, hi, s):
    """The unit block a step's pass over blocks lo .. hi-1 visits k-th (lo ≤ k < hi): k on even
    steps, from the last on odd ones.

    Where U outgrows a core's L2 (LSTM 256: 1 MiB in lanes, this VM's L2 1 MiB), a pass in one
    order every step evicts each block before the next step wants it, and every step streams all of
    U from L3. Turning back each step starts with the blocks the last step read most recently, which
    are still in L2. A block's sums do not depend on when it runs. One thread, U·h of LSTM 256
    (``bench/probes/cpu_zigzag.py``), µs a step, one order / turning back: 9.7-10.5 / 8.1-8.9."""
    u = k
    if s % 2 == 1:
        u = lo + hi - 1 - k
    return u


@ti.func
def block_span(u, H):
    """(first unit, units present) of block u: LANES, or fewer in the last block."""
    return u * LANES, ti.min(LANES, H - u * LANES)


@ti.func
def accumulate_products(acc: ti.template(), lanes: ti.template(), b, cols, ws: ti.template(), v0):
    """acc[g] += Σ_j lanes[b + g·cols + j]·ws[v0 + j] for each accumulator g (a list of vectors as
    wide as the lanes', updated in place): the vectors of len(acc) consecutive gates (or groups of
    gates) of one unit block, with one pass over v for all of them."""
    accumulate_rows([acc], lanes, b, cols, ws, [v0])


@ti.func
def accumulate_rows(acc: ti.template(), lanes: ti.template(), b, cols, ws: ti.template(), v0s: ti.template()):
    """``accumulate_products`` for several batch rows at once: acc[k][g] += Σ_j lanes[b + g·cols +
    j]·ws[v0s[k] + j], each weight vector loaded once for every row k. A row's product is a stream of
    U from L2 behind Taichi's index arithmetic; rows that share it pay for the load once (LSTM
    hidden 128, 16 lanes, one thread, U·h of 4 rows: 6.9-7.2 µs together, 9.7-10.1 row by row).
    Each row's sums are added in the same order as alone."""
    for j in range(cols):
        vj = [ws[v0s[k] + j] for k in ti.static(range(len(acc)))]
        for g in ti.static(range(len(acc[0]))):
            w = lanes[b + g * cols + j]
            for k in ti.static(range(len(acc))):
                acc[k][g] += w * vj[k]


@ti.func
def add_products(terms: ti.template(), t, lanes: ti.template(), base, layout_gates: ti.template(),
                 first: ti.template(), count: ti.template(), cols, ws: ti.template(), v0, H):
    """terms[t + g·blocks + u] += (Σ_j M[(first + g)·H + Lu + m, j]·ws[v0 + j] for m < LANES), for
    g < count and every unit block u: products added into a row's input terms (``term_at``).

    M is the lane-packed matrix at ``base`` with ``layout_gates`` gates and ``cols`` columns (the
    kernels' path for any neurons, whose gate math then runs unit by unit: ``term_value``). Where a
    vector holds several gates, all of its gates are multiplied and the wanted ones kept."""
    group = ti.static(vector_gates(lanes))
    e0 = ti.static(first // group)                         # the vectors that hold gates first ..
    e1 = ti.static((first + count - 1) // group + 1)       # .. first + count - 1 of a unit block
    nb = lane_blocks(H)
    for u in range(nb):
        acc = [ti.Vector([0.0] * (group * LANES)) for _ in ti.static(range(e1 - e0))]
        accumulate_products(acc, lanes, base + (u * (layout_gates // group) + e0) * cols, cols, ws, v0)
        for g in ti.static(range(count)):
            at = t + g * nb + u   # (not +=: a global += is an atomic, which Taichi has no vector form of)
            terms[at] = terms[at] + gate_lanes(acc[(first + g) // group - e0], (first + g) % group)


@ti.func
def term_value(terms: ti.template(), t, g, i, H):
    """Unit i of gate g in a row's input terms from t (``term_at``): one float."""
    return terms[t + g * lane_blocks(H) + i // LANES][i % LANES]
