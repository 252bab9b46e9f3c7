"""Input projection of a whole sequence as a tiled matrix product in shared memory (GPUs).

``project_inputs`` computes the same XW[n, o] = Σ_j W[o, j]·x[n, j] + b[o] (n = s·B + r, o =
g·H + i) with a thread per output channel and 8 rows: every multiply-add there reads its x
term from L1, so the product is bound by L1 loads (H200, GRU 2048 b4 t187: 6.5 TFLOP/s, a third
of the layer call). Here a block of 256 threads computes a tile of rows by channels (64 x 128, or
128 x 128 for long sequences): for each slice of TILE_J inputs it copies the slice's x and W to
shared memory once, then each thread multiplies from there into its accumulators (4 or 8 rows x 8
channels), so a term read from shared memory serves 8 (or 4) multiply-adds instead of one.

Thread layout: (tx, ty) = (tid % 16, tid // 16); the thread owns rows ty·rows_t .. +rows_t-1 and
channels in runs of V = 4 (2 for the narrow tiles), tx·V + c and 64 + tx·V + c, of its tile, side
by side so that each run is one 128-bit shared load (LDS.128) rather than one load a term: a warp's
W reads are then 16 consecutive runs and its x reads two (broadcast). x's slice is stored
transposed with a pitch of rows + 4, which keeps each row's run 16-byte aligned (the copy's stores
then meet 2-way bank conflicts, once a slice, against the reads' 8 or 16). Output stores are
runs of 64 consecutive channels. Against the layout with a thread's rows and channels 16 apart
(one 32-bit load a term), H200, same process, µs a step: LSTM 1024 b4 t25 16.7 / 19.0, 4 layers
LSTM 512 b64 t100 94.3 / 95.8, LSTM 1536 b4 t50 24.6 / 24.9, GRU 2048 b4 t187 31.6 / 32.0.

Tile shapes (``TILE_SHAPES``, chosen by ``projection_tile``): on CUDA 128 x 128 (8 x 8 a thread,
slices of 8 inputs: half the x and W a thread holds in flight beside its 64 accumulators) where
there are enough rows to give every SM a tile, else 64 x 128; 64 x 32 and 32 x 32 give a
short sequence (few rows) more tiles than SMs, and waste fewer rows. Each shape compiles its own
kernel.

The grid is fixed (``grid.py``): 512 blocks take the tiles blk, blk + 512, ...; absent rows (past
T·B, or a row its sequence no longer has at that step) read row 0 of step 0 and are not stored.
It handles dense and nil gates (nil W rows are zero in the weight array); an identity input
(``use_layer_input_unit_transform_mode``) keeps ``project_inputs``. Like it, the launch also
writes zero initial states when the run has none. Shared memory: 12.4 KiB at most; block features only,
so GPUs only (the CPU keeps ``project_inputs`` and the lanes projection).
"""
import functools

import taichi as ti

from .frame import FRAME, INPUT, WEIGHTS, WORKSPACE, input_view, param
from .grid import GPU_WORKERS
from .knobs import knob
from .layout import F_BATCH, F_GATES, F_IN, F_OUT, F_P_BIAS, F_ROWS, F_STEPS, F_W, F_W_SJ, F_W_SO, F_WS_XW
from .projection import start_run

BLOCK = 256
SIDE = 16                 # threads along each side of a tile: BLOCK = SIDE x SIDE
GRID = GPU_WORKERS // BLOCK   # 512 blocks: the workers' grid, so start_run's share applies
# tile (rows x channels) -> (rows, channels) a thread computes: the tile is SIDE times that
# and the inputs a slice (TILE_J)
TILE_SHAPES = {"128x128": (8, 8, 8), "64x128": (4, 8, 16), "64x32": (4, 2, 16), "32x32": (2, 2, 16)}


