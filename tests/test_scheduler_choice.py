"""Which recurrence and projection the scheduler picks, per arch and shape (no kernel runs here).

The rules are set from measurements (their comments in ``mpsrnn/scheduler/recurrence.py`` name
them); these tests pin them, so a change to a threshold is a visible decision. The cells are built
on this machine's arch, and the GPU choices are asked for by name, with an H100's 132 SMs for the
persistent grid, and the arch the process runs on stands for CUDA where a rule reads it.
"""
import os

import numpy as np
import pytest

import mpsrnn as m
from builders import descriptor
from mpsrnn.kernels.knobs import PLANNING_KNOBS
from mpsrnn.scheduler import recurrence as rec

SPREAD_ON_VULKAN = rec.spread_on_vulkan   # (the fixture stubs it)


@pytest.fixture(autouse=True)
def no_knobs(monkeypatch):
    for name in PLANNING_KNOBS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(rec, "_sms", lambda: 132)
    # Vulkan's choices are a device's without spread (lavapipe, other vendors), whatever runs the
    # tests; test_vulkan_spread's are an NVIDIA GPU's
    monkeypatch.setattr(rec, "spread_on_vulkan", lambda: False)
    # The rules that read the running arch (blocks an SM, how spread starts) read CUDA's, whatever
    # runs the tests (``mpsrnn check --arch vulkan`` too); tests of Vulkan's say so themselves
    monkeypatch.setattr(rec, "current_arch", lambda: "cuda")


def cell(rng, kind, hidden, n_in=None, **opts):
    """A layer's cell: LSTMs without peepholes unless asked (PyTorch's LSTM, the benchmarks')."""
    opts.setdefault("peephole", None)
    d = descriptor(kind, rng, n_in or hidden, hidden, use_float32_weights=True, **opts)
    return m.RNNMatrixInferenceLayer(d)._cells[0]


@pytest.mark.parametrize("kind, hidden, batch, opts, expected", [
    ("lstm", 64, 1, {}, "registers"),   # U fits one block's registers
    ("lstm", 128, 8, {}, "registers"),  # 2 of a thread's 8 rows in registers, the rest read from L1
    ("lstm", 64, 1, {"neurons": "hard"}, "blocks"),   # registers: the usual neurons only
    ("lstm", 192, 4, {}, "blocks"),     # a block's step still costs less than a dispatch
    ("lstm", 256, 1, {}, "tiles"),      # no longer (63 against 31.5 µs a step)
    ("gru", 256, 8, {}, "blocks"),      # two dispatches a step: blocks up to their limit
    ("single", 256, 4, {}, "blocks"),
    ("lstm", 512, 16, {}, "tiles"),
    ("lstm", 512, 64, {}, "step"),      # above batch 32 a thread per (row, unit) fills the GPU
    ("lstm", 256, 1, {"peephole": "dense"}, "blocks"),   # tiles leave dense peepholes out
    ("lstm", 512, 1, {"peephole": "dense"}, "step"),
    ("gru", 300, 4, {}, "tiles"),
    ("lstm", 32, 1, {}, "warp"),        # a lane owns its unit's rows: 0.90 against 1.03 µs a step (H200)
    ("single", 32, 1, {}, "warp"),      # 1.60 against 1.75
    ("gru", 17, 4, {}, "warp"),         # 1.46 against 1.46 (GRU 32 b1)
    ("lstm", 33, 1, {}, "registers"),   # two lanes a unit: CUDA's warp shuffles only
    ("single", 33, 1, {}, "registers"),  # a lane of two units: 1.45 against 1.35 (hidden 64 b4)
])
def test_vulkan(rng, kind, hidden, batch, opts, expected):
    assert rec.choose_recurrence("vulkan", cell(rng, kind, hidden, **opts), 25, batch) == expected


@pytest.mark.parametrize("kind, hidden, batch, opts, expected", [
    ("lstm", 64, 8, {}, "warp"),        # two lanes a unit on four warps: 0.66 against 0.73 µs a step (H200)
    ("gru", 64, 1, {}, "warp"),         # 0.73 against 0.83
    ("single", 128, 4, {}, "registers"),
    ("single", 32, 1, {}, "warp"),      # a lane owns its unit's row: 0.40 against 0.52 µs a step (H200)
    ("gru", 17, 4, {}, "warp"),         # 0.52 against 0.67 (GRU 32 b4)
    ("lstm", 32, 1, {}, "warp"),        # its stores in a second warp: 0.50 against 0.56
    ("lstm", 33, 1, {}, "warp"),        # two lanes a unit (LSTM 48 b1: 0.66 against 0.75)
    ("lstm", 65, 1, {}, "spread"),      # past hidden 64 two lanes' halves outgrow a lane's registers
    ("single", 33, 1, {}, "registers"),  # warp with two units a lane: 2.59 against 2.05 (hidden 64)
    ("single", 32, 1, {"neurons": "rectified"}, "blocks"),   # warp and registers: the usual neurons only
    ("lstm", 64, 1, {"peephole": "dense"}, "blocks"),
    ("lstm", 128, 8, {}, "spread"),     # U spread over 8 SMs' registers (registers would read rows from memory)
    ("lstm", 128, 1, {}, "spread"),
    ("lstm", 512, 2, {}, "spread"),
    ("single", 256, 1, {}, "spread"),
    ("gru", 128, 1, {}, "spread"),      # tagged words: 2.32 against the block kernel's 4.29 µs a step (H200)
    ("gru", 96, 4, {}, "spread"),       # 2.20 against 3.53
    ("gru", 256, 1, {}, "spread"),
    ("gru", 512, 4, {}, "spread"),      # split (partial sums added atomically) 10.6 against 10.9 (H200): from b8
    ("lstm", 128, 1, {"neurons": "hard"}, "blocks"),   # spread: the usual neurons only
    ("lstm", 704, 1, {}, "split"),        # split projecting in chunks: one dispatch, spread's two (9.5 against 11.7)
    ("lstm", 1024, 4, {}, "split"),       # 13.4 against spread's 13.7 µs a step (H200)
    ("lstm", 1056, 1, {}, "persistent"),  # U outgrows two blocks an SM
    ("gru", 1024, 1, {}, "spread"),       # 9.4 against persistent's 11.5
    ("gru", 1024, 2, {}, "split"),        # 10.8 against persistent's 12.4 µs a step (H200)
    ("lstm", 192, 4, {}, "spread"),
    ("lstm", 512, 16, {}, "spread"),
    ("lstm", 512, 32, {}, "split"),       # the batch in one pass a step: 16.6 against spread's 18.0 µs (H200)
    ("lstm", 512, 128, {}, "split"),
    ("single", 512, 64, {}, "split"),
    ("gru", 512, 64, {}, "split"),        # 43.0 against spread's 106.1 µs a step (H200)
    ("gru", 512, 16, {}, "split"),        # 18.3 against spread's 30.4 (partial sums written apart)
    ("gru", 512, 8, {}, "split"),         # 12.6 against spread's 17.0
    ("gru", 256, 4, {}, "spread"),        # 9.1 against split's 11.6
    ("gru", 128, 64, {}, "blocks"),       # up to SMALL_HIDDEN: split not measured, spread without tagged words
    ("gru", 128, 1, {"neurons": "hard"}, "blocks"),   # spread: the usual neurons only
    ("lstm", 512, 64, {"neurons": "hard"}, "persistent"),   # split and spread: the usual neurons only
    ("lstm", 512, 129, {}, "persistent"),  # split, spread: not measured above batch 128
    ("gru", 128, 8, {}, "spread"),        # 2.31 against 4.52
    ("gru", 1024, 4, {}, "split"),        # 11.8 against persistent's 17.0
    ("gru", 1024, 16, {}, "split"),       # two blocks an SM: 38.8 against persistent's 46.0 µs a step (H200)
    ("lstm", 1024, 16, {}, "split"),      # 64 inputs a thread, two blocks an SM: 25.0 against spread's 29.6
    ("lstm", 1024, 128, {}, "split"),     # 128.0 against 199.7
    ("lstm", 640, 16, {}, "spread"),      # 32 inputs on two blocks an SM, from batch 32 as at 512: 17.0 against 16.1
    ("lstm", 640, 32, {}, "split"),
    ("lstm", 512, 1, {"peephole": "dense"}, "step"),   # neither persistent nor tiles take them
])
def test_cuda(rng, kind, hidden, batch, opts, expected):
    assert rec.choose_recurrence("cuda", cell(rng, kind, hidden, **opts), 25, batch) == expected


def test_metal_and_cpu(rng):
    c = cell(rng, "lstm", 300)
    assert rec.choose_recurrence("metal", c, 25, 1) == "step"   # until `mpsrnn check` has passed on a Mac
    assert rec.choose_recurrence("cpu", c, 25, 1) == "lanes"


def test_where_the_persistent_kernel_projects(rng):
    assert not rec.project_apart("persistent", cell(rng, "lstm", 512), 25, 4)        # 210 MFLOP, 512 wide
    assert rec.project_apart("persistent", cell(rng, "lstm", 256, n_in=1024), 25, 1)  # 1024 wide
    assert rec.project_apart("persistent", cell(rng, "lstm", 256), 150, 4)           # 315 MFLOP
    # only lanes, persistent and spread can project inside their kernel
    assert rec.project_apart("tiles", cell(rng, "lstm", 64), 25, 1)


def test_where_the_spread_kernel_projects(rng):
    # its limit scales with its share of the SMs: 128 of 132 blocks for LSTM 512, 8 for LSTM 128
    assert not rec.project_apart("spread", cell(rng, "lstm", 512), 25, 1)   # 52 MFLOP
    assert rec.project_apart("spread", cell(rng, "lstm", 128), 1000, 1)     # 131 MFLOP on 8 of 132 SMs
    assert not rec.project_apart("spread", cell(rng, "lstm", 128), 50, 1)   # 6.6 MFLOP


@pytest.mark.parametrize("kind, hidden, batch, shape", [
    ("lstm", 128, 1, (1, 8, 4, 1)),      # a row a thread: 4 x 16 rows x 4 chunks = 256 threads a block
    ("lstm", 512, 2, (1, 128, 16, 2)),   # 16 rows x 16 chunks, 2 batch rows a pass
    ("lstm", 640, 1, (2, 107, 20, 1)),   # a row a thread would take 214 blocks: two
    ("lstm", 704, 1, None),              # two would take 141
    ("single", 96, 8, (1, 2, 3, 4)),     # a pass of 8 rows needs 8 x 48 unit threads: 4
    ("gru", 128, 1, (1, 4, 4, 1)),       # z and r rows: 2 x 32 units x 4 chunks = 256 threads
    ("gru", 512, 8, (1, 64, 16, 4)),     # r∘h0 and z∘h0 of 4 rows: 16 KiB of shared memory
])
def test_spread_shapes(kind, hidden, batch, shape):
    from mpsrnn.kernels.layout import CELL_GRU, CELL_LSTM, CELL_SINGLE_GATE
    from mpsrnn.kernels.sequence_spread import spread_shape
    cell_kind = {"lstm": CELL_LSTM, "gru": CELL_GRU, "single": CELL_SINGLE_GATE}[kind]
    assert spread_shape(cell_kind, 0, hidden, True, batch, 132) == shape


