"""Self-checks of tests/reference.py alone, against values derived by hand or with
scalar `math` code written inline.  Does not import mpsrnn."""

import math
import os
import sys
from types import SimpleNamespace as NS

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402


def slot(w, bias=None, neuron=None):
    return NS(weights=np.asarray(w, dtype=np.float64),
              bias=None if bias is None else np.asarray(bias, dtype=np.float64),
              neuron=neuron)


def nrn(t, a=1.0, b=0.0, c=1.0):
    return NS(type=t, a=a, b=b, c=c)


def base(n_in, n_out, **kw):
    d = dict(input_feature_channels=n_in, output_feature_channels=n_out,
             use_layer_input_unit_transform_mode=False, use_float32_weights=True,
             layer_sequence_direction=0)
    d.update(kw)
    return d


def single(n_in, n_out, W=None, U=None, b=None, neuron=None, **kw):
    return NS(input_weights=None if W is None else slot(W, b, neuron),
              recurrent_weights=None if U is None else slot(U), **base(n_in, n_out, **kw))


def gru(n_in, n_out, p=1.0, flip=False, **slots):
    names = ["input_gate_input_weights", "input_gate_recurrent_weights",
             "recurrent_gate_input_weights", "recurrent_gate_recurrent_weights",
             "output_gate_input_weights", "output_gate_recurrent_weights",
             "output_gate_input_gate_weights"]
    s = {n: slots.get(n) for n in names}
    return NS(gate_pnorm_value=p, flip_output_gates=flip, **s, **base(n_in, n_out))


def lstm(n_in, n_out, diagonal=False, gh=5, gha=1.0, ghb=1.0, ghc=1.0, **slots):
    s = {}
    for g in ("input", "forget", "cell", "output"):
        for k in ("input", "recurrent", "memory"):
            name = "%s_gate_%s_weights" % (g, k)
            s[name] = slots.get(name)
    return NS(memory_weights_are_diagonal=diagonal, cell_to_output_neuron_type=gh,
              cell_to_output_neuron_param_a=gha, cell_to_output_neuron_param_b=ghb,
              cell_to_output_neuron_param_c=ghc, **s, **base(n_in, n_out))


def sig(v):
    return 1.0 / (1.0 + math.exp(-v))


# ------------------------------------------------------------------ neurons
@pytest.mark.parametrize("kind,x,a,b,c,want", [
    (0, -2.5, 9, 9, 9, -2.5),
    (1, -2.0, 0.1, 0, 0, -0.2),
    (1, 3.0, 0.1, 0, 0, 3.0),
    (2, 2.0, 3.0, 1.0, 0, 7.0),
    (3, 0.5, 0, 0, 0, 1.0 / (1.0 + math.exp(-0.5))),
    (4, 0.5, 0.2, 0.5, 0, 0.6),
    (4, 10.0, 0.2, 0.5, 0, 1.0),
    (4, -10.0, 0.2, 0.5, 0, 0.0),
    (5, 0.3, 2.0, 1.5, 0, 2.0 * math.tanh(0.45)),
    (6, -4.0, 0, 0, 0, 4.0),
    (7, 0.7, 2.0, 3.0, 0, 2.0 * math.log(1.0 + math.exp(2.1))),
    (8, -3.0, 0, 0, 0, -0.75),
    (9, -1.0, 2.0, 0, 0, 2.0 * (math.exp(-1.0) - 1.0)),
    (9, 1.5, 2.0, 0, 0, 1.5),
    (11, 8.0, 0.1, 6.0, 0, 6.0),
    (11, -8.0, 0.1, 6.0, 0, -0.8),
    (12, 1.0, 2.0, 1.0, 2.0, 9.0),
    (13, 1.0, 2.0, 1.0, 2.0, 8.0),
    (13, 1.0, 2.0, 1.0, -1.0, math.exp(3.0)),
    (14, 3.0, 2.0, 2.0, 2.0, 3.0),
    (14, 3.0, 2.0, 2.0, -1.0, math.log(8.0)),
    (15, 0.8, 0, 0, 0, 0.5 * 0.8 * (1.0 + math.erf(0.8 / math.sqrt(2.0)))),
])
def test_neuron_points(kind, x, a, b, c, want):
    got = ref.neuron(kind, np.array([[x]]), a, b, c)
    assert got.dtype == np.float64
    assert got[0, 0] == pytest.approx(want, rel=1e-14, abs=1e-15)


