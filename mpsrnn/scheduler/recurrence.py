"""Which kernels run a layer's recurrence, chosen per arch and shape.

* ``step``: ``kernels/matrix_cells``, one fused step per launch, T launches
  that differ only in their step argument (any arch, any size; the general
  path and the fallback).
* ``lanes``: ``kernels/sequence_lanes``, the whole layer in one launch (input
  projection included), one thread per sequence, on weights packed 8 output rows
  wide so the products run as vector code (the CPU path: no per-step launch or
  task cost).
* ``rows``: ``kernels/sequence_rows``, the same schedule on the plain weight
  layout with scalar dot products (any arch; the CPU's path before ``lanes``).
* ``tiles``: ``kernels/sequence_tiles``, one step per launch like ``step``, but
  each gate row's dot product is split across a GPU block, so wide layers keep
  every SM streaming weights (GPUs: Vulkan's and Metal's path for wide layers,
  CUDA's where the persistent kernel does not fit).
* ``blocks``: ``kernels/sequence_blocks``, the whole sequence in one launch, one
  GPU block per sequence with the state in shared memory (small hidden sizes;
  CUDA, Vulkan, Metal: needs only block barriers).
* ``registers``: ``kernels/sequence_registers``, the same schedule as ``blocks`` for layers whose
  recurrent weights fit one block's registers (LSTM and GRU up to hidden 64, the single gate up to
  128): each thread holds its share of U for the whole launch.
* ``warp``: ``kernels/sequence_warp``, the same schedule on blocks of one warp, whose lanes hold
  their units' whole gate rows (LSTM and GRU up to hidden 32, the single gate up to 64; on CUDA
  also the LSTM and GRU up to 64, two lanes a unit on four warps): a step without partial sums
  through shared memory, on one barrier.
* ``persistent``: ``kernels/sequence_persistent``, the whole sequence in one
  launch over every SM, a grid barrier per step (CUDA; larger hidden sizes).
* ``spread``: ``kernels/sequence_spread``, the same schedule over just enough SMs to hold U in
  their registers, one or two blocks an SM (CUDA; past the registers kernel's sizes, usual
  neurons).
* ``split``: ``kernels/sequence_split``, U in registers too, but split across blocks by its inputs
  as well as its rows, so a large batch takes one pass a step, one or two blocks an SM (CUDA; usual
  neurons).

:func:`choose_recurrence` picks the default; ``MPSRNN_RECURRENCE`` forces one
where it applies (benchmarks compare them; tests run each against the reference).
"""
import os

from ..backend import current_arch
from ..kernels.exchange import exchange_fits
from ..kernels.knobs import knob, one_or_two, switch
from ..kernels.layout import CELL_GRU, F_INPUT_MODE, INPUT_IDENTITY
from ..kernels.matrix_cells import STEP_KERNELS, lstm_peephole_output_step
from ..kernels.projection import project_inputs, project_inputs_lanes
from ..kernels.projection_tiled import projection_tile, projection_tiled_kernel
from ..kernels.sequence_blocks import BLOCK_KERNELS, MAX_HIDDEN
from ..kernels.sequence_lanes import PAIR, lanes_kernel, splits_row
from ..kernels.sequence_lanes_pipelined import pipelined_kernel
from ..kernels.sequence_persistent import (
    kept_counts,
    persistent_chunk,
    persistent_fits,
    persistent_kernel,
    persistent_layout,
    persistent_loads,
    persistent_per_sm,
    persistent_fold,
    persistent_kept,
    persistent_rows,
    persistent_zigzag,
    quads_outgrow_l2,
    resident_terms,
)
from ..kernels.sequence_registers import CHUNK, held_rows, registers_kernel, registers_shape
from ..kernels.sequence_rows import ROW_KERNELS
from ..kernels.sequence_split import (
    PROJECT_APART,
    PROJECT_CHUNKS,
    PROJECT_ROWS,
    WIDE,
    paired_split_kernel,
    split_kernel,
    split_partials,
    split_partials_chunks,
    split_shape,
)
from ..kernels.sequence_spread import BLOCK as SPREAD_BLOCK
from ..kernels.sequence_spread import (
    MAX_ROWS,
    MEMORY_ROWS,
    WIDE_BLOCK,
    batch_groups,
    memory_rows,
    paired_spread_kernel,
    rows_packed,
    spread_kernel,
    spread_shape,
)
from ..kernels.sequence_tiles import GRU_GATES, tile_chunk, tile_kernels, tile_loads, tile_units, tiles_packed
from ..kernels.sequence_warp import warp_kernel, warp_shape, warp_stores_apart

SMALL_HIDDEN = 128   # up to here one block per sequence beats spreading a step over the GPU


def weights_transposed(arch):
    """Weight layout for ``arch``: transposed for GPUs (coalesced), row-major on the CPU.
    ``MPSRNN_WEIGHT_LAYOUT`` (``rows`` or ``transposed``) overrides, so tests cover both."""
    forced = knob("MPSRNN_WEIGHT_LAYOUT", ("rows", "transposed"))
    if forced:
        return forced == "transposed"
    return arch != "cpu"


def packs_lanes(arch):
    """Whether layers on ``arch`` also keep their weights lane-packed (kernels/lanes.py): the CPU."""
    return arch == "cpu"


def available_recurrences(arch):
    """The recurrence kernels that can run on ``arch``."""
    if arch == "cpu":
        return ["step", "rows", "lanes"]
    if arch == "cuda":
        return ["step", "rows", "blocks", "registers", "warp", "tiles", "persistent", "spread", "split"]
    return ["step", "rows", "blocks", "registers", "warp", "tiles"]


def applies(name, arch, cell):
    """Whether recurrence ``name`` can run this layer (a forced one that cannot falls back to the default)."""
    if name == "blocks":
        return cell.n_out <= MAX_HIDDEN
    if name == "registers":
        # CUDA: only layers whose rows all stay in registers. Rows read from memory ran slower there
        # than the plain block kernel (H200, µs a step: LSTM 128 b1 9.1 against 5.4, LSTM 96 b2 5.7
        # against 3.8), and one test run crashed on them, not yet explained; on Vulkan they run 3x
        # faster than the block kernel (LSTM 128 b1 4.8 against 15.0) and pass the tests
        shape = _registers_shape(cell, arch)
        return shape is not None and (arch != "cuda" or shape[0] <= held_rows(shape[1]))
    if name == "warp":
        return _warp_shape(cell, arch) is not None
    if name == "lanes":
        return cell.lanes is not None
    if name == "tiles":
        return not cell.dense_peepholes
    if name == "persistent":
        return arch == "cuda" and persistent_fits(cell.kind, cell.header_peep, cell.n_out, _grid(cell))
    if name == "spread":
        return (arch == "cuda" or arch == "vulkan" and spread_on_vulkan()) and _spread_shape(cell, 1) is not None
    if name == "split":
        return arch == "cuda" and _split_shape(cell, 1) is not None
    return True


