"""The spread kernel's packed rows (kernels/sequence_spread.pack_memory_rows) against its formula.

On Vulkan, spread reads the rows past those a thread holds in registers from this copy, every step.
The kernel tests run it on a GPU or lavapipe, which CI has neither of; this test holds the packing
to the kernel's thread map, restated with plain loops, on the CPU. For the LSTM and the single gate,
thread t of a block of ``units`` units holds rows p + q·span (span = ceil(gates·units / rho), p = t %
span) of its chunk k = t // span, a row r being gate r // units of unit u_lo + r % units; for the
GRU, span = ceil(units / rho), p = t % 2·span, k = t // 2·span, half = p // span, and row q is unit
u_lo + p % span + q·span of [Uz; Ur] (phase 1) and of [Uh; Vh] (phase 2). Its memory row m (row
slot held + m) at input j of its chunk lies at (((phase·blocks + block)·M + m)·32 + j)·threads + t.
"""
import numpy as np
import pytest

from mpsrnn.kernels.layout import CELL_GRU, CELL_LSTM, CELL_SINGLE_GATE
from mpsrnn.kernels.sequence_registers import CHUNK
from mpsrnn.kernels.sequence_spread import GRU_HELD, MAX_ROWS, memory_rows, pack_memory_rows


def expected_weight(cell, mats, H, units, rho, t, b, phase, q, j):
    """The weight thread t of block b multiplies at row slot q and input j of its chunk (0 where it
    has no such row, or past H), by the kernel's map written out again."""
    chunks = -(-H // CHUNK)
    u_lo = b * units
    if cell == CELL_GRU:
        span = -(-units // rho)
        p, k = t % (2 * span), t // (2 * span)
        unit = p % span + q * span
        if k >= chunks or unit >= units or u_lo + unit >= H:
            return 0.0
        row = (p // span) * H + u_lo + unit
    else:
        gates = 4 if cell == CELL_LSTM else 1
        span = -(-gates * units // rho)
        p, k = t % span, t // span
        r = p + q * span
        if k >= chunks or r >= gates * units or u_lo + r % units >= H:
            return 0.0
        row = (r // units) * H + u_lo + r % units
    col = k * CHUNK + j
    return mats[phase][row, col] if col < H else 0.0


@pytest.mark.parametrize("cell, H, blocks, rho, threads, vh", [
    (CELL_LSTM, 45, 3, 5, 32, False), (CELL_SINGLE_GATE, 70, 2, 3, 48, False),
    (CELL_GRU, 40, 3, 3, 32, True), (CELL_GRU, 33, 2, 2, 48, False),
], ids=["lstm", "single", "gru", "gru-without-vh"])
def test_pack_memory_rows_follows_the_kernels_map(cell, H, blocks, rho, threads, vh, rng):
    gates = {CELL_LSTM: 4, CELL_SINGLE_GATE: 1, CELL_GRU: 3}[cell]
    U = rng.standard_normal((gates * H, H)).astype(np.float32)
    if cell == CELL_GRU:
        Vh = rng.standard_normal((H, H)).astype(np.float32)
        phases = [(U[:2 * H], 2), (U[2 * H:], 1)] + ([(Vh, 1)] if vh else [])
        mats = [U[:2 * H], np.concatenate([U[2 * H:], Vh if vh else np.zeros_like(Vh)])]
    else:
        phases = [(U, gates)]
        mats = [U]
    M = memory_rows(cell, rho)
    held = GRU_HELD if cell == CELL_GRU else MAX_ROWS
    assert M == rho - held > 0
    packed = pack_memory_rows(cell, phases, H, blocks, rho, threads)
    assert packed.shape == (len(mats) * blocks * M * CHUNK * threads,)
    units = -(-H // blocks)
    for phase in range(len(mats)):
        for b in range(blocks):
            for m in range(M):
                for j in range(CHUNK):
                    for t in range(threads):
                        at = (((phase * blocks + b) * M + m) * CHUNK + j) * threads + t
                        want = expected_weight(cell, mats, H, units, rho, t, b, phase, held + m, j)
                        assert packed[at] == want, (phase, b, m, j, t)


def test_only_rows_past_those_held_are_read_from_memory():
    assert [memory_rows(CELL_LSTM, rho) for rho in (1, 2, 3, 8)] == [0, 0, 1, 6]
    assert [memory_rows(CELL_GRU, rho) for rho in (1, 2, 4)] == [0, 1, 3]