def projection_tile(rows, channels, sms, large):
    """The tile shape of a tiled projection of ``rows`` (steps x batch) by ``channels`` (gates x
    hidden) on a GPU of ``sms`` SMs: the first of 128 x 128 (where ``large``: CUDA, where it was
    measured; and at least 128 rows) and 64 x 128 whose tiles are at least one an SM; else 64 x 32,
    four times the tiles of 64 x 128; 32 x 32 for 32 rows or fewer, where a 64-row tile would be
    half empty. H200, same process, median of 2 rounds, µs a step for 64x128 / 64x32 / 32x32: LSTM
    1024 b1 t25 19.5 / 17.1 / 14.9, LSTM 2048 b1 t25 32.8 / 28.7 / 26.9, LSTM 2048 b4 t25 (128
    tiles of 64x128) 48.0 / 46.0 / 51.6, LSTM 1024 b4 t25 21.0 / 21.1 / 20.5, LSTM 1536 b4 t50
    (192 tiles) 26.2 / 26.4 / 28.6, GRU 2048 b4 t187 35.4 / 37.9 / 41.5. For 128x128 / 64x128: 4
    layers LSTM 512 b64 t100 (800 tiles) 90.8 / 96.2, its projections alone 24.6 / 29.9;
    bidirectional b64 46.8 / 49.1, b16 18.2 / 19.3; GRU 2048 b4 t187 (288) 31.7 / 32.6; but LSTM
    1536 b4 t50 (96 tiles of 128x128) 28.4 / 25.7.
    ``MPSRNN_PROJECTION_TILE`` (a key of TILE_SHAPES) decides instead, for tests and A/B runs."""
    told = knob("MPSRNN_PROJECTION_TILE", tuple(TILE_SHAPES))
    if told:
        return told
    if rows <= 32:
        return "32x32"
    for tile in (("128x128", "64x128") if large and rows >= 128 else ("64x128",)):
        rows_t, outs_t, _ = TILE_SHAPES[tile]
        if -(-rows // (SIDE * rows_t)) * -(-channels // (SIDE * outs_t)) >= sms:
            return tile
    return "64x32"


@ti.func
def row_start(frame: ti.template(), n, N, B):
    """(where row n's x starts, whether it is present): an absent row reads row 0 of step 0."""
    x_base, x_step, x_row = input_view(frame)
    start = x_base
    present = 0
    if n < N:
        s = n // B
        r = n - s * B
        if r < frame[F_ROWS + s]:
            start = x_base + s * x_step + r * x_row
            present = 1
    return start, present


@functools.lru_cache(maxsize=None)
def projection_tiled_kernel(tile):
    """The tiled projection for tile shape ``tile`` (a key of TILE_SHAPES), built once."""
    rows_t, outs_t, TILE_J = TILE_SHAPES[tile]
    tile_n = SIDE * rows_t
    tile_o = SIDE * outs_t
    V = min(4, outs_t)              # channels a thread owns side by side (one 128-bit load: 4)
    x_pitch = tile_n + 4            # x's slice, stored [j][n]; padded, yet rows stay 16-byte aligned
    x_loads = tile_n * TILE_J // BLOCK   # x elements a thread copies per slice (rows_t)
    w_loads = TILE_J * tile_o // BLOCK   # weights a thread copies per slice (outs_t)

    @ti.func
    def channel(tx, c):
        """The tile's channel of this thread's c-th accumulator column: runs of V side by side."""
        return tx * V + c % V + SIDE * V * (c // V)

    @ti.func
    def fetch_slice(x: ti.template(), wts: ti.template(), frame: ti.template(), x_at, j0, n_in, o0, GH, so, sj,
                    tid):
        """This thread's share of the slice of inputs j0 .. j0+TILE_J-1, read into registers (zero
        past n_in or GH): x of input cj for its x_loads rows (starts ``x_at``), and w_loads weights
        (input e // tile_o, channel e % tile_o of the slice, e = tid + BLOCK·a). All are loaded
        before any is stored: a shared store between them would wait for each load in turn
        (Taichi's pointers may alias), an L2 round trip per element."""
        cj = tid % TILE_J
        xg = ti.Vector([0.0] * x_loads, ti.f32)
        wg = ti.Vector([0.0] * w_loads, ti.f32)
        for a in ti.static(range(x_loads)):
            if j0 + cj < n_in:
                xg[a] = ti.cast(x[x_at[a] + j0 + cj], ti.f32)
        for a in ti.static(range(w_loads)):
            e = tid + BLOCK * a
            jj = e // tile_o
            oo = e % tile_o
            if j0 + jj < n_in and o0 + oo < GH:
                wg[a] = ti.cast(wts[frame[F_W] + (o0 + oo) * so + (j0 + jj) * sj], ti.f32)
        return xg, wg

    def kernel(x: INPUT, ws: WORKSPACE, wts: WEIGHTS, frame: FRAME):
        ti.loop_config(block_dim=BLOCK)
        for t in range(GRID * BLOCK):
            blk = t // BLOCK
            tid = t % BLOCK
            xs = ti.simt.block.SharedArray((TILE_J * x_pitch,), ti.f32)
            wsh = ti.simt.block.SharedArray((TILE_J * tile_o,), ti.f32)
            B = frame[F_BATCH]
            N = frame[F_STEPS] * B
            n_in = frame[F_IN]
            GH = frame[F_GATES] * frame[F_OUT]
            so = frame[F_W_SO]
            sj = frame[F_W_SJ]
            o_tiles = (GH + tile_o - 1) // tile_o
            tiles = (N + tile_n - 1) // tile_n * o_tiles
            tx = tid % SIDE
            ty = tid // SIDE
            for tile_q in range((tiles - blk + GRID - 1) // GRID if blk < tiles else 0):   # uniform per block
                n0 = (blk + tile_q * GRID) // o_tiles * tile_n
                o0 = (blk + tile_q * GRID) % o_tiles * tile_o
                # the x elements this thread copies: rows cn + (BLOCK // TILE_J)·a, input cj of each slice
                cj = tid % TILE_J
                cn = tid // TILE_J
                x_at = ti.Vector([0] * x_loads, ti.i32)
                for a in ti.static(range(x_loads)):
                    start, _ = row_start(frame, n0 + cn + (BLOCK // TILE_J) * a, N, B)
                    x_at[a] = start
                acc = ti.Vector([0.0] * (rows_t * outs_t), ti.f32)
                xg, wg = fetch_slice(x, wts, frame, x_at, 0, n_in, o0, GH, so, sj, tid)
                for js in range((n_in + TILE_J - 1) // TILE_J):
                    ti.simt.block.sync()   # the last slice's products are done with the buffers
                    for a in ti.static(range(x_loads)):
                        xs[cj * x_pitch + cn + (BLOCK // TILE_J) * a] = xg[a]
                    for a in ti.static(range(w_loads)):
                        wsh[tid + BLOCK * a] = wg[a]
                    ti.simt.block.sync()
                    # the next slice's loads go out before this one's products (past n_in: zeros)
                    xg, wg = fetch_slice(x, wts, frame, x_at, (js + 1) * TILE_J, n_in, o0, GH, so, sj, tid)
                    for jj in range(TILE_J):   # not unrolled: hoisting every slice's shared loads spilled registers
                        xv = ti.Vector([0.0] * rows_t, ti.f32)
                        wv = ti.Vector([0.0] * outs_t, ti.f32)
                        for a in ti.static(range(rows_t)):
                            xv[a] = xs[jj * x_pitch + ty * rows_t + a]
                        for c in ti.static(range(outs_t)):
                            wv[c] = wsh[jj * tile_o + channel(tx, c)]
                        for a in ti.static(range(rows_t)):
                            for c in ti.static(range(outs_t)):
                                acc[a * outs_t + c] += xv[a] * wv[c]
                for a in ti.static(range(rows_t)):
                    n = n0 + ty * rows_t + a
                    _, present = row_start(frame, n, N, B)
                    if present != 0:
                        for c in ti.static(range(outs_t)):
                            o = o0 + channel(tx, c)
                            if o < GH:
                                bias = param(frame, frame[F_P_BIAS] + o)
                                ws[frame[F_WS_XW] + n * GH + o] = acc[a * outs_t + c] + bias
            start_run(ws, frame, t)

    kernel.__name__ = f"project_inputs_tiled{tile}"   # the name profilers show
    return ti.kernel(kernel)