def choose_recurrence(arch, cell, steps, batch):
    forced = knob("MPSRNN_RECURRENCE", available_recurrences(arch), f" on {arch}")
    if forced and applies(forced, arch, cell):
        return forced
    if arch == "cpu":
        return "lanes"
    if arch == "metal":
        # Metal has not run the block kernel yet (no Mac here): plain kernels until `mpsrnn check
        # --arch metal`, which forces every path against the reference, has passed on one
        return "step"
    if warp_by_default(cell, arch):
        return "warp"
    if arch == "vulkan" and vulkan_spreads(cell, batch):
        return "spread"
    if applies("registers", arch, cell):
        # the weights fit one block's registers (H200, µs a step against the plain block kernel:
        # CUDA LSTM 64 b1 1.0 / 2.2, GRU 64 b1 0.8 / 3.2, single gate 128 b4 0.6 / 1.8; Vulkan LSTM 64
        # b1 1.9 / 3.6, LSTM 128 b1 with 6 of 8 rows read from memory 4.8 / 15.0)
        return "registers"
    small_gru = cell.kind == CELL_GRU and cell.n_out <= SMALL_HIDDEN   # (split: not measured there)
    if (arch == "cuda" and split_min_batch(cell) <= batch <= SPREAD_MAX_BATCH and not small_gru
            and applies("split", arch, cell)):
        # U fits the SMs' registers split by its inputs too: the batch in one pass a step. H200,
        # LSTM 512 t100, µs a step, split against spread (same process): b32 16.6 / 18.0, b64
        # 24.7 / 32.4, b128 46.3 / 63.1, 4 layers b64 97.5 / 124.6, bidirectional b64 49.7 (two
        # launches) / 59.1 (paired); but b16 13.4 / 11.9. The GRU's (conventional, t100): GRU 512
        # b16 18.3 / 30.4, b32 28.9 / 55.7, b64 43.0 / 106.1, b128 78.6 / 202.6, bidirectional b64
        # 56.2 / 117.4, GRU 256 b16 14.8 / 19.1, b64 37.3 / 62.7; but GRU 512 b8 17.4 / 18.0,
        # GRU 256 b8 13.5 / 12.3, GRU 512 b4 15.9 / 11.6. On two blocks an SM (``split_per_sm``),
        # against spread (LSTM) or persistent (GRU): LSTM 1024 b16 25.0 / 29.6, b64 64.7 / 102.2, b128
        # 128.0 / 199.7 (64 inputs a thread); LSTM 768 b16 19.3 / 25.4, b64 48.6 / 83.6; GRU 1024
        # b16 38.8 / 46.0, b64 82.4 / 160.4
        return "split"
    if arch == "cuda" and not small_gru and split_saves_a_dispatch(cell, steps, batch):
        return "split"
    if (arch == "cuda" and batch <= SPREAD_MAX_BATCH and applies("spread", arch, cell)
            and (not small_gru or small_gru_spreads(cell, steps, batch)) and spread_beats_persistent(cell, batch)):
        # U fits a few SMs' registers. H200, µs a step, spread against the block or persistent kernel
        # (same process): LSTM 128 b1 2.6 / 5.5, b4 3.4 / 5.7, b8 4.5 / 5.9; LSTM 192 b4 4.0 / 5.9;
        # LSTM 256 b1 3.6 / 5.2, b4 t150 5.7 / 6.9; LSTM 512 b1 t400 4.3 / 7.7, b4 t25 12.2 / 14.9;
        # single gate 256 b4 3.8 / 4.6. Since its h copy issues every load at once, LSTM 512 t100
        # b16 14.0 / 27.4, b64 45 / 100, b128 86-88 (a pass of 8 rows each); 4 layers b64 208 / 397
        # The GRU's (two grid barriers a step), against persistent: GRU 512 b4 t100 11.9 / 15.0; up
        # to SMALL_HIDDEN the block kernel beat its grid barriers (GRU 128 b8 t1000 6.5 / 8.2; b2 t50
        # 8.3 / 7.1) but not its tagged words (small_gru_spreads). On two blocks an SM
        # (``spread_per_sm``), against persistent: LSTM 1024 b1 t25 12.8 / 14.1, b4 15.1 / 18.4, b16 t100 29.3 / 31.6, LSTM 768 b4
        # t100 9.4 / 11.7, GRU 1024 b1 t300 9.4 / 11.5 (but not the GRU's larger batches:
        # spread_beats_persistent); bidirectional b16 paired, two blocks an SM against one, LSTM 512 15.8 /
        # 17.1, LSTM 640 29.4 / 37.2
        return "spread"
    if cell.n_out <= SMALL_HIDDEN:
        return "blocks"
    if arch != "cuda" and applies("blocks", arch, cell):
        # without a grid barrier (Vulkan, Metal): one block per sequence up to its limit, unless a
        # step is so large that the per-step tiles kernels are faster
        if not (applies("tiles", arch, cell) and block_step_outweighs_dispatches(cell)):
            return "blocks"
    if applies("persistent", arch, cell):
        return "persistent"
    if applies("tiles", arch, cell) and batch <= TILES_MAX_BATCH:
        return "tiles"
    return "step"


SPREAD_MAX_BATCH = 128    # the largest batch measured (see choose_recurrence)
SPLIT_MIN_BATCH = 32      # from here the split kernel's one pass a step beats spread's passes
SPLIT_MIN_BATCH_MANY_PASSES = 16   # the same where spread's passes are many: see split_min_batch
SPLIT_MIN_BATCH_GRU = 8   # the GRU's, its partial sums added atomically: see split_min_batch
SPLIT_MIN_BATCH_GRU_TWO_AN_SM = 2   # the same where spread takes two blocks an SM
TILES_MAX_BATCH = 32        # above this the plain step kernel's thread per (row, unit) fills the GPU and wins:
                            # Vulkan, LSTM 512 t100 bidirectional: b16 tiles 142 µs a step against 294 for
                            # step; b64 397 against 331 (the tiles kernel takes the batch 8 rows a pass)
BLOCK_STEP_MACS = 150_000   # a block-per-sequence step of about this many multiply-adds takes as long as
                            # one per-step dispatch on Vulkan (H100: LSTM 192 b4, blocks 33.0 µs a step,
                            # tiles 33.7; LSTM 256 b1, 63.1 against 31.5)


def split_min_batch(cell):
    """The smallest batch from which the split kernel is the default: SPLIT_MIN_BATCH, or
    SPLIT_MIN_BATCH_MANY_PASSES where the kernel it replaces takes many passes a step: the layers
    whose split threads hold 64 inputs (spread: 4 batch rows a pass at LSTM 1024). H200, t100 b16,
    µs a step, split / the other: LSTM 768 19.3 / 25.4, LSTM 1024 25.0 / 29.6; but LSTM 640, 32
    inputs on two blocks an SM, 17.0 / 16.1 (the single gate at 64 inputs: not measured). The GRU
    (spread: two phases of passes; persistent: U from L2), its partial sums added atomically
    (``split_atomic``), from SPLIT_MIN_BATCH_GRU, or SPLIT_MIN_BATCH_GRU_TWO_AN_SM where spread
    takes two blocks an SM. H200, µs a step, split / spread / persistent: GRU 1024 t1500 b2 10.7 /
    15.5 / 12.5, b4 11.7 / 26.2 / 16.6, t300 b1 9.5 / 9.0; GRU 768 t100 b2 11.9 / 15.4 / 13.8; but
    where spread takes one block an SM, GRU 256 t100 b2 10.8 / 8.5, b4 11.6 / 9.1, b8 12.9 / 12.6,
    GRU 512 b4 10.6 / 10.9, b8 12.6 / 17.0."""
    shape = _split_shape(cell, 1)
    wide = shape is not None and shape[4] != CHUNK
    if cell.kind == CELL_GRU:
        spread = _spread_shape(cell, 1)
        two_an_sm = spread is not None and spread[1] > _sms()
        return SPLIT_MIN_BATCH_GRU_TWO_AN_SM if two_an_sm else SPLIT_MIN_BATCH_GRU
    return SPLIT_MIN_BATCH_MANY_PASSES if wide else SPLIT_MIN_BATCH


def block_step_outweighs_dispatches(cell):
    """Whether one block's serial share of a step (all of U·h on one SM) costs more than the tiles
    path's dispatches for that step (Vulkan: ~31 µs each, host-bound): true for the LSTM above
    hidden ~192; never for the GRU (two dispatches a step) or the single gate within the block limit."""
    macs = cell.gates * cell.n_out * cell.n_out
    return macs > BLOCK_STEP_MACS * (2 if cell.kind == CELL_GRU else 1)


def _registers_shape(cell, arch):
    """(gate rows a thread, threads a block) of the registers kernel for this layer on ``arch``, or
    None where it does not fit."""
    return registers_shape(cell.kind, cell.header_peep, cell.n_out, cell.standard, arch == "cuda")


def warp_by_default(cell, arch):
    """Whether the warp kernel is the default on ``arch`` (CUDA, Vulkan): for the layers whose lanes
    own one unit each (hidden up to 32) or, with CUDA's warp shuffles, share one between two lanes
    (the LSTM and GRU of hidden 33-64). H200, same process, median of 2 rounds, µs a step, warp /
    registers: single gate 32 b1 t672 0.40 / 0.52, GRU 32 b1 t1000 0.53 / 0.67, b4 0.52 / 0.67; the
    LSTM 32 b1 t2000 with its stores in a second warp (``warp_stores_apart``) 0.50 / 0.56 (0.54
    without: one warp issues its 128 multiply-adds alone, where the registers kernel spreads them
    over four); two lanes a unit, LSTM 64 b1 t1000 0.63 / 0.77, b8 0.66 / 0.73, LSTM 48 b1 0.66 /
    0.75, GRU 64 b1 0.73 / 0.83. A lane of two units lost (single gate 64 b1 t96 2.59 / 2.05, b4
    t1000 0.85 / 0.66). The H200's Vulkan, the same way:
    LSTM 32 b1 t2000 0.90 / 1.03, single gate 32 b1 t672 1.60 / 1.75, GRU 32 b1 t1000 1.46 / 1.46,
    and a lane of two units lost there too (single gate 64 b4 t1000 1.45 / 1.35). Not on Metal
    until it has run there (``choose_recurrence``)."""
    shape = _warp_shape(cell, arch)
    return arch in ("cuda", "vulkan") and shape is not None and shape[0] == 1


