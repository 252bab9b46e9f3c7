"""Descriptors and ConvolutionWeights: every MPS property, its default, and validation."""
import numpy as np
import pytest

import mpsrnn as m

BASE_DEFAULTS = {
    "use_layer_input_unit_transform_mode": False,
    "use_float32_weights": False,
    "layer_sequence_direction": m.SequenceDirection.FORWARD,
}
SLOTS = {
    m.RNNSingleGateDescriptor: ["input_weights", "recurrent_weights"],
    m.GRUDescriptor: ["input_gate_input_weights", "input_gate_recurrent_weights", "recurrent_gate_input_weights",
                      "recurrent_gate_recurrent_weights", "output_gate_input_weights",
                      "output_gate_recurrent_weights", "output_gate_input_gate_weights"],
    m.LSTMDescriptor: [f"{g}_gate_{w}_weights" for g in ("input", "forget", "cell", "output")
                       for w in ("input", "recurrent", "memory")],
}
EXTRA_DEFAULTS = {
    m.RNNSingleGateDescriptor: {},
    m.GRUDescriptor: {"gate_pnorm_value": 1.0, "flip_output_gates": False},
    m.LSTMDescriptor: {"memory_weights_are_diagonal": False, "cell_to_output_neuron_type": m.NeuronType.TANH,
                       "cell_to_output_neuron_param_a": 1.0, "cell_to_output_neuron_param_b": 1.0,
                       "cell_to_output_neuron_param_c": 1.0},
}


@pytest.mark.parametrize("cls", list(SLOTS), ids=lambda c: c.__name__)
def test_every_property_and_default(cls):
    d = cls(3, 5)
    assert isinstance(d, m.RNNDescriptor)
    assert (d.input_feature_channels, d.output_feature_channels) == (3, 5)
    expected = dict(BASE_DEFAULTS, **EXTRA_DEFAULTS[cls], **{s: None for s in SLOTS[cls]})
    for name, value in expected.items():
        assert getattr(d, name) == value, name
    assert set(d.properties()) == set(expected) | {"input_feature_channels", "output_feature_channels"}


@pytest.mark.parametrize("cls", list(SLOTS), ids=lambda c: c.__name__)
def test_properties_are_settable_and_checked(cls, rng):
    d = cls(4, 4, use_float32_weights=True, layer_sequence_direction="backward")
    assert d.use_float32_weights is True and d.layer_sequence_direction == m.SequenceDirection.BACKWARD
    w = m.ConvolutionWeights(rng.standard_normal((4, 4)).astype(np.float32))
    for slot in SLOTS[cls]:
        setattr(d, slot, w)
        assert getattr(d, slot) is w
    d.output_feature_channels = 6
    assert d.output_feature_channels == 6
    with pytest.raises(TypeError, match=f"{cls.__name__}.use_float32_weights: expected True or False"):
        d.use_float32_weights = 1
    with pytest.raises(TypeError, match=f"{cls.__name__}.{SLOTS[cls][0]}: expected a mpsrnn.ConvolutionWeights"):
        setattr(d, SLOTS[cls][0], np.zeros((4, 4)))
    with pytest.raises(ValueError, match=f"{cls.__name__}.layer_sequence_direction"):
        d.layer_sequence_direction = 2
    with pytest.raises(ValueError, match=f"{cls.__name__}.input_feature_channels: expected a positive integer"):
        d.input_feature_channels = 0
    with pytest.raises(AttributeError, match="has no property 'forget_gate_input_weight'"):
        d.forget_gate_input_weight = w
    with pytest.raises(TypeError, match="unknown property 'use_float64_weights'"):
        cls(3, 3, use_float64_weights=True)


def test_gru_and_lstm_specific_checks():
    with pytest.raises(ValueError, match="GRUDescriptor.gate_pnorm_value: the p-norm value must be a finite number > 0"):
        m.GRUDescriptor(2, 2, gate_pnorm_value=0.0)
    with pytest.raises(ValueError, match="cell_to_output_neuron_type: PRELU needs per-channel slopes"):
        m.LSTMDescriptor(2, 2, cell_to_output_neuron_type=m.NeuronType.PRELU)
    d = m.LSTMDescriptor(2, 2, cell_to_output_neuron_type="sigmoid", cell_to_output_neuron_param_a=2)
    assert d.cell_to_output_neuron_type == m.NeuronType.SIGMOID and d.cell_to_output_neuron_param_a == 2.0