@pytest.mark.parametrize("kind, hidden, batch, one_step, plan", [
    ("lstm", 128, 8, False, (1, 8, 4, 1, 8)),     # 8 groups of 8 blocks, a row a pass each
    ("lstm", 128, 1, False, (1, 8, 4, 1, 1)),     # one row: one group
    ("lstm", 192, 4, False, (1, 20, 6, 1, 4)),    # 6 groups would fit 132 SMs, 4 rows make 4
    ("lstm", 128, 12, False, (1, 8, 4, 2, 6)),    # 8 groups of rows of 2 would leave 2 idle: 6
    ("lstm", 512, 4, False, (1, 128, 16, 4, 1)),  # 128 blocks: no room for a second group
    ("gru", 128, 8, False, (1, 4, 4, 1, 8)),
    ("gru", 512, 4, True, (1, 64, 16, 4, 1)),     # one step from zeros: its own kernel, one group
])
def test_spread_plans(kind, hidden, batch, one_step, plan):
    """The spread kernel's plan: its shape, then batch groups within one block an SM, on blocks of
    SPREAD_BLOCK threads (CUDA's)."""
    assert rec._spread_plan(cell(np.random.default_rng(0), kind, hidden), batch, one_step) == plan + (rec.SPREAD_BLOCK,)


@pytest.mark.parametrize("kind, hidden, batch, one_step, tagged", [
    ("lstm", 128, 1, False, True),      # 8 blocks poll 128 words each
    ("lstm", 128, 8, False, True),      # 8 groups of 8 blocks, each polling its row: 8 x 8 x 128 words
    ("lstm", 192, 4, False, True),      # 4 groups of 20 blocks x 4 rows x 192 = 15360
    ("single", 128, 4, False, True),
    ("lstm", 256, 8, False, True),      # 32 blocks x 8 rows x 256 = 65536: the most words at 32 blocks
    ("lstm", 320, 2, False, True),      # 54 blocks, 34560 words: within 80 and 36000
    ("lstm", 384, 2, False, False),     # 77 blocks, 59136 words
    ("gru", 384, 1, False, False),      # 39 blocks, 44928 words
    ("lstm", 512, 1, False, False),     # 128 blocks
    ("gru", 128, 1, False, True),       # 4 blocks x 128 words, three vectors a step (h, r∘h0, z∘h0)
    ("gru", 128, 8, False, True),       # 8 groups of 4 blocks: 4 x 8 x 128 x 3 = 12288
    ("gru", 128, 64, False, False),     # 4 x 64 x 128 x 3 = 98304 words
    ("gru", 512, 4, False, False),      # 64 blocks
    ("lstm", 128, 1, True, False),      # one step from zeros: nothing crosses
])
def test_spread_tagged_words(kind, hidden, batch, one_step, tagged, monkeypatch):
    """Which spread layers pass h as tagged words (``spread_tagged``): on CUDA, those whose groups'
    blocks and the words they poll a step are within SPREAD_TAGGED_LIMITS; the knob decides on any GPU."""
    c = cell(np.random.default_rng(0), kind, hidden)
    grid = rec._spread_plan(c, batch, one_step)[1]
    assert rec.spread_tagged("cuda", c, batch, one_step, grid) == tagged
    assert not rec.spread_tagged("vulkan", c, batch, one_step, grid)
    monkeypatch.setenv("MPSRNN_SPREAD_EXCHANGE", "tagged")
    assert rec.spread_tagged("vulkan", c, batch, one_step, grid) == (not one_step)
    monkeypatch.setenv("MPSRNN_SPREAD_EXCHANGE", "barrier")
    assert not rec.spread_tagged("cuda", c, batch, one_step, grid)
    monkeypatch.setenv("MPSRNN_SPREAD_EXCHANGE", "words")   # read first: a bad value is an error anywhere
    with pytest.raises(ValueError, match="MPSRNN_SPREAD_EXCHANGE: expected 'tagged' or 'barrier'"):
        rec.spread_tagged("cuda", c, batch, one_step, grid)


@pytest.mark.parametrize("kind, hidden, batch, tagged", [
    ("lstm", 128, 1, True),       # 8 blocks: 2 x 1024 words
    ("lstm", 256, 4, True),       # 32 blocks, 2 groups: 2 x 32768 = 65536 words
    ("lstm", 256, 8, False),      # 2 x 65536: alone, it takes them
    ("lstm", 192, 16, False),     # 20 blocks, 2 x 61440
    ("lstm", 320, 2, False),      # 54 blocks, 2 x 34560
    ("single", 512, 4, False),    # 32 blocks, 2 x 65536
    ("gru", 256, 4, True),        # 16 blocks, 49152 words: a GRU pair counts one layer's
    ("gru", 128, 32, True),       # 4 blocks, 49152
])
def test_paired_spread_tagged_words(kind, hidden, batch, tagged):
    """Which pairs of directions pass h as tagged words: the LSTM and the single gate count both
    layers' words against SPREAD_TAGGED_LIMITS, the GRU (two barriers a step without them) one's."""
    c = cell(np.random.default_rng(0), kind, hidden)
    grid = rec._spread_plan(c, batch, False, share=2)[1]
    assert rec.spread_tagged("cuda", c, batch, False, grid, paired=True) == tagged
    assert rec.spread_tagged("cuda", c, batch, False, grid)   # as one layer alone, each takes them


def test_spread_on_vulkan(monkeypatch):
    """Spread runs on Vulkan on a GPU whose SMs the CUDA driver counts (an NVIDIA GPU, the same by
    name), not on lavapipe, nor on another GPU, nor where no SM is counted; the knob turns it off."""
    from mpsrnn import backend
    devices = [(2, "NVIDIA H200")]   # (VkPhysicalDeviceType, name): a discrete GPU
    monkeypatch.setattr(backend, "_vulkan_devices", lambda: devices)
    monkeypatch.setattr(backend, "_cuda_device_name", lambda: "NVIDIA H200")
    assert SPREAD_ON_VULKAN()
    monkeypatch.setenv("MPSRNN_VULKAN_SPREAD", "off")
    assert not SPREAD_ON_VULKAN()
    monkeypatch.setenv("MPSRNN_VULKAN_SPREAD", "on")
    monkeypatch.setattr(rec, "_sms", lambda: 1)   # no CUDA driver: no SM count
    assert not SPREAD_ON_VULKAN()
    monkeypatch.setattr(rec, "_sms", lambda: 132)
    devices[:] = [(backend.VK_PHYSICAL_DEVICE_TYPE_CPU, "llvmpipe (LLVM 15.0.6, 256 bits)")]
    assert not SPREAD_ON_VULKAN()
    devices[:] = [(backend.VK_PHYSICAL_DEVICE_TYPE_CPU, "llvmpipe"), (2, "NVIDIA H200")]   # the GPU first
    assert SPREAD_ON_VULKAN()
    devices[:] = [(1, "AMD Radeon Graphics"), (2, "NVIDIA H200")]   # Vulkan's GPU is not CUDA's
    assert not SPREAD_ON_VULKAN()
    monkeypatch.setenv("MPSRNN_VULKAN_SPREAD", "sometimes")
    with pytest.raises(ValueError, match="MPSRNN_VULKAN_SPREAD: expected 'on' or 'off'"):
        SPREAD_ON_VULKAN()


@pytest.mark.parametrize("kind, hidden, batch, steps, opts, spreads", [
    ("lstm", 128, 1, 1000, {}, True),
    ("lstm", 256, 4, 25, {}, True),
    ("gru", 128, 8, 1000, {}, True),
    ("lstm", 512, 1, 200, {}, True),     # 128 blocks: past CUDA's limits of tagged words, the only form here
    ("gru", 512, 4, 1, {}, True),        # one step from zeros: nothing crosses
    ("single", 1024, 1, 100, {}, True),
    ("lstm", 64, 1, 1000, {}, False),    # all of U in one block's registers: the registers kernel
    ("single", 128, 4, 1000, {}, False),
    ("lstm", 96, 4, 1000, {}, True),     # the registers kernel would read rows from memory
    ("lstm", 1024, 1, 25, {}, True),     # on one block an SM of 512 threads (two an SM can hang)
    ("gru", 1024, 1, 25, {}, True),      # the same (it hung on two blocks an SM)
    ("lstm", 2048, 1, 25, {}, True),     # past 132 blocks of 512 threads: 6 rows a thread from memory
    ("lstm", 2048, 2, 25, {}, False),    # ... read twice a step: past MEMORY_ROW_READS
    ("lstm", 256, 256, 25, {}, False),   # past SPREAD_MAX_BATCH
    ("lstm", 128, 1, 1000, {"peephole": "dense"}, False),   # dense peepholes: spread has none
])
def test_vulkan_spread(kind, hidden, batch, steps, opts, spreads, monkeypatch):
    """Where spread runs on Vulkan (an NVIDIA GPU): layers that fit one block an SM but not one
    block's registers (their words tagged from epochs, their projection apart, whatever the knobs:
    Vulkan has no grid barrier); the others keep Vulkan's other kernels."""
    monkeypatch.setattr(rec, "spread_on_vulkan", lambda: True)
    monkeypatch.setattr(rec, "current_arch", lambda: "vulkan")
    c = cell(np.random.default_rng(0), kind, hidden, **opts)
    assert (rec.choose_recurrence("vulkan", c, steps, batch) == "spread") == spreads
    if spreads:
        assert rec.spread_per_sm() == 1
        one_step = steps == 1
        grid = rec._spread_plan(c, batch, one_step)[1]
        monkeypatch.setenv("MPSRNN_SPREAD_EXCHANGE", "barrier")
        monkeypatch.setenv("MPSRNN_SPREAD_START", "barrier")
        monkeypatch.setenv("MPSRNN_PROJECTION", "inside")
        tagged = rec.spread_tagged("vulkan", c, batch, one_step, grid)
        assert tagged == (not one_step) and rec.spread_epochs(tagged) == (not one_step)
        assert rec.project_apart("spread", c, steps, batch)