def _warp_shape(cell, arch):
    """(units a lane, lanes a unit) of the warp kernel for this layer on ``arch``, or None where it
    does not fit (two lanes a unit: CUDA's warp shuffles only)."""
    return warp_shape(cell.kind, cell.header_peep, cell.n_out, cell.standard, arch == "cuda")


def _sms():
    """SMs a persistent grid may occupy (1 without CUDA)."""
    from ..backend import gpu_multiprocessors
    return gpu_multiprocessors()


def _split_shape(cell, batch):
    """(units a group, groups, splits, batch rows a pass, width) of the split kernel, or None where it
    does not fit: one block an SM where that holds the layer, else two (``split_per_sm``), chunks of
    32 inputs a thread, else (LSTM, single gate) of 64."""
    most = split_per_sm()
    for width, per_sm in ((CHUNK, 1), (CHUNK, 2), (WIDE, 2)):
        if per_sm <= most:
            shape = split_shape(cell.kind, cell.header_peep, cell.n_out, cell.standard, batch,
                                _sms() * per_sm, width)
            if shape is not None:
                return shape
    return None


SPLIT_PER_SM = 2   # blocks of the split kernel an SM may hold (measured: choose_recurrence)
SPLIT_HALVES_MIN_BATCH = 32   # H200 t100 µs a step, halves / one: LSTM 512 b32 16.0 / 16.3, b64 23.0 / 24.3


def split_per_sm():
    """Blocks of the split kernel an SM may hold: 2 lets layers too large for one block an SM (on 132
    SMs the GRU 705-1024, the LSTM 513-1024, the single gate 1025-2048) split over two, each a half
    of the register file (256 threads x 128 registers). ``MPSRNN_SPLIT_PER_SM=1|2`` decides, for A/B
    benchmarks."""
    return one_or_two("MPSRNN_SPLIT_PER_SM") or SPLIT_PER_SM


def split_on_one_block_an_sm(cell, batch):
    """Whether the layer's split grid takes at most one block an SM, so that an SM has room for a
    second block: a second copy of the grid (``split_halves``), or the other direction's grid
    (``pair_directions``)."""
    groups, splits = _split_shape(cell, batch)[1:3]
    return groups * splits <= _sms()


def split_halves(cell, batch):
    """2 where the split kernel holds its weights twice, each copy taking half the batch rows
    (``sequence_split.split_kernel``): a layer whose grid fits one block an SM, where two may share
    an SM, from batch SPLIT_HALVES_MIN_BATCH; else 1. ``MPSRNN_SPLIT_HALVES=1|2`` decides where the
    grid fits, for tests and A/B benchmarks."""
    forced = one_or_two("MPSRNN_SPLIT_HALVES")
    if not split_on_one_block_an_sm(cell, batch) or split_per_sm() < 2:
        return 1
    return forced or (2 if batch >= SPLIT_HALVES_MIN_BATCH else 1)


SPLIT_ATOMIC_MAX_BATCH = 32       # H200 t100, µs a step, atomic / apart (same process, median of 2 rounds):
SPLIT_ATOMIC_MAX_BATCH_GRU = 64   # LSTM 1024 b16 20.1 / 24.8, b32 32.6 / 35.5, b64 60.3 / 58.0; LSTM 768 b16
                                  # 17.3 / 18.6, b64 56.9 / 38.6; GRU 1024 b16 21.8 / 39.4, b64 58.4 / 82.5;
                                  # GRU 512 b64 30.3 / 32.8, b128 53.0 / 51.6; LSTM 512 b64 22.8 / 21.7


def split_atomic(cell, batch):
    """Whether the split kernel's blocks add their partial sums into one [batch row, gate row] sum
    with atomic adds, which the cells read once (``sequence_split.split_kernel``'s ``atomic``),
    rather than write them apart for the cells to add: up to batch SPLIT_ATOMIC_MAX_BATCH, the GRU's
    (two products a step, so twice the sums) up to SPLIT_ATOMIC_MAX_BATCH_GRU.
    ``MPSRNN_SPLIT_REDUCE=atomic|apart`` decides, for tests and A/B benchmarks."""
    forced = knob("MPSRNN_SPLIT_REDUCE", ("atomic", "apart"))
    if forced:
        return forced == "atomic"
    return batch <= (SPLIT_ATOMIC_MAX_BATCH_GRU if cell.kind == CELL_GRU else SPLIT_ATOMIC_MAX_BATCH)


SPLIT_GATES_HERE_MAX_BATCH = 32   # H200 µs a step, gates in the blocks / in the cells (same process, median
                                  # of 2 rounds): GRU 1024 t1500 b2 8.8 / 11.0, b4 10.2 / 11.5, t100 b16
                                  # 21.7 / 23.4, b32 35.5 / 35.0; GRU 512 b8 11.0 / 12.3, b32 20.2 / 22.1;
                                  # GRU 1024 b64 61.1-62.4 / 58.4 (separate processes)


def split_gates_here(cell, batch):
    """Whether the GRU's split kernel, its sums added atomically, makes r∘h0 and z∘h0 in each block
    from the sums (three grid barriers a step) rather than in the cells (four): up to batch
    SPLIT_GATES_HERE_MAX_BATCH, where the barrier saved outweighs the sigmoids each group of blocks
    repeats. ``MPSRNN_SPLIT_GRU_GATES=blocks|cells`` decides where the sums are atomic."""
    forced = knob("MPSRNN_SPLIT_GRU_GATES", ("blocks", "cells"))   # read first: a bad value is an error anywhere
    if cell.kind != CELL_GRU or not split_atomic(cell, batch):
        return False
    return forced == "blocks" if forced else batch <= SPLIT_GATES_HERE_MAX_BATCH


def split_workspace(cell, steps, batch, projects):
    """Floats a split-kernel layer's workspace needs past its usual size: the partials buffer takes
    the scratch region (3·B·H floats), which grows to hold it, and the partial input terms after it
    where the kernel projects in chunks (``projects``: PROJECT_*). The other kernels need none."""
    splits = _split_shape(cell, batch)[2]
    sums = 1 if split_atomic(cell, batch) else splits   # one sum, or one a split
    partials = split_partials(cell.kind, batch, cell.n_out, sums)
    if projects == PROJECT_CHUNKS:
        partials += split_partials_chunks(cell.kind, steps, batch, cell.n_out, splits)
    return max(0, partials - 3 * batch * cell.n_out)


SPLIT_CHUNKS_MAX_ROWS = 128   # (steps x batch) rows the split kernel projects in chunks itself, at most


def split_chunks_fit(cell, batch):
    """Whether the split kernel can project a layer's inputs in chunks (PROJECT_CHUNKS): an LSTM or
    single gate on one copy of its weights (``split_halves`` 1) whose dense inputs (no identity)
    are no wider than its chunks of h (splits x width inputs)."""
    shape = _split_shape(cell, batch)
    if shape is None or cell.kind == CELL_GRU or split_halves(cell, batch) != 1:
        return False
    if INPUT_IDENTITY in cell.header[F_INPUT_MODE:F_INPUT_MODE + 4]:
        return False
    return cell.n_in <= shape[2] * shape[4]   # splits x width


def split_chunks_by_default(cell, steps, batch):
    """Whether the split kernel projects in chunks unless told otherwise: where they fit and the rows
    (steps x batch) are at most SPLIT_CHUNKS_MAX_ROWS, since every split's partial terms (splits x
    rows x gate rows) grow with the rows."""
    return steps * batch <= SPLIT_CHUNKS_MAX_ROWS and split_chunks_fit(cell, batch)