@pytest.mark.parametrize("build, match", [
    (lambda: m.RNNSingleGateDescriptor(3, 4, use_layer_input_unit_transform_mode=True),
     "RNNSingleGateDescriptor.use_layer_input_unit_transform_mode: the identity input transform needs "
     "input_feature_channels == output_feature_channels, got 3 and 4"),
    (lambda: m.RNNSingleGateDescriptor(3, 4, input_weights=m.ConvolutionWeights(np.ones((4, 3)), neuron=m.Neuron(
        m.NeuronType.PRELU, a=np.ones(3)))),
     "RNNSingleGateDescriptor.input_weights: its PRELU neuron has 3 slopes; expected one per output feature channel"),
    (lambda: m.LSTMDescriptor(3, 4, memory_weights_are_diagonal=True,
                              forget_gate_memory_weights=m.ConvolutionWeights(np.ones(3))),
     "LSTMDescriptor.forget_gate_memory_weights: with memory_weights_are_diagonal the memory weights are a vector "
     "of length 4"),
    (lambda: m.LSTMDescriptor(3, 4, forget_gate_memory_weights=m.ConvolutionWeights(np.ones(4))),
     r"LSTMDescriptor.forget_gate_memory_weights: expected an \(4, 4\) matrix, got a vector"),
    (lambda: m.GRUDescriptor(3, 4, input_gate_input_weights=m.ConvolutionWeights(np.ones((4, 3, 3, 3)))),
     "GRUDescriptor.input_gate_input_weights: matrix layers take 1x1 weights; got a 3x3 kernel"),
    (lambda: m.GRUDescriptor(3, 4, input_gate_input_weights=m.ConvolutionWeights(np.ones((4, 2)))),
     r"GRUDescriptor.input_gate_input_weights: expected weights of shape \(4, 3\), got \(4, 2\)"),
])
def test_invalid_descriptors_name_the_field(build, match):
    with pytest.raises(ValueError, match=match):
        build().validate()
    with pytest.raises(ValueError, match=match):
        m.RNNMatrixInferenceLayer(build())


def test_one_by_one_kernels_are_matrices(rng):
    w = rng.standard_normal((4, 1, 1, 3)).astype(np.float32)
    d = m.RNNSingleGateDescriptor(3, 4, use_float32_weights=True, input_weights=m.ConvolutionWeights(w))
    x = rng.standard_normal((2, 3)).astype(np.float32)
    y = np.asarray(m.RNNMatrixInferenceLayer(d).encode_sequence([x])[0])
    np.testing.assert_allclose(y, x @ w.reshape(4, 3).T, rtol=1e-5, atol=1e-6)


def test_convolution_weights(rng):
    w = rng.standard_normal((5, 2, 3, 4))
    b = rng.standard_normal(5)
    cw = m.ConvolutionWeights(w, b, m.Neuron("relu"))
    assert (cw.output_feature_channels, cw.kernel_height, cw.kernel_width, cw.input_feature_channels) == (5, 2, 3, 4)
    assert cw.weights.dtype == np.float32 and np.allclose(cw.weights, w) and cw.neuron.type == m.NeuronType.RELU
    w[0, 0, 0, 0] = 1e6   # copied at construction, as MPS reads a data source once
    assert cw.weights[0, 0, 0, 0] != 1e6
    vec = m.ConvolutionWeights(np.ones(6))
    assert (vec.output_feature_channels, vec.kernel_height, vec.kernel_width) == (6, 1, 1)
    with pytest.raises(ValueError, match=r"ConvolutionWeights.bias: expected shape \(5,\)"):
        m.ConvolutionWeights(w, np.ones(4))
    with pytest.raises(ValueError, match="ConvolutionWeights.weights: expected a 1-D or 2-D or 4-D array"):
        m.ConvolutionWeights(np.ones((2, 2, 2)))
    with pytest.raises(TypeError, match="ConvolutionWeights.neuron: expected a mpsrnn.Neuron"):
        m.ConvolutionWeights(np.ones((2, 2)), neuron="relu")
    with pytest.raises(ValueError, match="ConvolutionWeights.weights: expected real numbers"):
        m.ConvolutionWeights(np.ones((2, 2), complex))


def test_enums_carry_mps_raw_values():
    assert m.NeuronType.GELU == 15 and len(m.NeuronType) == 16
    assert [m.RNNMatrixId.LSTM_INPUT_GATE_INPUT_WEIGHTS, m.RNNMatrixId.LSTM_MEMORY_GATE_BIAS_TERMS,
            m.RNNMatrixId.LSTM_OUTPUT_GATE_BIAS_TERMS, m.RNNMatrixId.GRU_OUTPUT_GATE_BIAS_TERMS] == [3, 14, 18, 28]
    assert len(m.RNNMatrixId) == 29 and list(m.RNNMatrixId) == sorted(m.RNNMatrixId)
    assert (m.BidirectionalCombineMode.CONCATENATE, m.SequenceDirection.BACKWARD) == (2, 1)
    assert m.DataType.FLOAT32 == 0x10000020 and m.DataType.FLOAT16 == 0x10000010