def test_neuron_prelu_per_channel_and_edge_cases():
    x = np.array([[-1.0, -2.0, 3.0], [4.0, -5.0, -6.0]])
    got = ref.neuron(10, x, np.array([0.1, 0.2, 0.3]), 0, 0)
    assert np.allclose(got, [[-0.1, -0.4, 3.0], [4.0, -1.0, -1.8]], rtol=0, atol=1e-15)
    # float64 semantics: overflow -> inf, invalid -> nan, no warnings raised
    assert np.isnan(ref.neuron(12, np.array([-2.0]), 1.0, 0.0, 0.5))[0]
    assert np.isinf(ref.neuron(13, np.array([1000.0]), 1.0, 0.0, -1.0))[0]
    # soft plus does not overflow for large b*x
    assert ref.neuron(7, np.array([1000.0]), 1.0, 1.0, 0)[0] == pytest.approx(1000.0)
    assert ref.neuron(3, np.array([-1000.0]), 0, 0, 0)[0] == 0.0
    assert ref.neuron_from(None)[0] == 0


# ------------------------------------------------------------------ single gate
def test_single_gate_relu_by_hand():
    # W = [[1, 2], [-1, 0.5]], U = [[0.5, 0], [0, -1]], b = [0.1, -0.2], relu
    d = single(2, 2, W=[[1, 2], [-1, 0.5]], U=[[0.5, 0], [0, -1]], b=[0.1, -0.2],
               neuron=nrn(1, a=0.0))
    x = np.array([[1.0, 1.0]])
    h0 = np.array([[2.0, 3.0]])
    # pre0 = 1 + 2 + 1 + 0.1 = 4.1 ; pre1 = -1 + 0.5 - 3 - 0.2 = -3.7 -> relu 0
    h1 = ref.single_gate_cell(d, x, h0)
    assert np.allclose(h1, [[4.1, 0.0]], rtol=0, atol=1e-14)
    assert ref.cell_kind(d) == "single"


def test_nil_input_slot_and_unit_transform_and_fp16():
    # nil input slot: zero W, zero b, identity neuron -> h1 = U h0
    d = single(2, 2, U=[[1, 0], [0, 2]])
    d.input_weights = None
    assert np.allclose(ref.single_gate_cell(d, np.ones((1, 2)), np.array([[1.0, 1.0]])), [[1, 2]])
    # unit transform: W ignored (identity), bias + neuron kept
    d = single(2, 2, W=[[5, 5], [5, 5]], b=[1.0, -10.0], neuron=nrn(1, a=0.0),
               use_layer_input_unit_transform_mode=True)
    got = ref.single_gate_cell(d, np.array([[2.0, 3.0]]), np.zeros((1, 2)))
    assert np.allclose(got, [[3.0, 0.0]])
    # float16 weights: W = 0.1 rounds to 0.0999755859375; bias stays exact
    d = single(1, 1, W=[[0.1]], b=[0.1], use_float32_weights=False)
    got = ref.single_gate_cell(d, np.array([[1.0]]), np.zeros((1, 1)))
    assert got[0, 0] == 0.0999755859375 + 0.1


# ------------------------------------------------------------------ GRU
def _gru_1ch(p, flip):
    return gru(1, 1, p=p, flip=flip,
               input_gate_input_weights=slot([[0.5]], [0.1], nrn(3)),
               input_gate_recurrent_weights=slot([[-0.3]]),
               recurrent_gate_input_weights=slot([[0.2]], [0.0], nrn(3)),
               recurrent_gate_recurrent_weights=slot([[0.4]]),
               output_gate_input_weights=slot([[1.5]], [-0.1], nrn(5, 1.0, 1.0)),
               output_gate_recurrent_weights=slot([[0.7]]),
               output_gate_input_gate_weights=slot([[0.25]]))