def split_projection(cell, steps, batch):
    """How a split-kernel layer run gets its input terms (PROJECT_*): apart (``project_apart``), else
    in chunks where they fit (``split_chunks_fit``) and the rows (steps x batch) are at most
    SPLIT_CHUNKS_MAX_ROWS, else each block its own rows over all inputs.
    In chunks, each thread's row of W at its block's chunk of inputs meets every row's x there, as
    its row of U meets h: the layer's projection is spread over the grid as its recurrent product
    is, and the layer is one dispatch instead of two. ``MPSRNN_SPLIT_PROJECTION=chunks|rows``
    decides how where it is inside, for tests and A/B runs."""
    forced = knob("MPSRNN_SPLIT_PROJECTION", ("chunks", "rows"))   # read first: a bad value is an error anywhere
    if project_apart("split", cell, steps, batch):
        return PROJECT_APART
    if forced == "rows" or not split_chunks_fit(cell, batch):
        return PROJECT_ROWS
    if forced != "chunks" and not split_chunks_by_default(cell, steps, batch):
        return PROJECT_ROWS
    return PROJECT_CHUNKS


def split_saves_a_dispatch(cell, steps, batch):
    """Whether the split kernel, projecting a short sequence in chunks (PROJECT_CHUNKS), runs a layer
    in one dispatch where spread would take two (its projection apart), below the batch where split
    is the default anyway. A dispatch is ~35-57 µs of host time on the H200's host, more than the
    projection's kernel. H200, same process, median of 4 rounds, µs a step, split in chunks / spread:
    t25 LSTM 1024 b1 10.9 / 11.8, b2 12.0 / 13.8, b4 13.4 / 13.7; LSTM 768 b1 10.8 / 11.1; LSTM 704
    b1 9.5 / 11.7; LSTM 640 b2 10.2 / 13.7; t10 LSTM 1024 b8 25.7 / 29.4; but LSTM 768 b4 14.8 / 13.4
    (its rounds 13.2-16.2 and 12.3-14.7: the machine's drift)."""
    if not (applies("split", "cuda", cell) and applies("spread", "cuda", cell)):
        return False
    return project_apart("spread", cell, steps, batch) and split_projection(cell, steps, batch) == PROJECT_CHUNKS


def _spread_shape(cell, batch, sms=None):
    """(rows a thread, blocks, chunks, batch rows a pass) of the spread kernel, or None where it does
    not fit, on ``sms`` SMs; by default on all of them, where ``MPSRNN_PERSISTENT_GRID`` fixes its
    block count too (``_spread_fit``)."""
    return _spread_fit(cell, batch, sms)[0]


def _spread_fit(cell, batch, sms=None):
    """(``_spread_shape``, threads a block): blocks of BLOCK threads, or on Vulkan, where a layer does
    not fit those one an SM, one block an SM of WIDE_BLOCK where ``spread_wide_blocks`` allows."""
    forced = _grid(cell) if sms is None and os.environ.get("MPSRNN_PERSISTENT_GRID", "").strip() else None

    def on(count, threads=SPREAD_BLOCK, most_rows=MAX_ROWS):
        return spread_shape(cell.kind, cell.header_peep, cell.n_out, cell.standard, batch,
                            count, forced, threads, most_rows)
    if sms is not None:
        return on(sms), SPREAD_BLOCK
    shape = on(_sms() * spread_per_sm())
    if shape is None and spread_wide_blocks():
        shape = on(_sms(), WIDE_BLOCK)
        if shape is None:
            shape = on(_sms(), WIDE_BLOCK, MEMORY_ROWS)
            if shape is not None and not spread_rows_from_memory(cell, shape, batch):
                shape = None
        return shape, WIDE_BLOCK
    return shape, SPREAD_BLOCK


SPREAD_PER_SM = 2   # blocks of the spread kernel an SM may hold (measured: choose_recurrence)
SPREAD_GROUPS = 8   # the most copies of the spread kernel's blocks, each on a share of the batch


