"""The CPU's lane layout (kernels/lanes.py) against its formula, element by element.

The lanes kernels read W, U and V only through this layout, so a packing that put a weight in the
wrong lane would show up in the path tests as a wrong result somewhere; this test says where. Each
packed vector is checked against the formula written with plain loops: vector
base + (u·G/group + g//group)·cols + j holds M[g·H + Lu + m, j] at lane (g % group)·L + m (L = LANES), and zero
for units past H.
"""
import numpy as np
import pytest

from mpsrnn.kernels.lanes import LANES, lane_group, pack_lanes
from mpsrnn.kernels.layout import CELL_GRU, CELL_LSTM, CELL_SINGLE_GATE


@pytest.mark.parametrize("gates, group", [(1, 1), (3, 1), (4, 1), (4, 4)])
@pytest.mark.parametrize("hidden, cols", [(19, 5), (16, 1), (8, 3)])
def test_pack_lanes_follows_the_formula(gates, group, hidden, cols, rng):
    matrix = rng.standard_normal((gates * hidden, cols)).astype(np.float32)
    packed = pack_lanes(matrix, gates, hidden, group)
    blocks = (hidden + LANES - 1) // LANES
    assert packed.shape == (blocks * (gates // group) * cols, group * LANES)
    for u in range(blocks):
        for g in range(gates):
            for j in range(cols):
                vector = packed[(u * (gates // group) + g // group) * cols + j]
                for m in range(LANES):
                    unit = u * LANES + m
                    expected = matrix[g * hidden + unit, j] if unit < hidden else 0.0
                    assert vector[(g % group) * LANES + m] == expected, (u, g, j, m)


def test_only_the_lstm_shares_a_vector_among_its_gates():
    assert lane_group(CELL_LSTM) == 4
    assert lane_group(CELL_GRU) == 1
    assert lane_group(CELL_SINGLE_GATE) == 1


def test_lane_width_follows_the_cpu_or_the_knob(monkeypatch):
    from mpsrnn.kernels.lanes import lane_width
    monkeypatch.delenv("MPSRNN_CPU_LANES", raising=False)
    assert lane_width(["fpu", "avx2", "avx512f", "avx512bw"]) == 16
    assert lane_width(["fpu", "avx2", "fma"]) == 8
    assert lane_width([]) == 8   # a CPU whose flags the system does not list (macOS, Windows)
    monkeypatch.setenv("MPSRNN_CPU_LANES", "8")
    assert lane_width(["avx512f"]) == 8
    monkeypatch.setenv("MPSRNN_CPU_LANES", "32")
    with pytest.raises(ValueError, match="MPSRNN_CPU_LANES: expected 8 or 16"):
        lane_width(["avx512f"])