def test_spread_on_wide_blocks(monkeypatch):
    """On Vulkan the layers that one block an SM of 256 threads cannot hold take one of 512 (no more
    blocks than SMs; VULKAN_WIDE_BLOCKS, MPSRNN_SPREAD_THREADS=512); the others keep their plans;
    MPSRNN_SPREAD_THREADS=256 keeps them on tiles; never on CUDA (two blocks an SM there)."""
    monkeypatch.setattr(rec, "spread_on_vulkan", lambda: True)
    monkeypatch.setattr(rec, "current_arch", lambda: "vulkan")
    monkeypatch.setattr(rec, "_sms", lambda: 132)
    big, gru, small, huge = (cell(np.random.default_rng(0), "lstm", 1024), cell(np.random.default_rng(0), "gru", 1024),
                             cell(np.random.default_rng(0), "lstm", 512), cell(np.random.default_rng(0), "lstm", 2048))
    monkeypatch.setenv("MPSRNN_SPREAD_THREADS", "256")
    before = rec._spread_fit(small, 4)
    assert rec.choose_recurrence("vulkan", big, 25, 1) == "tiles" and rec._spread_fit(big, 1) == (None, 256)
    monkeypatch.delenv("MPSRNN_SPREAD_THREADS")   # on by default: LSTM 1024 b1 t25 47.3 against 79.6 µs a step
    assert rec.choose_recurrence("vulkan", big, 25, 1) == "spread"
    assert rec._spread_fit(big, 1) == ((2, 128, 32, 1), 512)
    assert rec.choose_recurrence("vulkan", gru, 25, 4) == "spread" and rec._spread_fit(gru, 4)[1] == 512
    assert rec._spread_fit(small, 4) == before and before[1] == 256
    assert rec.choose_recurrence("vulkan", huge, 25, 2) == "tiles"   # past 132 blocks of 512 too (and
    # past MEMORY_ROW_READS: test_spread_with_rows_from_memory)
    monkeypatch.setenv("MPSRNN_SPREAD_THREADS", "512")
    assert rec._spread_fit(big, 1) == ((2, 128, 32, 1), 512)
    monkeypatch.setattr(rec, "current_arch", lambda: "cuda")
    assert not rec.spread_wide_blocks()
    monkeypatch.setenv("MPSRNN_SPREAD_THREADS", "1024")
    with pytest.raises(ValueError, match="MPSRNN_SPREAD_THREADS: expected 256 or 512"):
        rec.spread_wide_blocks()


def test_spread_with_rows_from_memory(monkeypatch):
    """On Vulkan, the layers past what 132 blocks of 512 threads hold in registers take spread with
    up to 8 rows a thread (the GRU's up to 4 of each phase), those past 2 (the GRU's past 1 a phase)
    read from memory, where a thread reads at most MEMORY_ROW_READS rows a step over its passes
    (LSTM 1536 at batch 1-4: 3 rows, one or two passes; LSTM 2048 at batch 1: 6; GRU 2048: 3 a phase)
    or at most MEMORY_PASS_ROWS a pass up to batch MEMORY_PASS_BATCH (GRU 1536: 2 a phase, batch 1-4),
    else the tiles. MPSRNN_SPREAD_FROM_MEMORY=on takes it at any read count, off never."""
    monkeypatch.setattr(rec, "spread_on_vulkan", lambda: True)
    monkeypatch.setattr(rec, "current_arch", lambda: "vulkan")
    monkeypatch.setattr(rec, "_sms", lambda: 132)
    rng = np.random.default_rng(0)
    lstm, mid, gru, big_gru = (cell(rng, "lstm", 2048), cell(rng, "lstm", 1536), cell(rng, "gru", 1536),
                               cell(rng, "gru", 2048))
    assert rec._spread_fit(mid, 4) == ((5, 128, 48, 2), 512) and rec.memory_reads(mid, (5, 128, 48, 2), 4) == (3, 6)
    assert [rec.choose_recurrence("vulkan", mid, 50, b) for b in (1, 2, 4, 5, 8)] == ["spread"] * 3 + ["tiles"] * 2
    assert rec._spread_fit(lstm, 1) == ((8, 128, 64, 1), 512)
    assert [rec.choose_recurrence("vulkan", lstm, 25, b) for b in (1, 2, 4)] == ["spread", "tiles", "tiles"]
    assert rec._spread_fit(gru, 1) == ((3, 103, 48, 1), 512) and rec.memory_reads(gru, (3, 103, 48, 1), 4) == (4, 16)
    assert [rec.choose_recurrence("vulkan", gru, 1500, b) for b in (1, 2, 4, 5)] == ["spread"] * 3 + ["tiles"]
    assert rec._spread_fit(big_gru, 1) == ((4, 128, 64, 1), 512)
    assert [rec.choose_recurrence("vulkan", big_gru, 1500, b) for b in (1, 2)] == ["spread", "tiles"]
    assert rec.choose_recurrence("vulkan", cell(rng, "gru", 2560), 1500, 1) == "tiles"   # past 4 rows a phase
    monkeypatch.setenv("MPSRNN_SPREAD_FROM_MEMORY", "on")
    assert rec.choose_recurrence("vulkan", lstm, 25, 8) == "spread" and rec._spread_fit(lstm, 8)[0] == (8, 128, 64, 1)
    assert rec.choose_recurrence("vulkan", gru, 1500, 8) == "spread"
    monkeypatch.setenv("MPSRNN_SPREAD_FROM_MEMORY", "off")
    assert rec.choose_recurrence("vulkan", mid, 50, 1) == "tiles" and rec.choose_recurrence("vulkan", gru, 1500, 1) == "tiles"
    monkeypatch.setenv("MPSRNN_SPREAD_FROM_MEMORY", "on")
    monkeypatch.setenv("MPSRNN_SPREAD_THREADS", "256")   # rows from memory: on 512-thread blocks only
    assert rec.choose_recurrence("vulkan", lstm, 25, 1) == "tiles"


def test_spread_epochs(monkeypatch):
    """Runs with tagged words start with a grid barrier on CUDA unless MPSRNN_SPREAD_START=epochs,
    with epochs on Vulkan; runs without them have nothing to start."""
    assert not rec.spread_epochs(True)
    monkeypatch.setenv("MPSRNN_SPREAD_START", "epochs")
    assert rec.spread_epochs(True) and not rec.spread_epochs(False)
    monkeypatch.setenv("MPSRNN_SPREAD_START", "barrier")
    assert not rec.spread_epochs(True)
    monkeypatch.setenv("MPSRNN_SPREAD_START", "fence")
    with pytest.raises(ValueError, match="MPSRNN_SPREAD_START: expected 'barrier' or 'epochs'"):
        rec.spread_epochs(False)
    # Vulkan: epochs by default (no grid barrier's fence); the barrier start only where asked and
    # spread runs on one block (lavapipe's tests), never on a GPU's grid
    monkeypatch.setattr(rec, "current_arch", lambda: "vulkan")
    monkeypatch.delenv("MPSRNN_SPREAD_START")
    assert rec.spread_epochs(True) and not rec.spread_epochs(False)
    monkeypatch.setenv("MPSRNN_SPREAD_START", "barrier")
    assert not rec.spread_epochs(True)
    monkeypatch.setattr(rec, "spread_on_vulkan", lambda: True)
    assert rec.spread_epochs(True)


def test_small_gru_keeps_the_block_kernel_without_tagged_words(monkeypatch):
    """A GRU up to SMALL_HIDDEN spreads only with its tagged words: with grid barriers, or for one
    step (nothing crosses), the block kernel's one block a sequence was faster."""
    c = cell(np.random.default_rng(0), "gru", 128)
    assert rec.choose_recurrence("cuda", c, 1000, 8) == "spread"
    assert rec.choose_recurrence("cuda", c, 1, 8) == "blocks"
    monkeypatch.setenv("MPSRNN_SPREAD_EXCHANGE", "barrier")
    assert rec.choose_recurrence("cuda", c, 1000, 8) == "blocks"


@pytest.mark.parametrize("kind, hidden, batch, shape", [
    ("lstm", 704, 1, (2, 141, 22, 1)),    # two rows a thread on 141 blocks: two blocks an SM on some
    ("lstm", 1024, 4, (2, 256, 32, 4)),   # 4 units a block, 16 rows x 32 chunks / 2 = 256 threads
    ("lstm", 1056, 1, None),              # 264 blocks would hold 1024 units at most
    ("gru", 1024, 1, (1, 256, 32, 1)),
    ("lstm", 512, 1, (1, 128, 16, 1)),    # fits one block an SM: keeps it
])
def test_spread_shapes_on_two_blocks_per_sm(kind, hidden, batch, shape, monkeypatch):
    monkeypatch.setattr(rec, "_sms", lambda: 132)
    c = cell(np.random.default_rng(0), kind, hidden)
    assert rec._spread_shape(c, batch) == shape   # SPREAD_PER_SM: two by default
    monkeypatch.setenv("MPSRNN_SPREAD_PER_SM", "1")
    assert rec._spread_shape(c, batch) == (shape if shape and shape[1] <= 132 else None)
    monkeypatch.setenv("MPSRNN_SPREAD_PER_SM", "3")
    with pytest.raises(ValueError, match="MPSRNN_SPREAD_PER_SM: expected 1 or 2"):
        rec._spread_shape(c, batch)


@pytest.mark.parametrize("kind, hidden, batch, sms, width, shape", [
    ("gru", 512, 64, 132, 32, (64, 8, 16, 64, 32)),    # z and r rows of 64 units: 128 threads; 8 groups x 16 splits
    ("gru", 512, 300, 132, 32, (64, 8, 16, 128, 32)),  # r∘h0 and z∘h0 of 128 rows fill 32 KiB: passes of 128
    ("gru", 704, 32, 132, 32, (118, 6, 22, 32, 32)),   # 6 groups x 22 splits = 132 blocks; 2 x 118 rows a block
    ("gru", 736, 32, 132, 32, None),
    ("gru", 1024, 64, 264, 32, (128, 8, 32, 64, 32)),  # two blocks an SM: 256 blocks
    ("gru", 512, 64, 264, 64, None),                    # a GRU thread holds two rows: no room for 2 x 64
    ("lstm", 512, 300, 132, 32, (64, 8, 16, 256, 32)),  # 4 x 64 rows; h of 256 rows a pass
    ("lstm", 1024, 64, 264, 32, None),
    ("lstm", 1024, 300, 264, 64, (64, 16, 16, 64, 64)),  # 16 groups x 16 splits; passes of 64 rows
])
def test_split_shapes(kind, hidden, batch, sms, width, shape):
    from mpsrnn.kernels.layout import CELL_GRU, CELL_LSTM
    from mpsrnn.kernels.sequence_split import split_partials, split_shape
    cell_kind = {"lstm": CELL_LSTM, "gru": CELL_GRU}[kind]
    assert split_shape(cell_kind, 0, hidden, True, batch, sms, width) == shape
    if shape:   # the GRU's partial sums: z, r, Uh·(r∘h0), Vh·(z∘h0); the LSTM's: its four gates
        assert split_partials(cell_kind, batch, hidden, shape[2]) == shape[2] * batch * 4 * hidden


