"""One recurrent step per launch, each gate row's dot product split across a GPU block.

The plain step kernels (``matrix_cells.py``) give each (row, unit) one thread and
a serial dot product over all H inputs. At H = 2816 that is 11 blocks of work for
a 132-SM GPU, and a step takes 2 ms. Here a block of 256 threads owns a *tile*:
``units`` neighbouring units, with every gate row of each, so that the block can
finish their state update itself. Each of the tile's R = gates × units rows is
split BLOCK / R ways over the inputs. Thread (split, row) sums the terms
j = split, split + BLOCK/R, ...

- **Coalescing.** With the GPU's transposed weights, the rows of one gate are
  neighbouring floats for a given j: 4 units make 16 bytes, half a sector, and a
  warp's load touches 8 such runs (two splits × 4 gates for the LSTM). So by
  default the kernel reads a copy of U (and a GRU's Vh) packed in its threads'
  order (``pack_tiles``): tile t's weight of row ``lane`` (gate lane // units,
  unit lane % units) at input j lies at t·H·R + j·R + lane, R rows a tile, so the
  block's 256 threads read 1 KiB of consecutive weights at each load.
- **Bandwidth.** H/units tiles keep every SM streaming weights.
- **Batch.** Each weight load serves a chunk of batch rows.

The partial sums meet in shared memory (a block barrier), then the tile's units
run their gate math (``gate_math.py``) and write the state to the next history
slot.

Where it runs. On Vulkan and Metal there is no grid barrier, so no persistent
kernel: this is their path, T launches in a captured graph, for layers too wide
for one block per sequence (``sequence_blocks.py``; for the LSTM already above
hidden ~192), at batch ≤ 32 (``scheduler/recurrence.py``). On CUDA it is the
path where the persistent kernel does not fit.

Kernels per step. The LSTM and the single gate take one. The GRU takes two,
because Uh·(r∘h0) needs every unit's r first. Dense LSTM peepholes (Vo·c1 needs
every new c) are left to the plain step kernels.

Shared memory: BLOCK × chunk floats (8 KiB at chunk 8), inside Metal's 32 KiB.
``units`` is a run-time argument (chosen by the scheduler, one compile for every
size). The batch chunk is a compile-time constant: ``tile_kernels(chunk, packed)``
builds one set per chunk size (1, 2, 4 or 8), reading the packed copy or U itself.
"""
import functools

import numpy as np
import taichi as ti

from .dots import tree_sum, w32
from .frame import FRAME, OUTPUT, WEIGHTS, WORKSPACE, memory_weights, recurrent_weights, vh_is_set
from .gate_math import gru_gates, gru_output, lstm_cell_state, lstm_output, single_gate_output
from .knobs import knob
from .layout import CELL_GRU, CELL_LSTM, CELL_SINGLE_GATE, F_PEEP, F_SLOT, F_WS_C, PEEP_DIAGONAL
from .matrix_cells import gru_scratch, step_slots
from .sequence_copy import store_output

BLOCK = 256
TILE_GRID = 1024   # blocks of the fixed grid (one device task, see grid.py); block b takes tiles
                   # b, b + TILE_GRID, ...
MAX_CHUNK = 8
GRU_GATES = "gru_gates"   # key of the GRU's first kernel in tile_kernels()
PHASE_GATES = {CELL_SINGLE_GATE: 1, CELL_LSTM: 4, GRU_GATES: 2, CELL_GRU: 1}   # gate rows of a tile's units
STEP_GATES = {CELL_SINGLE_GATE: 1, CELL_LSTM: 4, GRU_GATES: 3, CELL_GRU: 3}    # gates of the projected input


def tile_units():
    """Units per tile: 4. Eight would give whole 32-byte weight sectors per gate, but half as many
    tiles; on the H100 (Vulkan, 187-step GRU and 25-step LSTM at hidden 1024-2816) 4 was faster
    in 3 of 4 configurations, by 10-20%, and 4% slower in the fourth; 2 was slower everywhere. With
    the packed weights (whole sectors at 4 too) 8 lost again (H200 Vulkan, µs a step, 4 / 8: GRU
    2816 b1 t375 55.4 / 67.5, GRU 1536 b2 39.8 / 52.1, LSTM 2048 b4 t25 123.7 / 163.9).
    ``MPSRNN_TILE_UNITS`` (1, 2, 4 or 8) overrides, for benchmarks."""
    forced = knob("MPSRNN_TILE_UNITS", ("1", "2", "4", "8"))
    return int(forced) if forced else 4