def _spread_plan(cell, batch, one_step, share=1):
    """(rows a thread, blocks, chunks, batch rows a pass, groups, threads a block) of the spread kernel
    for a layer on 1/``share`` of the GPU (2: one of a pair of directions, on blocks of SPREAD_BLOCK):
    ``_spread_fit``, then its batch groups (``_spread_groups``)."""
    if share == 1:
        (rho, blocks, chunks, bc), threads = _spread_fit(cell, batch)
    else:
        (rho, blocks, chunks, bc), threads = _paired_shape(cell, batch), SPREAD_BLOCK
    bc, groups = _spread_groups(blocks, bc, batch, one_step, _sms() // share)
    return rho, blocks, chunks, bc, groups, threads


def _spread_groups(blocks, bc, batch, one_step, sms):
    """(batch rows a pass, groups) of the spread kernel on ``blocks`` blocks with ``bc`` rows a pass
    (``batch_groups``): up to SPREAD_GROUPS copies of its blocks, within one block on each of ``sms``
    SMs, each copy on every groups-th pass of the batch rows, so that a thread's products run over
    fewer rows a step. One group for a one-step run from zeros (``step_from_zeros``). H200, µs a
    step, one group / the most that fit: LSTM 128 b8 t1000 (8 blocks) 4.03 / 2.56 (2 groups 3.21,
    4 groups 2.83), LSTM 192 b4 t1000 3.35 / 2.53. Where the blocks already take two an SM (LSTM
    512 b4 t25 on 128), a second group was lost in the noise of a 25-step call (11.4 / 12.8), so
    none is made. ``MPSRNN_SPREAD_GROUPS=N`` sets the most groups (1: none), for A/B benchmarks."""
    forced = knob("MPSRNN_SPREAD_GROUPS", ("1", "2", "4", "8", "16"))
    most = 1 if one_step else int(forced) if forced else SPREAD_GROUPS
    return batch_groups(blocks, bc, batch, sms, most)


SPREAD_TAGGED = True   # h crosses as tagged words where a group's blocks poll few (SPREAD_TAGGED_LIMITS)
SPREAD_TAGGED_LIMITS = ((32, 65536), (80, 36000))   # (blocks of a group, words polled a step: blocks x
    # batch x hidden, three times that for the GRU) up to which tagged words won. H200, t1000, µs a
    # step, barrier / tagged (bench/probes/ab.py): LSTM 128 b1 (8 blocks, 1024 words) 2.29 / 1.27, b16
    # 2.99 / 1.93; LSTM 256 b4 (32, 32768) 2.73 / 1.86, b8 (32, 65536) 3.46 / 2.64; single gate 512 b4
    # (32, 65536) 2.57 / 1.88; GRU 256 b4 (16, 49152) 4.82 / 2.79; LSTM 320 b2 (54, 34560) 3.07 / 2.50;
    # LSTM 352 b1 (71, 24992) 3.06 / 2.85; LSTM 384 b1 (77, 29568) 3.04 / 2.90. Past them every block
    # polls more words and the atomics queue at L2: LSTM 288 b4 (42, 48384) 3.82 / 3.80; GRU 384 b1
    # (39, 44928) 5.48 / 5.51; LSTM 448 b1 (112, 50176) 3.05 / 3.06; LSTM 384 b2 (77, 59136) 3.84 /
    # 4.66; single gate 768 b1 (77, 59136) 2.84 / 3.28; LSTM 512 b1 t400 (128, 65536) 2.92 / 3.29;
    # GRU 512 b4 t100 (64) 8.72 / 12.40; GRU 1024 b1 t300 (256) 8.04 / 16.57


# A pair of directions (``pair_directions``) with tagged words: both layers poll at once. H200,
# t1000, bidirectional, µs a step, paired with barriers / paired with tagged words (blocks of a group;
# words of one layer): LSTM 128 b1 (8, 1024) 2.52 / 1.74; LSTM 128 b16 (8, 16384) 3.23 / 2.40; LSTM
# 256 b4 (32, 32768) 3.39 / 2.81; LSTM 192 b8 (20, 30720) 3.78 / 3.84; but LSTM 256 b8 (32, 65536)
# 4.27 / 4.62, LSTM 192 b16 (20, 61440) 4.73 / 6.57, LSTM 320 b2 (54, 34560) 3.79 / 4.37. So the LSTM
# and the single gate count both layers' words (single gate 512 b4, (32, 65536), 3.81 / 3.02, is lost
# to that rule). The GRU's barrier form pays two barriers a step, and its pairs won on one layer's
# words: GRU 128 b8 (block kernels, 9.00; paired with barriers 4.98) 2.36; GRU 128 b32 (4, 49152)
# 10.79 / 4.39; GRU 256 b4 (16, 49152) 5.22 / 3.00.


def spread_tagged(arch, cell, batch, one_step, blocks, paired=False):
    """Whether a spread layer's h (and a GRU's r∘h0 and z∘h0) cross between blocks as tagged words
    (``kernels/exchange.py``) instead of through grid barriers: on CUDA, where a group's blocks and
    the words they poll a step are within one of SPREAD_TAGGED_LIMITS (each block polls its group's
    rows of h, the GRU's of r∘h0 and z∘h0 too; the groups share the batch); never for a one-step run
    (no exchange). ``paired``: the layer is one of a paired launch's two (``pair_directions``), whose
    LSTM and single gate count both layers' words (the comment above). ``MPSRNN_SPREAD_EXCHANGE=
    tagged|barrier`` decides for any such layer on any GPU (Vulkan devices with 64-bit atomics:
    lavapipe's one-block tests), for tests and A/B benchmarks, but where spread runs on Vulkan
    (``spread_on_vulkan``), whose words are always tagged."""
    forced = knob("MPSRNN_SPREAD_EXCHANGE", ("tagged", "barrier"))
    gru = cell.kind == CELL_GRU
    if one_step or not exchange_fits(gru, batch, cell.n_out):
        return False
    if arch == "vulkan" and spread_on_vulkan():
        return True   # the only form there (no grid barrier)
    if forced:
        return forced == "tagged"
    words = blocks * batch * cell.n_out * (3 if gru else 2 if paired else 1)
    return SPREAD_TAGGED and arch == "cuda" and any(blocks <= most_blocks and words <= most_words
                                                    for most_blocks, most_words in SPREAD_TAGGED_LIMITS)


def spread_epochs(tagged):
    """Whether a spread run whose words are tagged takes its tags from the epoch and so starts
    without a grid barrier (``kernels/exchange.py``): on Vulkan, which lacks the barrier's fence;
    on CUDA with ``MPSRNN_SPREAD_START=epochs`` only, since there the two starts were even (H200,
    t25-t1000, µs a step, barrier / epochs: LSTM 128 b1 t25 5.61 / 6.41, LSTM 256 b4 t100 3.83 /
    3.98, GRU 128 b8 t50 4.74 / 4.72, LSTM 192 b4 t1000 1.70 / 1.69). By default on CUDA the run's
    first words are written plainly before one grid barrier (``barrier``), which the knob also
    asks of Vulkan where spread runs on one block (lavapipe's tests), but not where it runs on a
    GPU's grid (``spread_on_vulkan``): a grid barrier there would have no fence."""
    start = knob("MPSRNN_SPREAD_START", ("barrier", "epochs"))   # (a bad value raises, whatever the arch)
    vulkan = current_arch() == "vulkan"
    return tagged and (start == "epochs" or vulkan and (start is None or spread_on_vulkan()))


VULKAN_SPREAD = True   # spread on Vulkan where it runs (spread_on_vulkan; measured: vulkan_spreads)


def spread_on_vulkan():
    """Whether the spread kernel can run on this Vulkan device: a GPU (not lavapipe) whose SMs the
    CUDA driver counts (``_sms``), the same GPU by name (``vulkan_gpu_is_cuda_device``: an NVIDIA
    GPU, whose Vulkan driver has the 64-bit atomics of the tagged words; with more blocks than its
    SMs the grid might not be resident at once). There it runs with tagged words from epochs and its
    input projection apart, so that only atomics pass data between its blocks (no grid barrier:
    Vulkan lacks its fence), on one block an SM. ``MPSRNN_VULKAN_SPREAD=on|off`` (on by default)
    decides where it can, for A/B benchmarks."""
    from .. import backend
    return (switch("MPSRNN_VULKAN_SPREAD", VULKAN_SPREAD) and _sms() > 1 and backend.vulkan_gpu_is_cuda_device())


def vulkan_spreads(cell, batch):
    """Whether a layer takes the spread kernel on Vulkan by default: where it runs there
    (``spread_on_vulkan``), fits one block an SM (of 256 threads, or of 512: ``spread_wide_blocks``),
    its words fit (``exchange_fits``: they are its only exchange) and the batch is within
    SPREAD_MAX_BATCH, but not where the registers kernel holds
    all of U in one block's registers (no exchange at all). H200 Vulkan, µs a step, spread / the
    kernel it replaced: LSTM 128 b1 t1000 2.97 / 4.74 (registers, rows read from memory), LSTM 96 b4
    3.18 / 3.35 (the same), GRU 96 b1 4.23 / 5.25 (the same), LSTM 192 b4 3.78 / 32.8 (blocks), LSTM
    256 b4 3.96 / 29.1 (tiles), GRU 128 b8 4.84 / 11.5 (blocks), LSTM 512 b1 t200 9.61 / 28.6
    (tiles), b16 t100 41.6 / 73.5, b64 t100 122 / 172, GRU 512 b4 t100 20.5 / 55.1; but with all
    of U in registers: single gate 128 b4 2.79 / 1.61, LSTM 64 b1 3.09 / 1.64, GRU 64 b1 4.36 / 1.85."""
    registers = _registers_shape(cell, "vulkan")
    held = registers is not None and registers[0] <= held_rows(registers[1])
    return (not held and batch <= SPREAD_MAX_BATCH and applies("spread", "vulkan", cell)
            and exchange_fits(cell.kind == CELL_GRU, batch, cell.n_out)
            and _spread_shape(cell, batch) is not None)   # (rows from memory: up to a batch)


def spread_per_sm():
    """Blocks of the spread kernel an SM may hold: 2 lets layers too large for one block an SM
    (LSTM 673-1024, GRU up to 1024 on 132 SMs) spread over two, each a half of the register file
    (256 threads x 128 registers); a layer that fits one block an SM keeps it, as the fewest blocks
    that hold it. On Vulkan one: its compiler's registers a thread are not capped at 128, so two
    blocks might not fit an SM at once, and every block of the grid must be resident (it polls the
    others' words). Measured on the H200's Vulkan, two an SM: LSTM 1024 b1 t25 ran right and faster
    than its per-step kernels (64.0 against 96.0 µs a step), but GRU 1024 b1 and LSTM 1024 with
    diagonal peepholes at batch 5 hung (no step in 150 s: blocks waiting on blocks not yet
    resident), so no layer takes two there: one block an SM of 512 threads instead
    (``spread_wide_blocks``). ``MPSRNN_SPREAD_PER_SM=1|2`` decides, for A/B benchmarks (2 on Vulkan
    can hang that way)."""
    return one_or_two("MPSRNN_SPREAD_PER_SM") or (1 if current_arch() == "vulkan" else SPREAD_PER_SM)


VULKAN_WIDE_BLOCKS = True   # one block an SM of WIDE_BLOCK threads on Vulkan. H200 Vulkan, same process,
                            # median of 2 rounds, µs a step, 512 threads / per-step tiles: LSTM 1024 b1
                            # t25 47.3 / 79.6, GRU 1024 b1 t100 18.4 / 65.3, LSTM 768 b4 t25 47.0 / 89.7


def spread_wide_blocks():
    """Whether spread on Vulkan takes one block an SM of WIDE_BLOCK threads for the layers that one
    of BLOCK cannot hold (LSTM 673-1024, GRU 736-1024 on 132 SMs: what two blocks an SM hold on
    CUDA), rather than Vulkan's per-step kernels. The shader fixes a workgroup's size, so the
    compiler fits a whole block on an SM: every block resident, as spread needs, where two blocks an
    SM hung (``spread_per_sm``); correct there on LSTM 700-1024 and GRU 1024 (``test_fast_paths``).
    Deepbench on the H200's Vulkan, µs a step, per-step tiles → 512 threads: GRU 1024 b1 t1500 45.0 →
    8.3, b4 52.3 → 19.1, LSTM 1024 b1 t25 79.1 → 42.4. ``MPSRNN_SPREAD_THREADS=256|512`` decides
    (512: where BLOCK does not fit), for A/B benchmarks; only on Vulkan (CUDA takes two blocks an SM)."""
    forced = knob("MPSRNN_SPREAD_THREADS", ("256", "512"))
    wide = VULKAN_WIDE_BLOCKS if forced is None else forced == "512"
    return wide and current_arch() == "vulkan"


VULKAN_ROWS_FROM_MEMORY = True   # where a step reads few rows from memory: MEMORY_ROW_READS, MEMORY_PASS_ROWS
MEMORY_ROW_READS = 6   # rows a thread reads from memory a step, over the step's passes of batch rows.
                       # H200 Vulkan, same process, median of 2 rounds, µs a step, per-step tiles /
                       # rows from memory (reads): LSTM 1536 b1 t50 60.0 / 38.9 (3), b4 97.9 / 91.0
                       # (6: 3 rows, 2 passes), LSTM 2048 b1 t25 97.6 / 97.5 (6); but b4 151.6 /
                       # 219.6 (24: 6 rows, 4 passes of one row), b8 184.5 / 396.3 (48)
MEMORY_PASS_ROWS = 4   # or where a pass reads at most this many (over the GRU's two phases), up to a
MEMORY_PASS_BATCH = 4  # batch of this. H200 Vulkan, packed rows (pack_memory_rows), µs a step, tiles /
                       # rows from memory (rows a pass, passes): GRU 1536 t375 b2 46.4 / 32.6 (4, 2),
                       # b4 74.4 / 58.8 (4, 4); but GRU 2048 b2 64.5 / 79.6 (6, 2), b4 77.7 / 135.5,
                       # LSTM 2048 b2 t25 113.7 / 142.2 (6, 2)


def memory_reads(cell, shape, batch):
    """(rows a thread of the spread kernel of ``shape`` (``spread_shape``) reads from memory in a
    pass of batch rows, in a step of ``batch`` rows): its rows past MAX_ROWS (the GRU's past
    GRU_HELD in each of its two phases), once for each pass, since every pass reads them again."""
    rho, _, _, bc = shape
    a_pass = (2 if cell.kind == CELL_GRU else 1) * memory_rows(cell.kind, rho)
    return a_pass, a_pass * -(-batch // bc)


def spread_rows_from_memory(cell, shape, batch):
    """Whether spread on Vulkan, on one block an SM of WIDE_BLOCK threads (``spread_wide_blocks``),
    takes a layer whose rows those blocks' registers cannot hold (LSTM 1025-2048, GRU 1025-2048 on
    132 SMs), each thread reading its rows past MAX_ROWS (the GRU's past GRU_HELD a phase) from
    memory every step (up to MEMORY_ROWS, the GRU's half of them a phase), rather than Vulkan's
    per-step kernels: with no grid barrier on Vulkan, the way to run those layers in one launch
    (CUDA's persistent kernel streams them behind a barrier). Taken where a thread reads at most
    MEMORY_ROW_READS rows a step, or at most MEMORY_PASS_ROWS a pass up to a batch of
    MEMORY_PASS_BATCH (``memory_reads``); past those the tiles' dispatches won.
    ``MPSRNN_SPREAD_FROM_MEMORY=on|off`` decides when set, at any read count, for A/B benchmarks."""
    a_pass, reads = memory_reads(cell, shape, batch)
    few = reads <= MEMORY_ROW_READS or a_pass <= MEMORY_PASS_ROWS and batch <= MEMORY_PASS_BATCH
    return switch("MPSRNN_SPREAD_FROM_MEMORY", VULKAN_ROWS_FROM_MEMORY and few)


def small_gru_spreads(cell, steps, batch):
    """Whether a GRU up to SMALL_HIDDEN leaves the block kernel (one block a sequence) for spread:
    where its h, r∘h0 and z∘h0 cross as tagged words (``spread_tagged``), which take both of its grid
    barriers a step away. H200, t1000, µs a step, block kernel / spread with tagged words: GRU 128
    b1 4.29 / 2.32, b8 4.52 / 2.31, b16 4.88 / 3.08, b32 5.28 / 4.34; GRU 96 b4 3.53 / 2.20; GRU 80
    b1 3.35 / 2.18; GRU 72 b8 3.43 / 2.47. With grid barriers it lost: GRU 96 b4 4.49, GRU 128 b8 4.65."""
    blocks = _spread_plan(cell, batch, steps == 1)[1]
    return spread_tagged("cuda", cell, batch, steps == 1, blocks)


def spread_beats_persistent(cell, batch):
    """Whether the spread kernel beats the persistent one for this batch: for a GRU on two blocks an
    SM only at batch 1 (H200, GRU 1024 t300, µs a step, spread against persistent: b1 9.4 / 11.5, b2
    in one pass 15.8 / 12.7, b4 in two 26.5 / 16.9). The LSTM's passes still paid there (LSTM 1024
    b16, four passes: 29.3 / 31.6; b64 103.4 / 110.9)."""
    shape = _spread_shape(cell, batch)
    return shape is not None and not (cell.kind == CELL_GRU and shape[1] > _sms() and batch > 1)


def _grid(cell):
    """Blocks of a persistent kernel: two per SM (``persistent_per_sm``), never more than there are
    units. ``MPSRNN_PERSISTENT_GRID`` caps it lower, for benchmarks that compare grid sizes."""
    from ..backend import gpu_l2_bytes
    cap = _sms() * persistent_per_sm(gpu_l2_bytes())
    forced = os.environ.get("MPSRNN_PERSISTENT_GRID", "").strip()
    if forced:
        if not forced.isdigit() or int(forced) < 1:
            raise ValueError(f"MPSRNN_PERSISTENT_GRID: expected a positive block count, got {forced!r}")
        cap = min(cap, int(forced))
    return max(1, min(cap, cell.n_out))


def _from_hbm(cell):
    """Whether a persistent kernel streams this layer's weights from HBM (they outgrow L2)."""
    from ..backend import gpu_l2_bytes
    return quads_outgrow_l2(cell.kind, cell.n_out, gpu_l2_bytes(), cell.has_vh)


APART_FLOPS = 4e6     # CPU lanes: a projection this large runs as its own kernel when the batch is small
# CUDA persistent: a projection up to this size, of inputs up to this width, runs inside the kernel.
# H100, µs a step inside / apart: LSTM 256 b1 t150 5.9 / 7.2, LSTM 512 b1 t25 12.2 / 16.2, b4 17.5 /
# 19.5, GRU 512 b1 t1 132 / 211; but LSTM 1024 b1 t25 23.4 / 19.6 and b4 36.2 / 26.9 (a block's serial
# dots over 1024 inputs); LSTM 256 b4 t150 (315 MFLOP) and LSTM 192 b4 t1000 (1.2 GFLOP) tie.
FOLD_FLOPS = 256e6
FOLD_MAX_INPUT = 512


# CPU lanes: a layer call of up to this many FLOPs (recurrence and projection) runs on the calling
# thread, since waking Taichi's thread pool costs more than the second thread saves. This 2-core VM,
# µs a step, parallel / serial, same process: LSTM 64 b2 t25 (3.3 MFLOP) two layers 16-25 / 12,
# bidirectional 19 / 15-17; but single gate 128 b4 t50 (13 MFLOP) 9.3 / 11.9, GRU 128 b2 t50
# (20 MFLOP) 14 / 24, LSTM 64 b8 t200 (105 MFLOP) 16 / 25. One row is always serial (one thread works).
# Rerun on the 2-core EPYC VM (Zen 5) with the input terms in vectors and settled timing, ratio to
# PyTorch serial / parallel, median of 3 rounds: LSTM 64 b2 t50 (6.6 MFLOP) 0.49 / 0.64, single gate
# 128 b4 t50 (13 MFLOP) 0.40 / 0.37, GRU 128 b2 t50 (20) 0.25 / 0.24, LSTM 128 b4 t50 (52) 1.24 / 0.94,
# LSTM 64 b8 t100 (52) 1.39 / 0.90: the crossover moved from ~6 MFLOP to ~10-13.
LANES_SERIAL_FLOPS = 10e6


def lanes_serial(cell, steps, batch):
    """Whether a layer's lanes kernel runs serially on the calling thread (see LANES_SERIAL_FLOPS)."""
    flops = 2.0 * steps * batch * cell.gates * cell.n_out * (cell.n_out + cell.n_in)
    return batch == 1 or flops <= LANES_SERIAL_FLOPS


def lanes_pipelined(cell, batch):
    """Whether a lanes layer whose projection runs apart (``project_apart``) runs it beside its
    recurrence instead, in one kernel (``sequence_lanes_pipelined``): a helper thread projects
    chunks of steps ahead of the thread that steps the rows. At batch 1, where one thread steps, and
    where the helper then steps half of the units (``lanes_split_row``).
    ``MPSRNN_CPU_PIPELINE`` (on or off) decides instead, for A/B benchmarks and tests."""
    return switch("MPSRNN_CPU_PIPELINE", batch == 1 or lanes_split_row(cell, batch))


def lanes_split_row(cell, batch):
    """Whether the pipelined lanes kernel's helper, once it has projected every chunk, steps the
    second half of the unit blocks of a lone row or a pair beside the stepping worker
    (``sequence_lanes_pipelined``; the plan sets the run's LANE_SPLIT bit): at batch 1 and 2, for
    the cells whose blocks need nothing of each other within a step (``sequence_lanes.splits_row``).
    ``MPSRNN_CPU_SPLIT_ROW`` (on or off) decides instead, for A/B benchmarks and tests (on still needs
    such a batch and cell).

    Not past a pair: with two pairs split over two threads (a form tried on the 2-core EPYC VM, ratio
    to PyTorch split / a pair a thread), LSTM 256 b4 t50 1.15 / 1.01, LSTM 512 b4 1.12 / 0.89, LSTM
    192 b4 1.05 / 0.90, LSTM 128 b4 0.87 / 0.70; only b3 gained (0.97 / 1.07)."""
    return batch <= PAIR and switch("MPSRNN_CPU_SPLIT_ROW", True) and splits_row(
        cell.kind, cell.standard, cell.dense_peepholes)


def lane_row_group(serial, batch):
    """Batch rows a worker of the lanes kernel steps together, sharing each load of U
    (``sequence_lanes.fold_first_products``; the plan sets the run's LANE_PAIRS or LANE_FOURS bit):
    4 where a thread has four rows or more and the CPU has AVX-512 (``sequence_lanes.MOST_ROWS``), 2
    where it has two or more (all of the batch serially; else the batch over the pool's threads),
    else 1. ``MPSRNN_CPU_ROW_GROUP`` (1, 2 or 4) decides instead, for A/B benchmarks (4 still needs
    AVX-512: it is 2 without).

    Xeon VM (AVX-512, 16 lanes), same process, µs a step (min of 7 calls, median of 7 rounds), rows
    alone / in pairs: on both threads, LSTM 256 b4 t50 52.4 / 44.6, GRU 128 b8 t200 29.3 / 25.0,
    single gate 128 b4 t100 7.9 / 7.2, LSTM 192 b4 26.3 / 24.6, LSTM 128 b8 26.8 / 26.0, LSTM 64 b8
    9.0 / 9.2; serially, LSTM 256 b2 t50 51.0 / 43.1, GRU 128 b2 16.4 / 14.4, LSTM 64 b2 t25 8.0 /
    7.9 (LSTMs without peepholes). Fours: a first form (LSTMs with dense peepholes, one thread),
    LSTM 256 b4 270 / 219 / 189 alone / pairs / fours, GRU 128 b8 60.9 / 52.0 / 47.3, was not kept
    then, since it took an LSTM's kernel from 41 s of compiling to 66. Since the input terms are
    vectors (``kernels/lanes.term_at``) a kernel compiles in ~5 s, and fours came back: 2-core EPYC
    VM (Zen 5), both threads, ``ab_trees.py``, µs a step, pairs / fours: LSTM 128 b8 t1000 8.3 /
    7.7, LSTM 64 b8 3.22 / 2.71, GRU 128 b8 8.1 / 7.1, LSTM 256 b8 t200 31.1 / 25.8.
    """
    from ..kernels.sequence_lanes import MOST_ROWS
    forced = knob("MPSRNN_CPU_ROW_GROUP", ("1", "2", "4"))
    if forced:
        return min(int(forced), MOST_ROWS)
    from ..kernels.grid import cpu_tasks
    rows = batch if serial else -(-batch // cpu_tasks())
    return min(MOST_ROWS, 4 if rows >= 4 else 2 if rows >= 2 else 1)


def project_apart(name, cell, steps, batch):
    """Whether a layer's input projection runs as a kernel of its own before the recurrence, rather
    than inside the recurrence kernel (which ``lanes``, ``persistent``, ``spread`` and ``split`` can do; the
    others never).

    * ``lanes`` (CPU): apart, every CPU thread shares the projection, at the cost of a dispatch
      (~15-20 µs); inside, a row's thread projects its own steps. So apart only when the batch
      leaves threads without rows and the projection outweighs a dispatch.
    * ``persistent`` (CUDA): inside, each block projects the gate rows it owns before its time
      loop, which saves a dispatch (~50 µs of host time on the H100); but one block per SM projects
      more slowly than a launch over the whole GPU, so only small projections go inside;
    * ``spread`` and ``split`` (CUDA): the same, with the limit scaled down to the blocks they have;
      ``spread`` on Vulkan always apart (no grid barrier there).

    ``MPSRNN_PROJECTION`` (``apart`` or ``inside``) overrides for those four, for benchmarks and tests."""
    if name not in ("lanes", "persistent", "spread", "split"):
        return True
    if name == "spread" and current_arch() == "vulkan" and spread_on_vulkan():
        return True   # inside, a grid barrier would follow it
    forced = knob("MPSRNN_PROJECTION", ("apart", "inside"))
    if forced:
        return forced == "apart"
    flops = 2.0 * steps * batch * cell.gates * cell.n_out * cell.n_in
    if name == "lanes":   # (a pair that the pipelined kernel splits has threads for its projection too)
        from ..kernels.grid import cpu_tasks
        return (batch < cpu_tasks() or lanes_split_row(cell, batch)) and flops >= APART_FLOPS
    if name == "spread":   # fewer blocks project: the limit shrinks with the share of SMs they are
        _, grid, _, _, groups, _ = _spread_plan(cell, batch, False)
        flops *= _sms() / (grid * groups)
    if name == "split":
        if split_chunks_by_default(cell, steps, batch):
            return False   # in chunks: see split_projection
        shape = _split_shape(cell, batch)
        flops *= _sms() / (shape[1] * shape[2])   # (halves: as timed, the grid of one copy)
    return flops > FOLD_FLOPS or cell.n_in > FOLD_MAX_INPUT


def emit_layer(prog, name, layer_run, steps, batch, x, output):
    """Add the dispatches that run ``layer_run`` through all ``steps``: its input projection, then
    the recurrence ``name``. ``x``: the (buffer, base, step stride, row stride) view of the layer's
    input; ``output``: the same view of where the kernels also write each new h (the caller's
    destination for the last layer of encode_sequence), or a negative base for none."""
    lr = layer_run
    x, output = lr.bind_views(prog, x, output)   # the kernels take the arrays; the views go in the frame
    args = _recurrence_args(lr, output)
    kind = lr.cell.kind
    if name == "lanes":   # one kernel, which projects each row's inputs as it goes unless told apart
        form = (lr.cell.standard, lr.cell.dense_peepholes)   # (each a kernel of its own)
        if lr.projected_apart and lanes_pipelined(lr.cell, batch):
            prog.add(pipelined_kernel(kind, *form), x, lr.ws, lr.cell.lanes, lr.terms, lr.frame, output)
            return
        if lr.projected_apart:
            prog.add(project_inputs_lanes, x, lr.ws, lr.cell.lanes, lr.terms, lr.frame)
        prog.add(lanes_kernel(kind, lanes_serial(lr.cell, steps, batch), *form), x, lr.ws, lr.cell.lanes, lr.terms,
                 lr.frame, output)
        return
    _emit_projection(prog, lr, x, steps * batch)
    if name == "rows":
        prog.add(ROW_KERNELS[kind], *args)
    elif name == "blocks":
        prog.add(BLOCK_KERNELS[kind], *args)
    elif name == "registers":
        prog.add(registers_kernel(kind, *_registers_shape(lr.cell, current_arch())), *args)
    elif name == "warp":
        units, split = _warp_shape(lr.cell, current_arch())
        prog.add(warp_kernel(kind, units, split, warp_stores_apart(kind, split)), *args)
    elif name == "persistent":
        chunk = persistent_chunk(batch)
        grid = _grid(lr.cell)
        resident = resident_terms(kind, lr.cell.n_out, grid, chunk)
        rows = persistent_rows(chunk, resident)
        loads, clamp_all = persistent_loads(chunk, _from_hbm(lr.cell))
        streams = persistent_layout() == "streams"
        room = persistent_kept(kind, resident, streams, chunk, rows)
        kept = kept_counts(kind, lr.cell.n_out, grid, rows, loads, room, lr.cell.has_vh)
        quads = lr.cell.stream_quads(grid, rows, loads, kept) if streams else lr.cell.quads()
        prog.add(persistent_kernel(kind, grid, chunk, resident, not lr.projected_apart, loads, clamp_all, rows,
                                   persistent_zigzag(), lr.cell.has_vh, streams, persistent_fold(chunk), kept),
                 x, lr.ws, lr.cell.wts, quads, lr.term_quads(steps, batch), lr.frame, output)
    elif name == "spread":
        one_step = _one_step(lr, steps)
        rho, grid, chunks, bc, groups, threads = _spread_plan(lr.cell, batch, one_step)
        tagged = spread_tagged(current_arch(), lr.cell, batch, one_step, grid)
        packed = not one_step and memory_rows(kind, rho) > 0 and rows_packed()
        rows = (lr.cell.spread_rows(grid, rho, threads),) if packed else ()
        prog.add(spread_kernel(kind, rho, grid, chunks, bc, not lr.projected_apart, one_step, groups, tagged,
                               spread_epochs(tagged), threads, packed),
                 x, *args, *rows)
    elif name == "split":
        halves = split_halves(lr.cell, batch)
        prog.add(split_kernel(kind, *_split_shape(lr.cell, batch), split_projection(lr.cell, steps, batch), halves,
                              split_atomic(lr.cell, batch), split_gates_here(lr.cell, batch)),
                 x, *args)
    elif name == "tiles":
        packed, chunk = tiles_packed(), tile_chunk(batch)
        kernels = tile_kernels(chunk, packed, tile_loads(chunk))
        units = tile_units()
        tw = lr.cell.tile_weights(units) if packed else lr.cell.wts   # (not read where plain)
        for s in range(steps):
            if kind == CELL_GRU:
                prog.add(kernels[GRU_GATES], *args, tw, s, units)
            prog.add(kernels[kind], *args, tw, s, units)
    else:
        dense_peepholes = lr.cell.dense_peepholes
        for s in range(steps):
            prog.add(STEP_KERNELS[kind], *args, s)
            if dense_peepholes:
                prog.add(lstm_peephole_output_step, *args, s)


def _paired_shape(cell, batch):
    """The spread kernel's shape for one of two layers that share the GPU (half its blocks each)."""
    return _spread_shape(cell, batch, _sms() * spread_per_sm() // 2)


PAIR_DIRECTIONS = True    # H200, LSTM 512 t100 bidirectional, µs a step, paired against two launches
                          # (same process): spread, median of 3 rounds, b16 23.1 / 26.9, b64 82.3 / 92.1;
                          # split (two blocks an SM), median of 2 rounds, b32 24.6 / 32.4, b64 36.1 / 47.0


PAIR_DIRECTIONS_VULKAN = True   # spread's pair on Vulkan (tagged words in halves, an epoch each, 66
                                # blocks a direction on 132 SMs). H200 Vulkan, same process, median of
                                # 2 rounds, µs a step, paired / two launches: LSTM 512 b16 t100 49.1 /
                                # 72.6, GRU 128 b8 t1000 5.13 / 8.28


def pair_directions(arch, fwd, bwd, batch):
    """Whether a bidirectional level's two layer runs share one launch: both chose the spread
    kernel (``paired_spread_kernel``, half the blocks each, where it fits them) or both the split
    kernel (``paired_split_kernel``, both grids whole, two blocks an SM), and their cells have the
    same shape. On by default for both on CUDA (``PAIR_DIRECTIONS``), and for spread on Vulkan where
    it runs there (``PAIR_DIRECTIONS_VULKAN``). ``MPSRNN_PAIR_DIRECTIONS=on|off`` decides, for tests and
    A/B benchmarks."""
    kernel = fwd.recurrence
    # (a bad value raises, whatever the runs); on Vulkan spread's pair only, where spread runs there
    wanted = switch("MPSRNN_PAIR_DIRECTIONS", PAIR_DIRECTIONS_VULKAN if arch == "vulkan" else PAIR_DIRECTIONS)
    pairs = ("spread", "split") if arch == "cuda" else ("spread",) if arch == "vulkan" else ()
    if not wanted or kernel not in pairs or bwd.recurrence != kernel:
        return False
    def shape(run):
        c = run.cell
        return c.kind, c.n_in, c.n_out, c.header_peep, c.standard, run.projected_apart
    if kernel == "split":   # both grids whole, two blocks an SM: so each on one block an SM
        return shape(fwd) == shape(bwd) and split_on_one_block_an_sm(fwd.cell, batch)
    return shape(fwd) == shape(bwd) and _paired_shape(fwd.cell, batch) is not None


def emit_paired(prog, runs, steps, batch, xs, outputs):
    """The dispatches of two layer runs that ``pair_directions`` pairs: their projections where
    apart, then one launch of the paired spread or split kernel with both runs' arguments."""
    first = runs[0]
    views = [lr.bind_views(prog, x, out) for lr, x, out in zip(runs, xs, outputs)]
    for lr, (x, _) in zip(runs, views):
        _emit_projection(prog, lr, x, steps * batch)
    args = [a for lr, (x, out) in zip(runs, views) for a in (x, *_recurrence_args(lr, out))]
    projects = not first.projected_apart
    if first.recurrence == "split":
        prog.add(paired_split_kernel(first.cell.kind, *_split_shape(first.cell, batch),
                                     split_projection(first.cell, steps, batch),
                                     split_atomic(first.cell, batch), split_gates_here(first.cell, batch)), *args)
    else:
        one_step = _one_step(first, steps)
        rho, grid, chunks, bc, groups, _ = _spread_plan(first.cell, batch, one_step, share=2)
        tagged = spread_tagged(current_arch(), first.cell, batch, one_step, grid, paired=True)
        prog.add(paired_spread_kernel(first.cell.kind, rho, grid, chunks, bc, projects, one_step, groups, tagged,
                                      spread_epochs(tagged)), *args)


def _one_step(lr, steps):
    """Whether a layer run is one step from zeros, which the spread kernel runs without U (its own
    kernel: ``step_from_zeros``)."""
    return steps == 1 and not lr.has_initial_state


def _recurrence_args(lr, output):
    """A recurrence kernel's arguments after the input: (ws, wts, frame, output)."""
    return (lr.ws, lr.cell.wts, lr.frame, output)


def _emit_projection(prog, lr, x, rows):
    """The input projection's own dispatch, where the layer run projects apart (not the lanes
    path's), of ``rows`` input rows (steps x batch); ``x``, the input array (its view is in the frame)."""
    if lr.projected_apart:
        kernel = project_inputs
        if projects_in_tiles(current_arch(), lr.cell):
            kernel = projection_tiled_kernel(projection_tile(rows, lr.cell.gates * lr.cell.n_out, _sms(),
                                                             current_arch() == "cuda"))
        prog.add(kernel, x, lr.ws, lr.cell.wts, lr.frame)


PROJECTION_TILES_ARCHS = ("cuda", "vulkan")   # by default; any GPU when told (MPSRNN_PROJECTION_TILES=on)


def projects_in_tiles(arch, cell):
    """Whether a layer's own projection dispatch is the tiled product (``kernels/projection_tiled``)
    rather than ``project_inputs``: by default on CUDA and Vulkan (Metal keeps the plain kernel
    until `mpsrnn check --arch metal` has passed on a Mac; the CPU has no block features), for
    inputs that are not the identity. ``MPSRNN_PROJECTION_TILES`` (on or off) decides on any GPU,
    for tests (the conformance suite runs it on Metal) and A/B benchmarks."""
    wanted = switch("MPSRNN_PROJECTION_TILES", arch in PROJECTION_TILES_ARCHS)
    return wanted and arch != "cpu" and INPUT_IDENTITY not in cell.header[F_INPUT_MODE:F_INPUT_MODE + 4]