def test_split_on_two_blocks_per_sm_only_where_one_does_not_hold_the_layer(rng, monkeypatch):
    assert rec._split_shape(cell(rng, "lstm", 512), 64) == (64, 8, 16, 64, 32)      # one block an SM
    assert rec._split_shape(cell(rng, "lstm", 640), 64) == (50, 13, 20, 64, 32)     # 260 blocks of 32 inputs
    assert rec._split_shape(cell(rng, "lstm", 1024), 64) == (64, 16, 16, 64, 64)    # 256 blocks of 64 inputs
    assert rec._split_shape(cell(rng, "gru", 1024), 64) == (128, 8, 32, 64, 32)     # a GRU thread: 32 inputs
    monkeypatch.setenv("MPSRNN_SPLIT_PER_SM", "1")
    assert rec._split_shape(cell(rng, "lstm", 640), 64) is None
    assert rec.choose_recurrence("cuda", cell(rng, "lstm", 1024), 25, 64) == "spread"
    monkeypatch.setenv("MPSRNN_SPLIT_PER_SM", "4")
    with pytest.raises(ValueError, match="MPSRNN_SPLIT_PER_SM: expected 1 or 2"):
        rec._split_shape(cell(rng, "lstm", 640), 64)


def test_split_halves_only_where_the_grid_fits_one_block_an_sm(rng, monkeypatch):
    """Two copies of a split grid, each on half the batch rows, where one copy takes one block an SM
    (on the 132 SMs these tests assume) from batch 32; never where one copy already takes two."""
    assert [rec.split_halves(cell(rng, "lstm", 512), b) for b in (16, 31, 32, 128)] == [1, 1, 2, 2]
    assert rec.split_halves(cell(rng, "gru", 512), 64) == 2
    assert rec.split_halves(cell(rng, "lstm", 1024), 64) == 1     # 256 blocks: already two an SM
    assert rec.split_halves(cell(rng, "gru", 1024), 64) == 1
    monkeypatch.setenv("MPSRNN_SPLIT_HALVES", "2")
    assert rec.split_halves(cell(rng, "lstm", 512), 16) == 2
    assert rec.split_halves(cell(rng, "lstm", 1024), 64) == 1     # two copies would not be resident
    monkeypatch.setenv("MPSRNN_SPLIT_HALVES", "1")
    assert rec.split_halves(cell(rng, "lstm", 512), 64) == 1
    monkeypatch.setenv("MPSRNN_SPLIT_PER_SM", "1")
    monkeypatch.delenv("MPSRNN_SPLIT_HALVES")
    assert rec.split_halves(cell(rng, "lstm", 512), 64) == 1
    monkeypatch.delenv("MPSRNN_SPLIT_PER_SM")
    monkeypatch.setenv("MPSRNN_SPLIT_HALVES", "3")
    with pytest.raises(ValueError, match="MPSRNN_SPLIT_HALVES: expected 1 or 2"):
        rec.split_halves(cell(rng, "lstm", 512), 64)


def test_split_partial_sums_added_atomically_up_to_a_batch(rng, monkeypatch):
    """The split kernel's blocks add their partial sums atomically into one sum up to batch 32, the
    GRU's up to 64; above, each writes its own for the cells to add. The workspace holds one sum, or
    one a split."""
    from mpsrnn.kernels.sequence_split import split_partials
    lstm, gru = cell(rng, "lstm", 1024), cell(rng, "gru", 1024)
    assert [rec.split_atomic(lstm, b) for b in (1, 16, 32, 33, 64)] == [True, True, True, False, False]
    assert [rec.split_atomic(gru, b) for b in (2, 64, 65, 128)] == [True, True, False, False]
    apart = rec.PROJECT_APART
    extra = rec.split_workspace(lstm, 100, 16, apart) + 3 * 16 * 1024   # past the usual scratch region
    assert extra == split_partials(lstm.kind, 16, 1024, 1)
    assert rec.split_workspace(lstm, 100, 64, apart) + 3 * 64 * 1024 == split_partials(lstm.kind, 64, 1024, 16)
    monkeypatch.setenv("MPSRNN_SPLIT_REDUCE", "apart")
    assert not rec.split_atomic(gru, 2)
    assert rec.split_workspace(lstm, 100, 16, apart) + 3 * 16 * 1024 == split_partials(lstm.kind, 16, 1024, 16)
    monkeypatch.setenv("MPSRNN_SPLIT_REDUCE", "atomic")
    assert rec.split_atomic(lstm, 128)
    monkeypatch.setenv("MPSRNN_SPLIT_REDUCE", "rows")
    with pytest.raises(ValueError, match="MPSRNN_SPLIT_REDUCE: expected 'atomic' or 'apart', got 'rows'"):
        rec.split_atomic(lstm, 16)


def test_gru_split_makes_its_gates_in_the_blocks_up_to_batch_32(rng, monkeypatch):
    """The GRU's split kernel, its sums added atomically, makes r∘h0 and z∘h0 in every block up to
    batch 32, in the cells above; never where its sums are written apart, nor for the LSTM."""
    gru = cell(rng, "gru", 1024)
    assert [rec.split_gates_here(gru, b) for b in (2, 32, 33, 64, 65)] == [True, True, False, False, False]
    assert not rec.split_gates_here(cell(rng, "lstm", 1024), 4)
    monkeypatch.setenv("MPSRNN_SPLIT_GRU_GATES", "blocks")
    assert rec.split_gates_here(gru, 64) and not rec.split_gates_here(gru, 128)   # 128: sums apart
    monkeypatch.setenv("MPSRNN_SPLIT_GRU_GATES", "cells")
    assert not rec.split_gates_here(gru, 2)
    monkeypatch.setenv("MPSRNN_SPLIT_GRU_GATES", "here")
    for c in (gru, cell(rng, "lstm", 1024)):   # the LSTM's too: a bad value is no less wrong there
        with pytest.raises(ValueError, match="MPSRNN_SPLIT_GRU_GATES: expected 'blocks' or 'cells', got 'here'"):
            rec.split_gates_here(c, 2)


def test_gru_takes_the_split_kernel_from_batch_2_where_spread_takes_two_blocks_an_sm(rng):
    """With its partial sums added atomically the GRU's split kernel beats spread and persistent from
    batch 2 where spread's grid takes two blocks an SM (batch 1 keeps spread), and from batch 8
    where it takes one."""
    gru = cell(rng, "gru", 1024)
    assert [rec.choose_recurrence("cuda", gru, 100, b) for b in (1, 2, 4, 64)] == ["spread", "split", "split", "split"]
    assert [rec.choose_recurrence("cuda", cell(rng, "gru", 512), 100, b) for b in (2, 7, 8)] == ["spread", "spread",
                                                                                                  "split"]
    assert rec.choose_recurrence("cuda", cell(rng, "gru", 2048), 100, 4) == "persistent"   # too large for split


@pytest.mark.parametrize("n", [1, 2, 5, 16, 22, 33])
def test_split_partial_sums_add_as_a_tree(n):
    from mpsrnn.kernels.dots import tree_order
    values = np.random.default_rng(n).standard_normal(n)
    v = values.copy()
    for into, source in tree_order(n):
        v[into] += v[source]
    assert v[0] == pytest.approx(values.sum(), rel=1e-12)
    assert len(tree_order(n)) == n - 1   # every value added once
    depth = [0] * n   # additions on the longest path into each value: a tree's, not a row's
    for into, source in tree_order(n):
        depth[into] = max(depth[into], depth[source]) + 1
    assert depth[0] == (n - 1).bit_length()


def test_forced_path_that_does_not_apply_falls_back(rng, monkeypatch):
    monkeypatch.setenv("MPSRNN_RECURRENCE", "tiles")
    assert rec.choose_recurrence("vulkan", cell(rng, "lstm", 512, peephole="dense"), 25, 1) == "step"
    monkeypatch.setenv("MPSRNN_RECURRENCE", "persistent")
    with pytest.raises(ValueError, match="MPSRNN_RECURRENCE: expected 'step', 'rows', 'blocks', 'registers', "
                                         "'warp' or 'tiles' on vulkan"):
        rec.choose_recurrence("vulkan", cell(rng, "lstm", 64), 25, 1)


@pytest.mark.parametrize("cell_kind, peephole, hidden, standard, rho, on_cuda", [
    ("lstm", "none", 32, True, 1, (1, 256)),      # 128 rows x 1 chunk: a row a thread
    ("lstm", "none", 48, True, 2, (3, 128)),      # 192 rows x 2 chunks > 256 threads: two rows a thread;
    ("lstm", "diagonal", 64, True, 2, (4, 128)),  # on CUDA (spills at 256) four on 128 threads
    ("lstm", "none", 65, True, 4, (4, 256)),      # 260 rows x 3 chunks: 2 rows a thread in registers, 2 from memory
    ("lstm", "none", 128, True, 8, (8, 256)),
    ("lstm", "none", 129, True, None, None),      # 5 chunks
    ("lstm", "dense", 16, True, None, None),      # a second product per step
    ("lstm", "none", 16, False, None, None),      # other neurons: the plain block kernel
    ("gru", "none", 64, True, 1, (1, 256)),       # z and r: 128 rows x 2 chunks; the second set on the same threads
    ("gru", "none", 65, True, None, None),        # would need two rows a thread, and its threads hold two sets
    ("single", "none", 128, True, 2, (2, 256)),   # 128 rows x 4 chunks (no spill at 256 threads)
    ("single", "none", 129, True, None, None),
])
def test_registers_shapes(cell_kind, peephole, hidden, standard, rho, on_cuda, monkeypatch):
    """Rows a thread on 256 threads (Vulkan, Metal), and (rows, threads) on CUDA; MPSRNN_REGISTERS_BLOCK
    sets the threads on any arch."""
    from mpsrnn.kernels.layout import CELL_GRU, CELL_LSTM, CELL_SINGLE_GATE, PEEP_DENSE, PEEP_DIAGONAL, PEEP_NONE
    from mpsrnn.kernels.sequence_registers import registers_shape
    kind = {"lstm": CELL_LSTM, "gru": CELL_GRU, "single": CELL_SINGLE_GATE}[cell_kind]
    peep = {"none": PEEP_NONE, "dense": PEEP_DENSE, "diagonal": PEEP_DIAGONAL}[peephole]
    assert registers_shape(kind, peep, hidden, standard, cuda=False) == (None if rho is None else (rho, 256))
    assert registers_shape(kind, peep, hidden, standard, cuda=True) == on_cuda
    monkeypatch.setenv("MPSRNN_REGISTERS_BLOCK", "256")
    assert registers_shape(kind, peep, hidden, standard, cuda=True) == (None if rho is None else (rho, 256))


