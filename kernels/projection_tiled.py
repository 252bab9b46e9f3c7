"""Input projection of a whole sequence as a tiled matrix product in shared memory (GPUs).

``project_inputs`` computes the same XW[n, o] = Σ_j W[o, j]·x[n, j] + b[o] (n = s·B + r, o =
g·H + i) with a thread per output channel and 8 rows: every multiply-add there reads its x
term from L1, so the product is bound by L1 loads (ncu, H200, GRU 2048 b4 t187: 5.5 TFLOP/s,
38% of a layer call). Here a block of 256 threads computes a tile of TILE_N rows by TILE_O
channels: for each slice of TILE_J inputs it copies the slice's x (TILE_N x TILE_J) and W
(TILE_J x TILE_O) to shared memory once, then each thread multiplies from there into its
ROWS_T x OUTS_T accumulators, so a term read from shared memory serves OUTS_T (or ROWS_T)
multiply-adds instead of one.

Thread layout: (tx, ty) = (tid % 16, tid // 16); the thread owns rows ty + 16·a and channels
tx + 16·c of its tile. A warp's W reads are then 16 consecutive words (no bank conflict) and
its x reads two words (broadcast); x's slice is stored transposed with a padded pitch
(TILE_N + 1), so the copy's stores, a row's TILE_J inputs, fall in distinct banks. Its output
stores are runs of 16 consecutive channels.

The grid is fixed (``grid.py``): 512 blocks take the tiles blk, blk + 512, ...; absent rows (past
T·B, or a row its sequence no longer has at that step) read row 0 of step 0 and are not stored.
It handles dense and nil gates (nil W rows are zero in the weight array); an identity input
(``use_layer_input_unit_transform_mode``) keeps ``project_inputs``. Like it, the launch also
writes zero initial states when the run has none. Shared memory: 12.4 KiB; block features only,
so GPUs only (the CPU keeps ``project_inputs`` and the lanes projection).
"""
import taichi as ti

from .frame import FRAME, INPUT, PARAMS, WEIGHTS, WORKSPACE
from .grid import GPU_ROW_BLOCKS
from .layout import F_BATCH, F_GATES, F_IN, F_OUT, F_P_BIAS, F_ROWS, F_STEPS, F_W, F_W_SJ, F_W_SO, F_WS_XW, \
    F_ZERO_STATE
from .projection import zero_initial_state

BLOCK = 256
SIDE = 16                 # threads along each side of a tile: BLOCK = SIDE x SIDE
ROWS_T = 4                # rows n a thread computes
OUTS_T = 8                # output channels o a thread computes
TILE_N = SIDE * ROWS_T    # 64 rows a tile
TILE_O = SIDE * OUTS_T    # 128 channels a tile
TILE_J = 16               # inputs a slice
X_PITCH = TILE_N + 1      # x's slice, stored [j][n], padded so a row's stores hit distinct banks
X_LOADS = TILE_N * TILE_J // BLOCK   # 4 x elements a thread copies per slice
W_LOADS = TILE_J * TILE_O // BLOCK   # 8 weights a thread copies per slice
GRID = GPU_ROW_BLOCKS     # 512 blocks


@ti.func
def row_start(frame: ti.template(), n, N, B, x_base, x_step, x_row):
    """(where row n's x starts, whether it is present): an absent row reads row 0 of step 0."""
    start = x_base
    present = 0
    if n < N:
        s = n // B
        r = n - s * B
        if r < frame[F_ROWS + s]:
            start = x_base + s * x_step + r * x_row
            present = 1
    return start, present


@ti.func
def fetch_slice(x: ti.template(), wts: ti.template(), frame: ti.template(), x_at, j0, n_in, o0, GH, so, sj, tid):
    """This thread's share of the slice of inputs j0 .. j0+TILE_J-1, read into registers (zero past
    n_in or GH): x of input cj for its X_LOADS rows (starts ``x_at``), and W_LOADS weights (input
    e // TILE_O, channel e % TILE_O of the slice, e = tid + BLOCK·a). All are loaded before any is
    stored: a shared store between them would wait for each load in turn (Taichi's pointers may
    alias), an L2 round trip per element."""
    cj = tid % TILE_J
    xg = ti.Vector([0.0] * X_LOADS, ti.f32)
    wg = ti.Vector([0.0] * W_LOADS, ti.f32)
    for a in ti.static(range(X_LOADS)):
        if j0 + cj < n_in:
            xg[a] = ti.cast(x[x_at[a] + j0 + cj], ti.f32)
    for a in ti.static(range(W_LOADS)):
        e = tid + BLOCK * a
        jj = e // TILE_O
        oo = e % TILE_O
        if j0 + jj < n_in and o0 + oo < GH:
            wg[a] = ti.cast(wts[frame[F_W] + (o0 + oo) * so + (j0 + jj) * sj], ti.f32)
    return xg, wg