@pytest.mark.parametrize("p", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("flip", [False, True])
def test_gru_pnorm_and_flip(p, flip):
    x, h0 = 0.8, -0.6
    z = sig(0.5 * x - 0.3 * h0 + 0.1)
    r = sig(0.2 * x + 0.4 * h0)
    c = 0.7 * (r * h0) + 0.25 * (z * h0)
    h = math.tanh(1.5 * x + c - 0.1)
    keep = (1.0 - z ** p) ** (1.0 / p)
    want = keep * h0 + z * h if flip else keep * h + z * h0
    d = _gru_1ch(p, flip)
    assert ref.cell_kind(d) == "gru"
    got = ref.gru_cell(d, np.array([[x]]), np.array([[h0]]))
    assert got[0, 0] == pytest.approx(want, rel=1e-14)


# ------------------------------------------------------------------ LSTM
def _lstm_1ch(diagonal):
    V = (lambda v: slot([v])) if diagonal else (lambda v: slot([[v]]))
    return lstm(1, 1, diagonal=diagonal, gh=5, gha=1.0, ghb=1.0,
                input_gate_input_weights=slot([[0.5]], [0.1], nrn(3)),
                input_gate_recurrent_weights=slot([[-0.2]]),
                input_gate_memory_weights=V(0.3),
                forget_gate_input_weights=slot([[0.4]], [1.0], nrn(3)),
                forget_gate_recurrent_weights=slot([[0.1]]),
                forget_gate_memory_weights=V(-0.5),
                cell_gate_input_weights=slot([[1.2]], [0.0], nrn(5, 1.0, 1.0)),
                cell_gate_recurrent_weights=slot([[0.6]]),
                cell_gate_memory_weights=None,
                output_gate_input_weights=slot([[-0.7]], [0.2], nrn(3)),
                output_gate_recurrent_weights=slot([[0.9]]),
                output_gate_memory_weights=V(0.8))


@pytest.mark.parametrize("diagonal", [False, True])
def test_lstm_one_step_by_hand(diagonal):
    x, h0, c0 = 0.9, -0.4, 0.6
    I = sig(0.5 * x - 0.2 * h0 + 0.3 * c0 + 0.1)
    F = sig(0.4 * x + 0.1 * h0 - 0.5 * c0 + 1.0)
    C = math.tanh(1.2 * x + 0.6 * h0)
    c1 = F * c0 + I * C
    O = sig(-0.7 * x + 0.9 * h0 + 0.8 * c1 + 0.2)  # peeks at the new cell
    h1 = O * math.tanh(c1)
    d = _lstm_1ch(diagonal)
    assert ref.cell_kind(d) == "lstm"
    gh1, gc1 = ref.lstm_cell(d, np.array([[x]]), np.array([[h0]]), np.array([[c0]]))
    assert gc1[0, 0] == pytest.approx(c1, rel=1e-14)
    assert gh1[0, 0] == pytest.approx(h1, rel=1e-14)


def test_lstm_all_nil_is_zero_and_gh_params():
    d = lstm(2, 2)
    h1, c1 = ref.lstm_cell(d, np.ones((3, 2)), np.ones((3, 2)), np.full((3, 2), 0.5))
    # all gates identity of zero: I = F = C = O = 0 -> c1 = 0, h1 = 0
    assert np.all(h1 == 0) and np.all(c1 == 0)
    # gh LINEAR with a=2, b=1: h1 = O * (2*c1 + 1); use identity gates with biases
    d = lstm(1, 1, gh=2, gha=2.0, ghb=1.0,
             input_gate_input_weights=slot([[0.0]], [0.5]),
             forget_gate_input_weights=slot([[0.0]], [0.25]),
             cell_gate_input_weights=slot([[1.0]], [0.0]),
             output_gate_input_weights=slot([[0.0]], [3.0]))
    h1, c1 = ref.lstm_cell(d, np.array([[2.0]]), np.zeros((1, 1)), np.array([[4.0]]))
    assert c1[0, 0] == 0.25 * 4.0 + 0.5 * 2.0
    assert h1[0, 0] == 3.0 * (2.0 * 2.0 + 1.0)


# ------------------------------------------------------------------ sequences
def _accumulator():
    # h1 = x + h0 (W = U = 1, identity neuron): the state is a running sum
    return single(1, 1, W=[[1.0]], U=[[1.0]])


def test_variable_length_forward_copies_state_forward():
    d = _accumulator()
    xs = [np.array([[1.0], [10.0], [100.0]]), np.array([[2.0], [20.0]]), np.array([[3.0]])]
    ys, hs, cs = ref.run_layer(d, xs)
    assert [y.shape for y in ys] == [(3, 1), (2, 1), (1, 1)]
    assert ys[2][0, 0] == 6.0 and ys[1][1, 0] == 30.0 and ys[0][2, 0] == 100.0
    # full states: ended sequences keep their final value
    assert np.array_equal(hs[-1][:, 0], [6.0, 30.0, 100.0])
    assert np.array_equal(hs[1][:, 0], [3.0, 30.0, 100.0])
    assert cs == [None, None, None]
    ys2, states = ref.encode_sequence([d], xs)
    assert all(np.array_equal(a, b) for a, b in zip(ys, ys2))
    assert np.array_equal(states[2][0][0][:, 0], [6.0, 30.0, 100.0]) and states[2][0][1] is None


def test_variable_length_reverse_starts_late_sequences_from_initial_state():
    d = _accumulator()
    xs = [np.array([[1.0], [10.0], [100.0]]), np.array([[2.0], [20.0]]), np.array([[3.0]])]
    h0 = np.array([[0.5], [0.25], [0.125]])
    ys, hs, _ = ref.run_layer(d, xs, h0=h0, reverse=True)
    # processing order t = 2, 1, 0; row 2 (length 1) starts only at t = 0 from h0
    assert np.array_equal(hs[0][:, 0], [3.5, 0.25, 0.125])
    assert np.array_equal(hs[1][:, 0], [5.5, 20.25, 0.125])
    assert np.array_equal(hs[2][:, 0], [6.5, 30.25, 100.125])
    assert ys[2][0, 0] == 3.5 and ys[1][1, 0] == 20.25 and ys[0][2, 0] == 100.125


def test_encode_sequence_stack_ignores_direction_and_uses_h0s():
    d1 = _accumulator()
    d2 = single(1, 2, W=[[1.0], [2.0]], U=[[0.0, 0.0], [0.0, 0.0]], layer_sequence_direction=1)
    xs = [np.array([[1.0]]), np.array([[2.0]])]
    ys, states = ref.encode_sequence([d1, d2], xs, h0s=[np.array([[10.0]]), None])
    # layer 1: 11, 13 ; layer 2: [11, 22], [13, 26]
    assert np.array_equal(ys[0], [[11.0, 22.0]]) and np.array_equal(ys[1], [[13.0, 26.0]])
    assert len(states) == 2 and len(states[1]) == 2
    assert np.array_equal(states[1][0][0], [[13.0]])


def test_lstm_sequence_state_lists():
    d = _lstm_1ch(False)
    xs = [np.array([[0.1], [0.2]]), np.array([[0.3]])]
    ys, hs, cs = ref.run_layer(d, xs)
    assert cs[0].shape == (2, 1) and cs[1].shape == (2, 1)
    assert cs[1][1, 0] == cs[0][1, 0]  # ended sequence keeps its cell


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_bidirectional_combine(mode):
    f = _accumulator()
    b = single(1, 1, W=[[2.0]], U=[[1.0]], layer_sequence_direction=1)
    xs = [np.array([[1.0], [5.0]]), np.array([[2.0]]), np.array([[3.0]])]
    first, second = ref.encode_bidirectional([f, b], xs, mode)
    fwd = [[[1.0], [5.0]], [[3.0]], [[6.0]]]
    # backward: t=2 -> 6 ; t=1 -> 6+4 = 10 ; t=0 -> row0 10+2 = 12, row1 (starts at t=0) 10
    bwd = [[[12.0], [10.0]], [[10.0]], [[6.0]]]
    if mode == 0:
        assert [y.tolist() for y in first] == fwd and [y.tolist() for y in second] == bwd
    elif mode == 1:
        assert second is None
        assert [y.tolist() for y in first] == [[[13.0], [15.0]], [[13.0]], [[12.0]]]
    else:
        assert second is None
        assert [y.shape for y in first] == [(2, 2), (1, 2), (1, 2)]
        assert first[0].tolist() == [[1.0, 12.0], [5.0, 10.0]]


def test_bidirectional_same_direction_layers_chain():
    # two forward layers chain; the backward layer reads xs, not the forward output
    f1 = _accumulator()
    f2 = single(1, 1, W=[[10.0]], U=[[0.0]])
    b1 = single(1, 1, W=[[1.0]], U=[[0.0]], layer_sequence_direction=1)
    xs = [np.array([[1.0]]), np.array([[2.0]])]
    fwd, bwd = ref.encode_bidirectional([f1, b1, f2], xs, 0)
    assert [y[0, 0] for y in fwd] == [10.0, 30.0]
    assert [y[0, 0] for y in bwd] == [1.0, 2.0]