def test_where_the_lanes_kernel_runs_serially(rng):
    assert rec.lanes_serial(cell(rng, "lstm", 256), 50, 1)          # one row: one thread works anyway
    assert rec.lanes_serial(cell(rng, "lstm", 64), 25, 2)           # 3.3 MFLOP: waking the pool costs more
    assert rec.lanes_serial(cell(rng, "lstm", 64), 50, 2)           # 6.6 MFLOP
    assert not rec.lanes_serial(cell(rng, "single", 128), 50, 4)    # 13 MFLOP
    assert not rec.lanes_serial(cell(rng, "lstm", 64), 200, 8)


class _Run:
    """The parts of a layer run that pair_directions reads."""

    def __init__(self, cell, recurrence="spread", projected_apart=False):
        self.cell, self.recurrence, self.projected_apart = cell, recurrence, projected_apart


def test_which_bidirectional_levels_share_a_launch(rng, monkeypatch):
    lstm512 = cell(rng, "lstm", 512)
    assert rec.pair_directions("cuda", _Run(lstm512), _Run(lstm512), 16)   # on by default
    monkeypatch.setenv("MPSRNN_PAIR_DIRECTIONS", "on")
    assert rec.pair_directions("cuda", _Run(lstm512), _Run(cell(rng, "lstm", 512)), 16)
    assert rec._paired_shape(lstm512, 16) == (1, 128, 16, 8)   # one row a thread, two blocks an SM
    monkeypatch.setenv("MPSRNN_SPREAD_PER_SM", "1")
    assert rec._paired_shape(lstm512, 16) == (2, 64, 16, 8)    # two rows a thread on half the SMs
    monkeypatch.delenv("MPSRNN_SPREAD_PER_SM")
    assert rec.pair_directions("vulkan", _Run(lstm512), _Run(lstm512), 16)   # asked: spread's pair, tagged words
    assert not rec.pair_directions("vulkan", _Run(lstm512, "split"), _Run(lstm512, "split"), 64)   # grid barriers
    assert not rec.pair_directions("cuda", _Run(lstm512), _Run(lstm512, "persistent"), 16)
    persistent = _Run(lstm512, "persistent")   # only spread and split have paired kernels
    assert not rec.pair_directions("cuda", persistent, persistent, 16)
    assert not rec.pair_directions("cuda", _Run(lstm512), _Run(cell(rng, "lstm", 512, n_in=256)), 16)
    assert not rec.pair_directions("cuda", _Run(lstm512), _Run(lstm512, projected_apart=True), 16)
    big = cell(rng, "lstm", 1024)   # fits 264 blocks at two rows a thread (256 blocks), not 132
    assert rec._spread_shape(big, 1) is not None and not rec.pair_directions("cuda", _Run(big), _Run(big), 1)
    wide = _Run(big, "split")   # its split grid takes two blocks an SM already: no room for a pair
    assert rec._split_shape(big, 64)[1:3] == (16, 16) and not rec.pair_directions("cuda", wide, wide, 64)
    split = _Run(lstm512, "split")   # the split kernel's pairs: two blocks an SM, both grids whole
    assert rec.pair_directions("cuda", split, split, 64)
    assert not rec.pair_directions("cuda", split, _Run(lstm512), 64)
    monkeypatch.delenv("MPSRNN_PAIR_DIRECTIONS")
    assert rec.pair_directions("cuda", split, split, 64)   # on by default: b64 36.1 against 47.0 µs a step
    assert rec.pair_directions("vulkan", _Run(lstm512), _Run(lstm512), 16)   # on there too: b16 49.1 against 72.6
    monkeypatch.setenv("MPSRNN_PAIR_DIRECTIONS", "off")
    assert not rec.pair_directions("vulkan", _Run(lstm512), _Run(lstm512), 16)
    assert not rec.pair_directions("cuda", split, split, 64)
    assert not rec.pair_directions("cuda", _Run(lstm512), _Run(lstm512), 16)
    monkeypatch.setenv("MPSRNN_PAIR_DIRECTIONS", "sometimes")
    with pytest.raises(ValueError, match="MPSRNN_PAIR_DIRECTIONS: expected 'on' or 'off'"):
        rec.pair_directions("cuda", _Run(lstm512), _Run(lstm512), 16)


def test_lanes_row_groups(monkeypatch):
    """The CPU's lanes kernel steps a thread's rows in fours where it has four or more and the CPU has
    AVX-512, in pairs where it has two or more (serially, every row of the batch is the calling
    thread's), as MPSRNN_CPU_ROW_GROUP says where set."""
    from mpsrnn.kernels.grid import cpu_tasks
    from mpsrnn.kernels.sequence_lanes import MOST_ROWS
    monkeypatch.delenv("MPSRNN_CPU_ROW_GROUP", raising=False)
    four = min(4, MOST_ROWS)
    assert [rec.lane_row_group(True, b) for b in (1, 2, 3, 4, 8)] == [1, 2, 2, four, four]
    threads = cpu_tasks()
    assert rec.lane_row_group(False, threads) == 1 and rec.lane_row_group(False, threads + 1) == 2
    assert rec.lane_row_group(False, 3 * threads) == 2 and rec.lane_row_group(False, 4 * threads) == four
    monkeypatch.setenv("MPSRNN_CPU_ROW_GROUP", "1")
    assert rec.lane_row_group(True, 8) == 1
    monkeypatch.setenv("MPSRNN_CPU_ROW_GROUP", "4")
    assert rec.lane_row_group(True, 2) == four
    monkeypatch.setenv("MPSRNN_CPU_ROW_GROUP", "3")
    with pytest.raises(ValueError, match="MPSRNN_CPU_ROW_GROUP: expected 1, 2 or 4"):
        rec.lane_row_group(True, 8)


def test_persistent_weight_load_groups(monkeypatch):
    from mpsrnn.kernels.sequence_persistent import persistent_loads
    monkeypatch.delenv("MPSRNN_PERSISTENT_LOADS", raising=False)
    # measured best on the H200 (bench/analysis.md): two on a chunk of 4 batch rows, and on a chunk of
    # 8 whose weights stay in L2; four elsewhere
    assert [persistent_loads(c) for c in (1, 2, 4, 8)] == [(4, False), (4, False), (2, False), (2, False)]
    assert [persistent_loads(c, from_hbm=True) for c in (1, 2, 4, 8)] == [(4, False), (4, False), (2, False),
                                                                           (4, False)]
    monkeypatch.setenv("MPSRNN_PERSISTENT_LOADS", "16c")
    assert persistent_loads(4) == (16, True)
    monkeypatch.setenv("MPSRNN_PERSISTENT_LOADS", "8")
    assert persistent_loads(1) == (8, False)
    for bad in ("12", "32", "16cc", "c"):
        monkeypatch.setenv("MPSRNN_PERSISTENT_LOADS", bad)
        with pytest.raises(ValueError,
                           match="MPSRNN_PERSISTENT_LOADS: expected 2, 4, 8, 16, '2c', '4c', '8c' or '16c'"):
            persistent_loads(4)


def test_persistent_blocks_per_sm(monkeypatch):
    """Two blocks per SM on a CUDA device (one without, where there is nothing to stream past), or
    as MPSRNN_PERSISTENT_PER_SM says."""
    from mpsrnn.kernels.sequence_persistent import persistent_per_sm
    monkeypatch.delenv("MPSRNN_PERSISTENT_PER_SM", raising=False)
    l2 = 50 * 2 ** 20
    assert (persistent_per_sm(l2), persistent_per_sm(0)) == (2, 1)
    monkeypatch.setenv("MPSRNN_PERSISTENT_PER_SM", "1")
    assert persistent_per_sm(l2) == 1
    monkeypatch.setenv("MPSRNN_PERSISTENT_PER_SM", "3")
    with pytest.raises(ValueError, match="MPSRNN_PERSISTENT_PER_SM: expected 1 or 2"):
        persistent_per_sm(l2)


def test_persistent_quad_layout(rng):
    """quads[q·rows + o] = M[o, 4q .. 4q+3], zeros past the last column (kernels/quads.py), written out
    element by element against the packing."""
    from mpsrnn.kernels.quads import pack_quads
    m = rng.standard_normal((5, 7)).astype(np.float32)
    quads = pack_quads(m)
    assert quads.shape == (2 * 5, 4)
    for q in range(2):
        for o in range(5):
            for e in range(4):
                j = 4 * q + e
                assert quads[q * 5 + o, e] == (m[o, j] if j < 7 else 0.0)


@pytest.mark.parametrize("rows_r, rows, hidden, loads, room", [
    (12, 1, 1536, 4, 5), (6, 1, 1536, 4, 2), (16, 1, 2048, 4, 5), (10, 2, 1536, 2, 5), (20, 2, 2560, 2, 1),
    (200, 1, 45, 4, 5), (24, 1, 1536, 4, 0), (6, 1, 1536, 4, 0), (90, 2, 45, 4, 5), (5, 1, 1024, 2, 5)])