def tile_chunk(batch):
    """Batch rows per pass: the next power of two, at most MAX_CHUNK (a larger batch takes passes)."""
    return min(MAX_CHUNK, 1 << (max(batch, 1) - 1).bit_length())


@ti.func
def tile_count(n_tiles, blk):
    """How many of tiles blk, blk + TILE_GRID, ... exist."""
    return (n_tiles - blk + TILE_GRID - 1) // TILE_GRID if blk < n_tiles else 0


def tiles_packed():
    """Whether the tiles kernels read U from its copy in their threads' order (``pack_tiles``):
    by default yes. ``MPSRNN_TILE_LAYOUT=packed|plain`` decides, for A/B benchmarks."""
    return knob("MPSRNN_TILE_LAYOUT", ("packed", "plain")) != "plain"


def pack_tiles(phases, H, units):
    """The matrices of a layer's phases, ``phases`` = [(matrix (gates·H, H), gates), ...] (the
    LSTM's U with 4 gates; the GRU's [Uz; Ur] with 2, Uh with 1, then Vh where set), each in tiles
    of ``units`` units: the weight of gate g, unit t·units + u, input j at t·H·R + j·R + g·units + u
    (R = gates·units), zero past H; phase after phase, a phase of g gates taking
    ceil(H / units)·H·g·units elements."""
    nt = -(-H // units)
    parts = []
    for matrix, gates in phases:
        padded = np.zeros((gates, nt * units, H), matrix.dtype)
        padded[:, :H] = matrix.reshape(gates, H, H)
        parts.append(padded.reshape(gates, nt, units, H).transpose(1, 3, 0, 2).reshape(-1))
    return np.concatenate(parts)


def tile_loads(chunk):
    """Weight loads a tiles thread issues together on batch chunks of ``chunk`` rows: 8 on a chunk of
    2, else 4. H200 Vulkan, µs a step, 4 / 8: GRU 2816 b2 t375 104.1 / 82.2, GRU 2048 b2 61.9 /
    59.5; but GRU 2816 b1 61.8 / 64.1, LSTM 2048 b4 t25 126.4 / 141.6 (GRU 2560 b1 59.6 / 54.8).
    ``MPSRNN_TILE_LOADS=4|8`` decides, for A/B benchmarks."""
    forced = knob("MPSRNN_TILE_LOADS", ("4", "8"))
    return int(forced) if forced else 8 if chunk == 2 else 4


@functools.lru_cache(maxsize=None)
def tile_kernels(chunk, packed=True, loads=4):
    """{cell kind: its step kernel; GRU_GATES: the GRU's first kernel, which runs before the GRU's
    own}, for batch chunks of ``chunk`` rows, reading U (and Vh) from the packed copy ``tw``
    (``pack_tiles``) where ``packed``, else from ``wts`` (``tw`` is then not read), ``loads`` loads
    at a time (``tile_loads``). Every kernel takes the same arguments."""

    @ti.func
    def row_starts(vec, B, H, b0):
        """Where batch row b0 + k of the chunk starts in the workspace (rows past B read row B-1;
        their sums are never used)."""
        start = ti.Vector([0] * chunk, ti.i32)
        for k in ti.static(range(chunk)):
            start[k] = vec + ti.min(b0 + k, B - 1) * H
        return start

    @ti.func
    def weight(wts: ti.template(), tw: ti.template(), k):
        """Element k of the weights the kernels read: the packed copy, or U's array."""
        w = 0.0
        if ti.static(packed):
            w = w32(tw, k)
        else:
            w = w32(wts, k)
        return w

    @ti.func
    def partials(ws: ti.template(), wts: ti.template(), tw: ti.template(), red: ti.template(), m0, mso, msj, x1,
                 m2, m2so, m2sj, x2, with2: ti.template(), gates, units, tile, tid, H):
        """red[tid, k] = this thread's share of Σ_j M(o, j)·ws[x1[k] + j] (+ M2(i, j)·ws[x2[k] + j]
        with ``with2``), for its row o = g·H + i of the tile and its split of j. ``loads`` weight
        loads are issued together, their products added as a tree, and each serves every batch row
        of the chunk. M at m0 and M2 at m2 in ``wts``, with strides (mso, msj) a row and an input;
        or with ``packed`` M and M2 are the phase's matrices at m0 and m2 in the packed copy ``tw``
        (the strides unused)."""
        rows_r = gates * units
        n_split = BLOCK // rows_r
        lane = tid % rows_r
        split = tid // rows_r
        i = tile * units + lane % units
        acc = ti.Vector([0.0] * chunk, ti.f32)
        if i < H:
            # packed: the tile's rows side by side, rows_r apart an input (the second matrix is the
            # GRU's Vh, one gate: rows_r = units); else the rows at U's (and Vh's) own strides
            row = m0 + tile * H * rows_r + lane if ti.static(packed) else m0 + ((lane // units) * H + i) * mso
            row2 = m2 + tile * H * rows_r + lane if ti.static(packed) else m2 + i * m2so
            sj = rows_r if ti.static(packed) else msj
            sj2 = rows_r if ti.static(packed) else m2sj
            n = (H - split + n_split - 1) // n_split   # terms j = split + q * n_split, q < n
            for qg in range(n // loads):
                j = split + qg * loads * n_split
                w = ti.Vector([weight(wts, tw, row + (j + e * n_split) * sj) for e in ti.static(range(loads))])
                for k in ti.static(range(chunk)):
                    acc[k] += tree_sum(ti.Vector([w[e] * ws[x1[k] + j + e * n_split]
                                                  for e in ti.static(range(loads))]))
                if ti.static(with2):
                    v = ti.Vector([weight(wts, tw, row2 + (j + e * n_split) * sj2) for e in ti.static(range(loads))])
                    for k in ti.static(range(chunk)):
                        acc[k] += tree_sum(ti.Vector([v[e] * ws[x2[k] + j + e * n_split]
                                                      for e in ti.static(range(loads))]))
            for q in range(n - n % loads, n):
                j = split + q * n_split
                w = weight(wts, tw, row + j * sj)
                for k in ti.static(range(chunk)):
                    acc[k] += w * ws[x1[k] + j]
                if ti.static(with2):
                    v = weight(wts, tw, row2 + j * sj2)
                    for k in ti.static(range(chunk)):
                        acc[k] += v * ws[x2[k] + j]
        for k in ti.static(range(chunk)):
            red[tid * chunk + k] = acc[k]

    @ti.func
    def reduced(red: ti.template(), gates, units, g, iu, k):
        """The whole product of gate g, unit iu of the tile, batch row k of the chunk: the sum of its
        splits, in a fixed order."""
        rows_r = gates * units
        total = 0.0
        for split in range(BLOCK // rows_r):
            total += red[(split * rows_r + g * units + iu) * chunk + k]
        return total

    @ti.func
    def tile_pairs(tid, tile, units, b0):
        """This thread's (unit in the tile, row in the chunk, unit i, batch row b) for the gate math,
        and whether it has one (threads tid < units * chunk do)."""
        iu = tid // chunk
        k = tid % chunk
        return iu, k, tile * units + iu, b0 + k, tid < units * chunk

    @ti.func
    def finish_unit(phase: ti.template(), ws: ti.template(), wts: ti.template(), frame: ti.template(),
                    red: ti.template(), out: ti.template(), s, units, iu, k, i, b):
        """The gate math of unit i, batch row b, from the reduced products: the new state (a row
        absent at this step keeps its own), or for the GRU's first phase its scratch vectors."""
        B, H, rows, xw, h0, h1 = step_slots(frame, s, ti.static(STEP_GATES[phase]))
        e = b * H + i
        if ti.static(phase == GRU_GATES):   # z and r of a present row, into z, r∘h0 and z∘h0
            sz, srh, szh = gru_scratch(frame, B, H)
            x3 = xw + b * 3 * H + i
            z, rg = gru_gates(frame, i, ws[x3] + reduced(red, 2, units, 0, iu, k),
                              ws[x3 + H] + reduced(red, 2, units, 1, iu, k))
            ws[sz + e] = z
            ws[srh + e] = rg * ws[h0 + e]
            ws[szh + e] = z * ws[h0 + e]
        elif b < rows:
            if ti.static(phase == CELL_SINGLE_GATE):
                ws[h1 + e] = single_gate_output(frame, i, ws[xw + e] + reduced(red, 1, units, 0, iu, k))
            elif ti.static(phase == CELL_GRU):
                sz, _, _ = gru_scratch(frame, B, H)
                ph = ws[xw + b * 3 * H + 2 * H + i] + reduced(red, 1, units, 0, iu, k)
                ws[h1 + e] = gru_output(frame, i, ph, ws[sz + e], ws[h0 + e])
            else:
                v0, _, _ = memory_weights(frame)
                c0 = frame[F_WS_C] + s * frame[F_SLOT]
                x4 = xw + b * 4 * H + i
                a_i = ws[x4] + reduced(red, 4, units, 0, iu, k)
                a_f = ws[x4 + H] + reduced(red, 4, units, 1, iu, k)
                a_c = ws[x4 + 2 * H] + reduced(red, 4, units, 2, iu, k)
                a_o = ws[x4 + 3 * H] + reduced(red, 4, units, 3, iu, k)
                c_old = ws[c0 + e]
                diagonal = frame[F_PEEP] == PEEP_DIAGONAL
                if diagonal:
                    a_i += w32(wts, v0 + i) * c_old
                    a_f += w32(wts, v0 + H + i) * c_old
                    a_c += w32(wts, v0 + 2 * H + i) * c_old
                c_new = lstm_cell_state(frame, i, a_i, a_f, a_c, c_old)
                if diagonal:
                    a_o += w32(wts, v0 + 3 * H + i) * c_new
                ws[c0 + frame[F_SLOT] + e] = c_new
                ws[h1 + e] = lstm_output(frame, i, a_o, c_new)
            store_output(out, frame, s, b, i, ws[h1 + e])
        else:
            ws[h1 + e] = ws[h0 + e]
            if ti.static(phase == CELL_LSTM):
                c0 = frame[F_WS_C] + s * frame[F_SLOT]
                ws[c0 + frame[F_SLOT] + e] = ws[c0 + e]

    def step_kernel(phase):
        """The kernel of one phase: every block takes tiles blk, blk + TILE_GRID, ...; per batch chunk,
        the partial products, a barrier, the gate math of the tile's units, a barrier."""
        gates = PHASE_GATES[phase]
        step_gates = STEP_GATES[phase]

        @ti.kernel
        def kernel(ws: WORKSPACE, wts: WEIGHTS, frame: FRAME, out: OUTPUT, tw: WEIGHTS, s: ti.i32, units: ti.i32):
            ti.loop_config(block_dim=BLOCK)
            for t in range(ti.static(TILE_GRID * BLOCK)):
                blk = t // BLOCK
                tid = t % BLOCK
                red = ti.simt.block.SharedArray((BLOCK * chunk,), ti.f32)
                B, H, rows, _, h0, _ = step_slots(frame, s, step_gates)
                u0, uso, usj = recurrent_weights(frame)
                vh, vso, vsj = memory_weights(frame)
                mu = u0   # the phase's rows of U: the GRU's second phase takes Uh, after Uz and Ur
                if ti.static(phase == CELL_GRU):
                    mu = u0 + 2 * H * uso
                if ti.static(packed):   # in the packed copy (pack_tiles): Uh after [Uz; Ur], Vh after Uh
                    gate_tiles = (H + units - 1) // units * H * units   # elements of one gate's tiles
                    mu = 0
                    if ti.static(phase == CELL_GRU):
                        mu = 2 * gate_tiles
                        vh = 3 * gate_tiles
                _, srh, szh = gru_scratch(frame, B, H)
                n_rows = B   # the GRU's first phase serves only the present rows; the others also carry the absent ones
                if ti.static(phase == GRU_GATES):
                    n_rows = rows
                for tq in range(tile_count((H + units - 1) // units, blk)):
                    tile = blk + tq * TILE_GRID
                    for bc in range((n_rows + chunk - 1) // chunk):
                        b0 = bc * chunk
                        if b0 < rows:
                            if ti.static(phase == CELL_GRU):   # Uh·(r∘h0) + Vh·(z∘h0), Vh's where set
                                x1 = row_starts(srh, B, H, b0)
                                if vh_is_set(frame):
                                    partials(ws, wts, tw, red, mu, uso, usj, x1, vh, vso, vsj,
                                             row_starts(szh, B, H, b0), True, gates, units, tile, tid, H)
                                else:
                                    partials(ws, wts, tw, red, mu, uso, usj, x1, 0, 0, 0, x1, False, gates, units,
                                             tile, tid, H)
                            else:
                                x1 = row_starts(h0, B, H, b0)
                                partials(ws, wts, tw, red, mu, uso, usj, x1, 0, 0, 0, x1, False, gates, units, tile,
                                         tid, H)
                        ti.simt.block.sync()
                        iu, k, i, b, mine = tile_pairs(tid, tile, units, b0)
                        if mine and i < H and b < n_rows:
                            finish_unit(phase, ws, wts, frame, red, out, s, units, iu, k, i, b)
                        ti.simt.block.sync()

        return kernel

    return {phase: step_kernel(phase) for phase in PHASE_GATES}