@ti.kernel
def project_inputs_tiled(x: INPUT, x_base: ti.i32, x_step: ti.i32, x_row: ti.i32, ws: WORKSPACE, wts: WEIGHTS,
                         prm: PARAMS, frame: FRAME):
    ti.loop_config(block_dim=BLOCK)
    for t in range(GRID * BLOCK):
        blk = t // BLOCK
        tid = t % BLOCK
        xs = ti.simt.block.SharedArray((TILE_J * X_PITCH,), ti.f32)
        wsh = ti.simt.block.SharedArray((TILE_J * TILE_O,), ti.f32)
        B = frame[F_BATCH]
        N = frame[F_STEPS] * B
        n_in = frame[F_IN]
        GH = frame[F_GATES] * frame[F_OUT]
        so = frame[F_W_SO]
        sj = frame[F_W_SJ]
        o_tiles = (GH + TILE_O - 1) // TILE_O
        tiles = (N + TILE_N - 1) // TILE_N * o_tiles
        tx = tid % SIDE
        ty = tid // SIDE
        for tile in range((tiles - blk + GRID - 1) // GRID if blk < tiles else 0):   # uniform per block
            n0 = (blk + tile * GRID) // o_tiles * TILE_N
            o0 = (blk + tile * GRID) % o_tiles * TILE_O
            # the x elements this thread copies: rows cn + (BLOCK // TILE_J)·a, input cj of each slice
            cj = tid % TILE_J
            cn = tid // TILE_J
            x_at = ti.Vector([0] * X_LOADS, ti.i32)
            for a in ti.static(range(X_LOADS)):
                start, _ = row_start(frame, n0 + cn + (BLOCK // TILE_J) * a, N, B, x_base, x_step, x_row)
                x_at[a] = start
            acc = ti.Vector([0.0] * (ROWS_T * OUTS_T), ti.f32)
            xg, wg = fetch_slice(x, wts, frame, x_at, 0, n_in, o0, GH, so, sj, tid)
            for js in range((n_in + TILE_J - 1) // TILE_J):
                ti.simt.block.sync()   # the last slice's products are done with the buffers
                for a in ti.static(range(X_LOADS)):
                    xs[cj * X_PITCH + cn + (BLOCK // TILE_J) * a] = xg[a]
                for a in ti.static(range(W_LOADS)):
                    wsh[tid + BLOCK * a] = wg[a]
                ti.simt.block.sync()
                # the next slice's loads go out before this one's products (past n_in: zeros)
                xg, wg = fetch_slice(x, wts, frame, x_at, (js + 1) * TILE_J, n_in, o0, GH, so, sj, tid)
                for jj in range(TILE_J):   # not unrolled: hoisting every slice's shared loads spilled registers
                    xv = ti.Vector([0.0] * ROWS_T, ti.f32)
                    wv = ti.Vector([0.0] * OUTS_T, ti.f32)
                    for a in ti.static(range(ROWS_T)):
                        xv[a] = xs[jj * X_PITCH + ty + SIDE * a]
                    for c in ti.static(range(OUTS_T)):
                        wv[c] = wsh[jj * TILE_O + tx + SIDE * c]
                    for a in ti.static(range(ROWS_T)):
                        for c in ti.static(range(OUTS_T)):
                            acc[a * OUTS_T + c] += xv[a] * wv[c]
            for a in ti.static(range(ROWS_T)):
                n = n0 + ty + SIDE * a
                _, present = row_start(frame, n, N, B, x_base, x_step, x_row)
                if present != 0:
                    for c in ti.static(range(OUTS_T)):
                        o = o0 + tx + SIDE * c
                        if o < GH:
                            ws[frame[F_WS_XW] + n * GH + o] = acc[a * OUTS_T + c] + prm[frame[F_P_BIAS] + o]
        if frame[F_ZERO_STATE] != 0:
            n_state = B * frame[F_OUT]
            for q in range((n_state - t + GRID * BLOCK - 1) // (GRID * BLOCK) if t < n_state else 0):
                zero_initial_state(ws, frame, t + q * GRID * BLOCK)