def test_kept_quads(rows_r, rows, hidden, loads, room):
    """The quads of a thread's run kept in shared memory (``kept_quads``): the most that fit
    ``room`` (``rows`` quads each) and leave whole groups of ``loads`` to stream, found here by
    trying every count; the run is then padded past them (``stream_shape``)."""
    from mpsrnn.kernels.quads import kept_quads, stream_shape
    run = stream_shape(rows_r, rows, hidden, 256, loads)[2]
    kept = kept_quads(run, rows, loads, room)
    fits = [k for k in range(run + 1) if k * rows <= room and (run - k) % loads == 0]
    assert kept == max(fits, default=0)
    assert stream_shape(rows_r, rows, hidden, 256, loads, kept)[3] == kept + -(-(run - kept) // loads) * loads


@pytest.mark.parametrize("hidden, nblocks, gates, rows, loads, kept", [
    (13, 3, 2, 2, 2, None), (10, 4, 1, 1, 4, None), (9, 2, 4, 2, 4, None),
    (13, 3, 2, 2, 2, (1, 1)), (23, 4, 2, 1, 4, (2, 3)), (10, 4, 1, 1, 4, (1, 0))])
def test_persistent_streams_layout(rng, hidden, nblocks, gates, rows, loads, kept):
    """The streams layout (``pack_streams``), written out quad by quad against the packing: quad qi of
    thread tid's run, its row r, in block blk at ((blk·padded + qi)·rows + r)·threads + tid, holding
    M[g·H + i, 4q .. 4q+3] for the thread's row (lane + r·lanes: gate g, unit i) and input quad
    q = split·run + qi, and zeros for rows past the block's or H, quads past the run or the row;
    past the ``kept`` quads that open each run (each phase's), whole groups of loads."""
    from mpsrnn.kernels.quads import pack_streams, stream_shape
    block = 16
    m = rng.standard_normal((gates * hidden, hidden)).astype(np.float32)
    second = rng.standard_normal((hidden, hidden)).astype(np.float32)
    packed = pack_streams([(m, gates), (second, 1)], hidden, nblocks, rows, loads, block, kept)
    units = -(-hidden // nblocks)
    at = 0
    kept_weights = 0   # nonzero weights among the kept quads
    for n, (mat, g_count) in enumerate(((m, gates), (second, 1))):
        held = kept[n] if kept else 0
        lanes, splits, run, padded = stream_shape(g_count * units, rows, hidden, block, loads, held)
        assert (padded - held) % loads == 0 and padded >= run >= held and splits * run * 4 >= hidden
        threads = lanes * splits
        for blk in range(nblocks):
            for qi in range(padded):
                for r in range(rows):
                    for tid in range(threads):
                        rr = tid % lanes + r * lanes
                        g, i = rr // units, blk * units + rr % units
                        q = (tid // lanes) * run + qi
                        want = [mat[g * hidden + i, 4 * q + e] if rr < g_count * units and i < hidden and qi < run
                                and 4 * q + e < hidden else 0.0 for e in range(4)]
                        assert list(packed[at + ((blk * padded + qi) * rows + r) * threads + tid]) == want
                        kept_weights += sum(w != 0.0 for w in want) if qi < held else 0
        at += nblocks * padded * rows * threads
    assert at == len(packed)
    assert (kept_weights > 0) == bool(kept)   # the cases that keep quads keep weights


def test_persistent_layout_knob(monkeypatch):
    from mpsrnn.kernels.sequence_persistent import persistent_layout
    monkeypatch.delenv("MPSRNN_PERSISTENT_LAYOUT", raising=False)
    assert persistent_layout() == "streams"   # the default: measured faster or even on every row tried
    monkeypatch.setenv("MPSRNN_PERSISTENT_LAYOUT", "rows")
    assert persistent_layout() == "rows"
    monkeypatch.setenv("MPSRNN_PERSISTENT_LAYOUT", "columns")
    with pytest.raises(ValueError, match="MPSRNN_PERSISTENT_LAYOUT: expected 'rows' or 'streams'"):
        persistent_layout()


def test_persistent_term_copy_layout():
    """The persistent kernel's copy of its terms (``term_slot``): B rows of ceil(H / 4) quads a slot,
    each slot on a 128-byte line (8 quads); T + 1 slots of h, and a GRU's r∘h0 and z∘h0 two a step."""
    from mpsrnn.kernels.layout import CELL_GRU, CELL_LSTM, CELL_SINGLE_GATE
    from mpsrnn.kernels.sequence_persistent import term_quads, term_slot
    for batch, hidden in [(1, 1), (1, 32), (3, 45), (4, 2560), (4, 2561), (7, 2816)]:
        rows = batch * -(-hidden // 4)
        slot = term_slot(batch, hidden)
        assert slot % 8 == 0 and rows <= slot < rows + 8, (batch, hidden, slot)
    assert term_slot(3, 45) == 40 and term_slot(4, 2561) == 2568
    assert term_quads(CELL_LSTM, 45, 3, 10) == term_quads(CELL_SINGLE_GATE, 45, 3, 10) == 11 * 40
    assert term_quads(CELL_GRU, 45, 3, 10) == 31 * 40


def test_cuda_keeps_vectors_whole(monkeypatch):
    """Taichi's vectors stay whole on the CPU and CUDA (lanes, quads), scalarized elsewhere;
    MPSRNN_CUDA_SCALARIZE=on scalarizes CUDA's too."""
    from mpsrnn.backend import _scalarizes
    assert [_scalarizes(a) for a in ("cpu", "cuda", "vulkan", "metal")] == [False, False, True, True]
    monkeypatch.setenv("MPSRNN_CUDA_SCALARIZE", "on")
    assert [_scalarizes(a) for a in ("cpu", "cuda", "vulkan")] == [False, True, True]
    monkeypatch.setenv("MPSRNN_CUDA_SCALARIZE", "yes")
    with pytest.raises(ValueError, match="MPSRNN_CUDA_SCALARIZE: expected 'on' or 'off'"):
        _scalarizes("cuda")


def test_persistent_rows_a_thread(monkeypatch):
    from mpsrnn.kernels.sequence_persistent import persistent_rows
    monkeypatch.delenv("MPSRNN_PERSISTENT_ROWS", raising=False)
    assert [persistent_rows(c, 0) for c in (1, 2, 4, 8)] == [1, 1, 2, 1]   # two at a chunk of 4
    assert persistent_rows(4, 5) == 1                       # resident weights: one row
    monkeypatch.setenv("MPSRNN_PERSISTENT_ROWS", "2")
    assert [persistent_rows(c, 0) for c in (1, 2, 4, 8)] == [2, 2, 2, 1]   # the reduction buffer's room
    assert persistent_rows(2, 3) == 1   # resident weights: one row
    monkeypatch.setenv("MPSRNN_PERSISTENT_ROWS", "4")
    with pytest.raises(ValueError, match="MPSRNN_PERSISTENT_ROWS: expected 1 or 2"):
        persistent_rows(1, 0)


def test_persistent_zigzag_knob(monkeypatch):
    from mpsrnn.kernels.sequence_persistent import persistent_zigzag
    assert persistent_zigzag()   # the default: measured faster where the weights outgrow L2, no slower elsewhere
    monkeypatch.setenv("MPSRNN_PERSISTENT_ZIGZAG", "off")
    assert not persistent_zigzag()
    monkeypatch.setenv("MPSRNN_PERSISTENT_ZIGZAG", "sideways")
    with pytest.raises(ValueError, match="MPSRNN_PERSISTENT_ZIGZAG: expected 'on' or 'off'"):
        persistent_zigzag()


def test_persistent_chunk_is_the_batch_rounded_up_to_a_power_of_two():
    """A pass takes the batch rounded up to a power of two, at most 8 rows (the reduction buffer's
    room), whatever the layer: the chunk never shrinks to fit anything."""
    from mpsrnn.kernels.sequence_persistent import MAX_CHUNK, persistent_chunk, reduction_words
    assert [persistent_chunk(b) for b in (0, 1, 2, 3, 4, 5, 8, 9, 64)] == [1, 1, 2, 4, 4, 8, 8, 8, 8]
    assert MAX_CHUNK == 8 and reduction_words(MAX_CHUNK, 1) * 4 == 8 * 1024   # 256 threads x 8 sums: 8 KiB


def test_kept_room_is_what_32_kib_leave():
    """The quads a thread keeps fit in 32 KiB (Metal's threadgroup limit) beside the reduction buffer,
    sized to the chunk (a sum per gate row and batch row of a thread), and the header's 64 words:
    7 quads at chunks of 1 and 2, 5 where the buffer takes 8 KiB."""
    from mpsrnn.kernels.sequence_persistent import HEADER_ROOM, kept_room, reduction_words
    for chunk, rows, room in ((1, 1, 7), (2, 1, 7), (4, 1, 6), (4, 2, 5), (8, 1, 5)):
        assert kept_room(chunk, rows) == room
        words = reduction_words(chunk, rows) + HEADER_ROOM
        assert words + room * 4 * 256 <= 8192 < words + (room + 1) * 4 * 256


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru-no-vh", "single"])
@pytest.mark.parametrize("float32_weights", [True, False])
def test_quads_hold_the_recurrent_weights(kind, float32_weights, rng):
    """The persistent kernel's quads come from the packed weights, in either layout: U (and a GRU's
    Vh, where set) as the descriptor has them, rounded to float16 where the weights are."""
    from mpsrnn.cells import PackedCell
    from mpsrnn.kernels.quads import pack_quads
    kind, no_vh = kind.removesuffix("-no-vh"), kind.endswith("-no-vh")
    d = descriptor(kind, rng, 5, 9, use_float32_weights=float32_weights,
                   **({"nil": ("output_gate_input_gate_weights",)} if no_vh else {}))
    gates = {"lstm": 4, "gru": 3, "single": 1}[kind]
    mats = [np.concatenate([getattr(d, s).matrix() for s in d.RECURRENT_SLOTS[:gates]])]
    if kind == "gru" and not no_vh:
        mats.append(d.output_gate_input_gate_weights.matrix())
    if not float32_weights:
        mats = [a.astype(np.float16) for a in mats]
    want = np.concatenate([pack_quads(np.asarray(a, np.float32)) for a in mats])
    for transposed in (False, True):
        assert np.array_equal(PackedCell(d, None, transposed).quads().to_numpy(), want)


def test_knobs_answer_bad_values_alike(monkeypatch):
    """Every A/B knob goes through one reader: unset is None (a switch: its default), a set value is
    taken stripped and in lower case, and anything else names the knob, the values it takes and
    what it got."""
    from mpsrnn.kernels.knobs import alternatives, knob, switch
    monkeypatch.delenv("MPSRNN_TEST_KNOB", raising=False)
    assert knob("MPSRNN_TEST_KNOB", ("a", "b")) is None
    assert switch("MPSRNN_TEST_KNOB", True) is True and switch("MPSRNN_TEST_KNOB", False) is False
    monkeypatch.setenv("MPSRNN_TEST_KNOB", " Off ")
    assert switch("MPSRNN_TEST_KNOB", True) is False
    monkeypatch.setenv("MPSRNN_TEST_KNOB", "2")
    with pytest.raises(ValueError, match="MPSRNN_TEST_KNOB: expected 'rows', 4 or 'x' on cpu, got '2'"):
        knob("MPSRNN_TEST_KNOB", ("rows", "4", "x"), " on cpu")
    assert alternatives(("1",)) == "1" and alternatives(("on", "off")) == "'on' or 'off'"


def test_every_knob_the_planner_reads_keys_the_plans():
    """A knob read while planning (by name, in the scheduler and the kernels' modules) is part of
    every plan's key (``PLANNING_KNOBS``): otherwise a layer that has run once would keep its plan
    when a test or a benchmark forces another setting."""
    import pathlib
    import re
    root = pathlib.Path(m.__file__).resolve().parent
    sources = [*(root / "scheduler").glob("*.py"), *(root / "kernels").glob("*.py")]
    if not (root / "kernels").is_dir():   # a source checkout: kernels/ lies beside the package
        sources += list((root.parent / "kernels").glob("*.py"))
    read = set()
    for path in sources:
        read |= set(re.findall(r'(?:knob|switch|_one_or_two|os\.environ\.get)\(\s*"(MPSRNN_\w+)"', path.read_text()))
    at_layer_creation = {"MPSRNN_WEIGHT_LAYOUT", "MPSRNN_LAUNCH"}
    at_import = {"MPSRNN_CPU_LANES"}   # the lanes kernels are compiled for it (kernels/lanes.py)
    assert len(read) >= 12, read
    rest = read - at_layer_creation - at_import
    assert rest <= set(PLANNING_KNOBS), rest - set(PLANNING_KNOBS)


def test_plan_key_reads_knobs_as_set_between_calls(monkeypatch):
    """The plan cache's key reads the knobs past ``os.environ``'s per-key encoding (``knob_settings``),
    yet sees a knob set, changed or removed between two calls, as ``os.environ.get`` does."""
    from mpsrnn.kernels.knobs import knob_settings
    names = ("MPSRNN_TEST_KNOB", "MPSRNN_TEST_OTHER")
    monkeypatch.delenv("MPSRNN_TEST_KNOB", raising=False)
    monkeypatch.delenv("MPSRNN_TEST_OTHER", raising=False)
    unset = knob_settings(names)
    assert unset == (None, None)
    monkeypatch.setenv("MPSRNN_TEST_KNOB", "split")
    first = knob_settings(names)
    monkeypatch.setenv("MPSRNN_TEST_KNOB", "spread")
    second = knob_settings(names)
    assert len({unset, first, second}) == 3 and second[1] is None
    monkeypatch.delenv("MPSRNN_TEST_KNOB")
    assert knob_settings(names) == unset
    for value in (None, "split"):   # the same settings as os.environ.get reads them, in its own encoding
        if value:
            monkeypatch.setenv("MPSRNN_TEST_KNOB", value)
        got = knob_settings(names)[0]
        assert (got if got is None or isinstance(got, str) else os.fsdecode(got)) == os.environ.get(names[0])


def test_split_kernel_projects_short_sequences_in_chunks(rng, monkeypatch):
    """The split kernel projects a layer's inputs itself, in chunks as its products, where a
    sequence has at most 128 rows (steps x batch) and the inputs fit its chunks of h: an LSTM or a
    single gate on one copy of its weights, no identity input. Elsewhere as before: apart (wide
    inputs, more rows), or each block its own rows (the GRU; small projections). Its workspace then
    holds every split's partial terms past the partials buffer. The knob picks chunks or rows where
    the projection is inside, or fails on a bad value."""
    from mpsrnn.kernels.sequence_split import split_partials, split_partials_chunks
    monkeypatch.setattr(rec, "_sms", lambda: 132)
    for name in ("MPSRNN_SPLIT_PROJECTION", "MPSRNN_PROJECTION", "MPSRNN_SPLIT_HALVES", "MPSRNN_SPLIT_REDUCE"):
        monkeypatch.delenv(name, raising=False)
    lstm, single, gru = cell(rng, "lstm", 1024), cell(rng, "single", 2048), cell(rng, "gru", 1024)
    assert rec.split_chunks_fit(lstm, 1) and rec.split_chunks_fit(single, 4) and not rec.split_chunks_fit(gru, 1)
    assert [rec.split_projection(lstm, t, b) for t, b in ((25, 1), (25, 4), (32, 4), (33, 4), (100, 16))] == [
        rec.PROJECT_CHUNKS, rec.PROJECT_CHUNKS, rec.PROJECT_CHUNKS, rec.PROJECT_APART, rec.PROJECT_APART]
    assert rec.split_projection(gru, 25, 2) == rec.PROJECT_APART          # 1024 inputs: apart, as before
    small_gru = cell(rng, "gru", 256)
    assert rec.split_projection(small_gru, 25, 2) == rec.PROJECT_ROWS     # a small projection: its rows
    narrow = cell(rng, "lstm", 1024, n_in=8)                              # inside for its small projection,
    assert rec.split_projection(narrow, 200, 1) == rec.PROJECT_ROWS       # in chunks up to 128 rows only
    assert rec.split_projection(narrow, 128, 1) == rec.PROJECT_CHUNKS
    halved = cell(rng, "lstm", 512)                                       # two copies of U from batch 32
    assert rec.split_halves(halved, 32) == 2 and not rec.split_chunks_fit(halved, 32)
    wide_input = m.RNNMatrixInferenceLayer(descriptor("lstm", rng, 1100, 1024))._cells[0]
    assert not rec.split_chunks_fit(wide_input, 1)                        # 1100 inputs past 16 x 64
    identity = m.RNNMatrixInferenceLayer(descriptor("lstm", rng, 256, 256,
                                                    use_layer_input_unit_transform_mode=True))._cells[0]
    assert not rec.split_chunks_fit(identity, 1)
    chunks = rec.split_workspace(lstm, 25, 4, rec.PROJECT_CHUNKS) + 3 * 4 * 1024
    assert chunks == split_partials(lstm.kind, 4, 1024, 1) + split_partials_chunks(lstm.kind, 25, 4, 1024, 16)
    monkeypatch.setenv("MPSRNN_SPLIT_PROJECTION", "rows")
    assert rec.split_projection(lstm, 25, 1) == rec.PROJECT_ROWS
    monkeypatch.setenv("MPSRNN_SPLIT_PROJECTION", "chunks")
    assert rec.split_projection(small_gru, 25, 2) == rec.PROJECT_ROWS     # the GRU's kernel has no chunks
    monkeypatch.setenv("MPSRNN_PROJECTION", "apart")
    assert rec.split_projection(lstm, 25, 1) == rec.PROJECT_APART
    monkeypatch.setenv("MPSRNN_SPLIT_PROJECTION", "tiles")
    with pytest.raises(ValueError, match="MPSRNN_SPLIT_PROJECTION: expected 'chunks' or 'rows', got 'tiles'"):
        rec.split_projection(lstm, 25, 1)


def test_split_below_its_batch_where_projecting_in_chunks_saves_a_dispatch(rng, monkeypatch):
    """Below split's usual batch, CUDA takes the split kernel where it projects in chunks (one
    dispatch) and spread would project apart (two); spread where spread projects inside or the
    sequence is past the chunks' rows. A forced projection or recurrence still decides."""
    lstm1024, lstm512, gru = cell(rng, "lstm", 1024), cell(rng, "lstm", 512), cell(rng, "gru", 1024)
    picks = [rec.choose_recurrence("cuda", c, t, b) for c, t, b in (
        (lstm1024, 25, 1), (lstm1024, 1, 2), (lstm1024, 10, 8),   # in chunks: split
        (lstm1024, 33, 4), (lstm1024, 200, 1),                    # past 128 rows: spread, projecting apart
        (lstm512, 25, 1),                                         # spread projects inside: one dispatch
        (gru, 25, 1))]                                            # the GRU's split kernel has no chunks
    assert picks == ["split"] * 3 + ["spread"] * 4
    assert rec.split_saves_a_dispatch(lstm1024, 25, 1) and not rec.split_saves_a_dispatch(lstm512, 25, 1)
    monkeypatch.setenv("MPSRNN_SPLIT_PROJECTION", "rows")
    assert rec.choose_recurrence("cuda", lstm1024, 25, 1) == "spread"
    monkeypatch.setenv("MPSRNN_SPLIT_PROJECTION", "chunks")
    monkeypatch.setenv("MPSRNN_PROJECTION", "apart")
    assert rec.choose_recurrence("cuda", lstm1024, 25, 1) == "spread"
    monkeypatch.delenv("MPSRNN_PROJECTION")
    monkeypatch.setenv("MPSRNN_RECURRENCE", "spread")
    assert rec.choose_recurrence("cuda", lstm1024, 25, 1) == "spread"


def test_kept_counts():
    """The quads a thread of each phase keeps (``kept_counts``), worked out by hand on 264 blocks.
    GRU 1536: 6 units a block; the first phase's 12 rows leave 21 splits, runs of ceil(384 / 21) = 19
    quads, 3 past four groups of 4: kept; the second phase's 6 rows, 42 splits, runs of 10, 2 past
    whole groups, within the 2 quads of room left (none with Vh). LSTM 2048: 8 units, 32 rows, 8
    splits, runs of 64, no partial group: one whole group of 4 fits 5 quads. Two rows a thread
    (loads 2) count twice against the room."""
    from mpsrnn.kernels.layout import CELL_GRU, CELL_LSTM
    from mpsrnn.kernels.sequence_persistent import kept_counts
    assert kept_counts(CELL_GRU, 1536, 264, 1, 4, 5, False) == (3, 2)
    assert kept_counts(CELL_GRU, 1536, 264, 1, 4, 5, True) == (3, 0)
    assert kept_counts(CELL_LSTM, 2048, 264, 1, 4, 5, False) == (4, 0)
    assert kept_counts(CELL_GRU, 1536, 264, 1, 4, 0, False) == (0, 0)
    # with room for 7, GRU 1536 still keeps 3 and 2 (5 quads, two groups off) rather than 7 in the
    # first phase (two groups off too: runs of 19 = 3 + 4 groups of 4); LSTM 1536 (6 units, 24 rows,
    # 10 splits, runs of 39) keeps its partial group of 3 and a whole group, 7
    assert kept_counts(CELL_GRU, 1536, 264, 1, 4, 7, False) == (3, 2)
    assert kept_counts(CELL_LSTM, 1536, 264, 1, 4, 7, False) == (7, 0)
    # GRU 2560, two rows, loads 2: 10 units, 20 rows, 10 lanes, 25 splits, runs of 26: one group of 2
    # (4 quads of room) would take a group off; the second phase's runs of 13 (5 lanes, 51 splits)
    # have a partial quad, 2 quads of room, that takes one off too: fewer quads kept for as much
    assert kept_counts(CELL_GRU, 2560, 264, 2, 2, 5, False) == (0, 1)
    assert kept_counts(CELL_GRU, 2560, 264, 2, 2, 5, True) == (2, 0)


@pytest.mark.parametrize("kind, vh", [("gru", False), ("gru", True), ("lstm", False)])
@pytest.mark.parametrize("hidden, nblocks", [(1536, 264), (2816, 264), (45, 1), (700, 33), (2560, 264)])
@pytest.mark.parametrize("rows, loads, room", [(1, 4, 7), (1, 4, 5), (2, 2, 5), (1, 2, 5), (1, 4, 3)])
def test_kept_counts_stream_the_fewest_groups(kind, vh, hidden, nblocks, rows, loads, room):
    """``kept_counts`` against every pair of counts that fits the room (``rows`` quads each, none
    past a run, the GRU's second phase none with Vh): the fewest groups of loads a step streams,
    and of those splits the fewest quads kept."""
    from mpsrnn.kernels.layout import CELL_GRU, CELL_LSTM, FIRST_PHASE_GATES
    from mpsrnn.kernels.quads import stream_shape
    from mpsrnn.kernels.sequence_persistent import kept_counts
    cell_kind = CELL_GRU if kind == "gru" else CELL_LSTM
    units = -(-hidden // nblocks)
    run_a = stream_shape(FIRST_PHASE_GATES[cell_kind] * units, rows, hidden, 256, loads)[2]
    run_b = stream_shape(units, rows, hidden, 256, loads)[2] if kind == "gru" and not vh else 0
    costs = {}
    for a in range(run_a + 1):
        for b in range(run_b + 1):
            if (a + b) * rows <= room:
                groups = -(-(run_a - a) // loads) + -(-(run_b - b) // loads)
                costs[a, b] = (groups, a + b)
    picked = kept_counts(cell_kind, hidden, nblocks, rows, loads, room, vh)
    assert picked in costs and costs[picked] == min(costs.values()), (picked, costs[picked], min(costs.values()))


def test_persistent_kept_room_by_cell_and_chunk(monkeypatch):
    """The room the persistent kernel keeps quads in (``persistent_kept``): all that 32 KiB leave on
    a chunk of 1; at most 5 quads on the GRU's larger chunks and the single gate's of 2; none on the
    LSTM's chunks past 1, the single gate's past 2, with resident weights or in the rows layout. The knob
    overrides, within what fits."""
    from mpsrnn.kernels.layout import CELL_GRU, CELL_LSTM, CELL_SINGLE_GATE
    from mpsrnn.kernels.sequence_persistent import persistent_kept
    monkeypatch.delenv("MPSRNN_PERSISTENT_KEPT", raising=False)
    shapes = ((1, 1), (2, 1), (4, 2), (8, 1))   # (chunk, gate rows a thread) as planned
    assert [persistent_kept(CELL_GRU, 0, True, c, r) for c, r in shapes] == [7, 5, 5, 5]
    assert [persistent_kept(CELL_LSTM, 0, True, c, r) for c, r in shapes] == [7, 0, 0, 0]
    assert [persistent_kept(CELL_SINGLE_GATE, 0, True, c, r) for c, r in shapes] == [7, 5, 0, 0]
    assert persistent_kept(CELL_GRU, 3, True, 1, 1) == 0 and persistent_kept(CELL_GRU, 0, False, 1, 1) == 0
    monkeypatch.setenv("MPSRNN_PERSISTENT_KEPT", "on")
    assert [persistent_kept(CELL_LSTM, 0, True, c, r) for c, r in shapes] == [7, 7, 5, 5]
    monkeypatch.setenv("MPSRNN_PERSISTENT_KEPT", "6")
    assert [persistent_kept(CELL_LSTM, 0, True, c, r) for c, r in shapes] == [6, 6, 5, 5]
    monkeypatch.setenv("MPSRNN_PERSISTENT_KEPT", "off")
    assert persistent_kept(CELL_GRU, 0, True, 1, 1) == 0
    monkeypatch.setenv("MPSRNN_PERSISTENT_KEPT", "9")
    with pytest.raises(ValueError, match="MPSRNN_PERSISTENT_KEPT: expected 'on', 'off', 1, 2, 3, 4, 5, 6 or 7"):
        persistent_kept(CELL_GRU, 0, True, 1, 1)


def test_warp_stores_in_a_warp_of_their_own_for_the_lstm(monkeypatch):
    """The warp kernel's stores take a warp of their own for the LSTM on one compute warp only (it
    issues the most a step); MPSRNN_WARP_STORES overrides that for every cell, and rejects other values."""
    from mpsrnn.kernels.layout import CELL_GRU, CELL_LSTM, CELL_SINGLE_GATE
    from mpsrnn.kernels.sequence_warp import warp_stores_apart
    monkeypatch.delenv("MPSRNN_WARP_STORES", raising=False)
    assert [warp_stores_apart(c, 1) for c in (CELL_LSTM, CELL_GRU, CELL_SINGLE_GATE)] == [True, False, False]
    assert not warp_stores_apart(CELL_LSTM, 2)   # four compute warps: LSTM 64 0.63 against 0.89 µs a step
    monkeypatch.setenv("MPSRNN_WARP_STORES", "compute")
    assert not warp_stores_apart(CELL_LSTM, 1)
    monkeypatch.setenv("MPSRNN_WARP_STORES", "apart")
    assert warp_stores_apart(CELL_GRU, 1) and warp_stores_apart(CELL_SINGLE_GATE, 1) and warp_stores_apart(CELL_LSTM, 2)
    monkeypatch.setenv("MPSRNN_WARP_STORES", "both")
    with pytest.raises(ValueError, match="MPSRNN_WARP_STORES"):
        warp_stores_apart(CELL_LSTM, 1)


def test_lanes_projection_pipelined_at_batch_1(rng, monkeypatch):
    """Where the lanes path projects apart, batch 1 pipelines the projection beside the recurrence
    (LSTM 256 b1 t50 on the Xeon VM: 20.2 against 15.6 µs a step), and so does a pair whose units
    the helper then steps half of; MPSRNN_CPU_PIPELINE decides instead."""
    monkeypatch.delenv("MPSRNN_CPU_PIPELINE", raising=False)
    monkeypatch.delenv("MPSRNN_CPU_SPLIT_ROW", raising=False)
    lstm, gru = cell(rng, "lstm", 40), cell(rng, "gru", 40)
    assert rec.lanes_pipelined(lstm, 1) and rec.lanes_pipelined(gru, 1)
    assert rec.lanes_pipelined(lstm, 2) and not rec.lanes_pipelined(gru, 2)
    assert not rec.lanes_pipelined(lstm, 3)
    monkeypatch.setenv("MPSRNN_CPU_SPLIT_ROW", "off")
    assert rec.lanes_pipelined(lstm, 1) and not rec.lanes_pipelined(lstm, 2)
    monkeypatch.setenv("MPSRNN_CPU_PIPELINE", "off")
    assert not rec.lanes_pipelined(lstm, 1)
    monkeypatch.setenv("MPSRNN_CPU_PIPELINE", "on")
    assert rec.lanes_pipelined(gru, 3)
    monkeypatch.setenv("MPSRNN_CPU_PIPELINE", "maybe")
    with pytest.raises(ValueError, match="MPSRNN_CPU_PIPELINE"):
        rec.lanes_pipelined(lstm, 1)


def test_lanes_split_row_at_batch_1_and_2(rng, monkeypatch):
    """The pipelined kernel's helper steps half of the blocks of a lone row or a pair for the LSTM
    without dense peepholes and the single gate with the usual neurons; MPSRNN_CPU_SPLIT_ROW=off
    turns it off, and on cannot force it where it does not apply. A split pair projects apart (on
    the pipelined kernel's helper) where a pair's projection would run inside on this CPU's threads."""
    monkeypatch.delenv("MPSRNN_CPU_SPLIT_ROW", raising=False)
    monkeypatch.delenv("MPSRNN_PROJECTION", raising=False)
    lstm, diagonal = cell(rng, "lstm", 40), cell(rng, "lstm", 40, peephole="diagonal")
    single, dense = cell(rng, "single", 40), cell(rng, "lstm", 40, peephole="dense")
    gru, hard = cell(rng, "gru", 40), cell(rng, "lstm", 40, neurons="hard")
    assert all(rec.lanes_split_row(c, b) for c in (lstm, diagonal, single) for b in (1, 2))
    assert not any(rec.lanes_split_row(c, 1) for c in (dense, gru, hard))
    assert not rec.lanes_split_row(lstm, 3)
    wide_lstm, wide_gru = cell(rng, "lstm", 128), cell(rng, "gru", 128)   # projections past APART_FLOPS
    assert rec.project_apart("lanes", wide_lstm, 50, 2) and not rec.project_apart("lanes", wide_gru, 50, 8)
    monkeypatch.setenv("MPSRNN_CPU_SPLIT_ROW", "off")
    assert not rec.lanes_split_row(lstm, 1)
    monkeypatch.setenv("MPSRNN_CPU_SPLIT_ROW", "on")
    assert not rec.lanes_split_row(gru, 1) and not rec.lanes_split_row(lstm, 3)
    monkeypatch.setenv("MPSRNN_CPU_SPLIT_ROW", "maybe")
    with pytest.raises(ValueError, match="MPSRNN_CPU_SPLIT_ROW"):
        rec.lanes_split_row(lstm, 1)


@pytest.mark.parametrize("kind, peephole, hidden, standard, shuffles, shape", [
    ("lstm", "diagonal", 32, True, False, (1, 1)),   # a lane a unit, every gate row in its registers
    ("gru", "none", 17, True, False, (1, 1)),
    ("single", "none", 64, True, False, (2, 1)),    # two units a lane (2 rows x 64)
    ("single", "none", 65, True, True, None),
    ("lstm", "none", 33, True, True, (1, 2)),       # two lanes a unit, four warps: CUDA's shuffles
    ("gru", "none", 64, True, True, (1, 2)),
    ("lstm", "none", 33, True, False, None),        # no shuffles (Vulkan, Metal)
    ("lstm", "none", 65, True, True, None),
    ("lstm", "dense", 16, True, True, None),        # a second product a step
    ("gru", "none", 16, False, True, None),         # other neurons
])
def test_warp_shapes(kind, peephole, hidden, standard, shuffles, shape):
    """(units a lane, lanes a unit) of the warp kernel, or None where the layer does not fit it."""
    from mpsrnn.kernels.layout import CELL_GRU, CELL_LSTM, CELL_SINGLE_GATE, PEEP_DENSE, PEEP_DIAGONAL, PEEP_NONE
    from mpsrnn.kernels.sequence_warp import warp_shape
    cell = {"lstm": CELL_LSTM, "gru": CELL_GRU, "single": CELL_SINGLE_GATE}[kind]
    peep = {"none": PEEP_NONE, "dense": PEEP_DENSE, "diagonal": PEEP_DIAGONAL}[peephole]
    assert warp_shape(cell, peep, hidden, standard, shuffles) == shape
