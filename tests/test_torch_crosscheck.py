"""Cross-checks against PyTorch where its semantics coincide with MPS's.

PyTorch's LSTM is MPS's LSTM with sigmoid/tanh/sigmoid/sigmoid gate neurons, no
peepholes and bias b_ih + b_hh; its tanh/ReLU RNN is MPS's single gate. (Its GRU
applies the reset gate after the recurrent product, MPS's before: not comparable.)
A packed batch of sequences sorted by decreasing length is MPS's shrinking rows.
"""
import numpy as np
import pytest

import mpsrnn as m
from builders import assert_close

torch = pytest.importorskip("torch")

LSTM_GATES = (("input", "sigmoid"), ("forget", "sigmoid"), ("cell", "tanh"), ("output", "sigmoid"))


def _params(mod, layer, suffix=""):
    get = lambda n: getattr(mod, f"{n}_l{layer}{suffix}").detach().numpy().astype(np.float32)  # noqa: E731
    return get("weight_ih"), get("weight_hh"), get("bias_ih") + get("bias_hh")


def lstm_descriptor(mod, layer, suffix="", direction=m.SequenceDirection.FORWARD):
    w_ih, w_hh, b = _params(mod, layer, suffix)
    H = mod.hidden_size
    d = m.LSTMDescriptor(w_ih.shape[1], H, use_float32_weights=True, layer_sequence_direction=direction)
    for g, (name, neuron) in enumerate(LSTM_GATES):
        rows = slice(g * H, (g + 1) * H)
        setattr(d, f"{name}_gate_input_weights", m.ConvolutionWeights(w_ih[rows], b[rows], m.Neuron(neuron)))
        setattr(d, f"{name}_gate_recurrent_weights", m.ConvolutionWeights(w_hh[rows]))
    return d


def rnn_descriptor(mod, layer):
    w_ih, w_hh, b = _params(mod, layer)
    neuron = m.Neuron("tanh") if mod.nonlinearity == "tanh" else m.Neuron("relu")
    return m.RNNSingleGateDescriptor(w_ih.shape[1], mod.hidden_size, use_float32_weights=True,
                                     input_weights=m.ConvolutionWeights(w_ih, b, neuron),
                                     recurrent_weights=m.ConvolutionWeights(w_hh))


@pytest.fixture(autouse=True)
def _seed_torch(rng):
    torch.manual_seed(int(rng.integers(2**31)))


def test_two_layer_lstm_with_initial_state(rng):
    mod = torch.nn.LSTM(5, 7, num_layers=2).eval()
    x = torch.randn(6, 3, 5)
    h0, c0 = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    with torch.no_grad():
        y, (hn, cn) = mod(x, (h0, c0))
    layer = m.RNNMatrixInferenceLayer([lstm_descriptor(mod, 0), lstm_descriptor(mod, 1)])
    state = m.RNNRecurrentMatrixState(list(h0), list(c0))
    states = []
    ours = layer.encode_sequence(x, recurrent_input_state=state, recurrent_output_states=states)
    assert_close(np.stack([np.asarray(o) for o in ours]), y.numpy(), what="outputs")
    for k in range(2):
        assert_close(np.asarray(states[0].get_recurrent_output_matrix(k)), hn[k].numpy(), what=f"h_n[{k}]")
        assert_close(np.asarray(states[0].get_memory_cell_matrix(k)), cn[k].numpy(), what=f"c_n[{k}]")


def test_bidirectional_lstm_over_a_packed_batch(rng):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    mod = torch.nn.LSTM(4, 6, bidirectional=True).eval()
    lengths = [7, 5, 5, 2]
    x = torch.randn(7, 4, 4)
    with torch.no_grad():
        packed, _ = mod(pack_padded_sequence(x, lengths))
    y, _ = pad_packed_sequence(packed)
    layer = m.RNNMatrixInferenceLayer([lstm_descriptor(mod, 0),
                                       lstm_descriptor(mod, 0, "_reverse", m.SequenceDirection.BACKWARD)])
    layer.bidirectional_combine_mode = m.BidirectionalCombineMode.CONCATENATE
    rows = [sum(n > t for n in lengths) for t in range(7)]
    ours, none = layer.encode_bidirectional_sequence([x[t, :r].numpy() for t, r in enumerate(rows)])
    assert none is None
    for t, r in enumerate(rows):
        assert_close(np.asarray(ours[t]), y[t, :r].numpy(), what=f"step {t}")


def test_lstm_final_state_of_a_packed_batch(rng):
    from torch.nn.utils.rnn import pack_padded_sequence
    mod = torch.nn.LSTM(3, 5).eval()
    lengths = [6, 4, 1]
    x = torch.randn(6, 3, 3)
    with torch.no_grad():
        _, (hn, cn) = mod(pack_padded_sequence(x, lengths))
    rows = [sum(n > t for n in lengths) for t in range(6)]
    states = []
    m.RNNMatrixInferenceLayer(lstm_descriptor(mod, 0)).encode_sequence(
        [x[t, :r].numpy() for t, r in enumerate(rows)], recurrent_output_states=states)
    assert_close(np.asarray(states[0].get_recurrent_output_matrix(0)), hn[0].numpy(), what="h_n")
    assert_close(np.asarray(states[0].get_memory_cell_matrix(0)), cn[0].numpy(), what="c_n")


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn(nonlinearity, rng):
    mod = torch.nn.RNN(6, 5, num_layers=2, nonlinearity=nonlinearity).eval()
    x = torch.randn(5, 2, 6)
    h0 = torch.randn(2, 2, 5)
    with torch.no_grad():
        y, hn = mod(x, h0)
    layer = m.RNNMatrixInferenceLayer([rnn_descriptor(mod, 0), rnn_descriptor(mod, 1)])
    states = []
    ours = layer.encode_sequence(list(x), recurrent_input_state=m.RNNRecurrentMatrixState(list(h0)),
                                 recurrent_output_states=states)
    assert_close(np.stack([np.asarray(o) for o in ours]), y.numpy(), what="outputs")
    assert_close(np.asarray(states[0].get_recurrent_output_matrix(1)), hn[1].numpy(), what="h_n")
