"""RNNMatrixInferenceLayer against the float64 reference (tests/reference.py).

Every test draws fresh random weights and inputs; destinations are poisoned
with NaN so a step the kernels did not write shows up.
"""
import numpy as np
import pytest

import mpsrnn as m
import reference as R
from builders import (GATE_NEURONS, assert_close, assert_seq_close, descriptor, gru, lstm, sequence, single_gate,
                      weights)

KINDS = ["single", "gru", "lstm"]
VARIABLE_ROWS = [5, 5, 4, 2, 2, 1]


def poisoned(rows, channels, dtype=m.DataType.FLOAT32):
    out = []
    for r in rows:
        mat = m.Matrix(r, channels, dtype)
        mat.storage.array.fill(float("nan"))
        mat.storage.written()
        out.append(mat)
    return out


@pytest.mark.parametrize("float32_weights", [True, False], ids=["w32", "w16"])
@pytest.mark.parametrize("neurons", sorted(GATE_NEURONS))
@pytest.mark.parametrize("kind", KINDS)
def test_cell_over_variable_length_sequence(kind, neurons, float32_weights, rng):
    d = descriptor(kind, rng, 3, 6, neurons=neurons, use_float32_weights=float32_weights)
    layer = m.RNNMatrixInferenceLayer(d)
    xs = sequence(rng, VARIABLE_ROWS, 3)
    dst = poisoned(VARIABLE_ROWS, 6)
    ys = layer.encode_sequence(xs, dst)
    assert ys is dst
    ref, _ = R.encode_sequence([d], xs)
    assert_seq_close(ys, ref)


RNN_NEURONS = [
    m.Neuron("none"), m.Neuron("relu"), m.Neuron("relu", a=0.2), m.Neuron("linear", a=0.5, b=0.1),
    m.Neuron("sigmoid"), m.Neuron("hard_sigmoid"), m.Neuron("tanh", a=1.5, b=0.5), m.Neuron("absolute"),
    m.Neuron("soft_plus", a=0.8, b=1.2), m.Neuron("soft_sign"), m.Neuron("elu", a=0.6),
    m.Neuron("relu_n", a=0.1, b=1.5), m.Neuron("power", a=0.2, b=0.5, c=2.0), m.Neuron("exponential", a=0.3),
    m.Neuron("logarithm", a=0.05, b=3.0), m.Neuron("logarithm", a=0.05, b=3.0, c=10.0), m.Neuron("gelu"),
]


@pytest.mark.parametrize("neuron", RNN_NEURONS + ["prelu"], ids=lambda n: str(n).split(",")[0].replace("Neuron(", ""))
def test_every_neuron_inside_the_step_kernel(neuron, rng):
    H = 5
    if neuron == "prelu":
        neuron = m.Neuron(m.NeuronType.PRELU, a=rng.uniform(0.05, 0.5, H).astype(np.float32))
    d = single_gate(rng, 4, H, neuron=neuron, use_float32_weights=True)
    xs = sequence(rng, [3, 3, 2, 1], 4)
    ys = m.RNNMatrixInferenceLayer(d).encode_sequence(xs, poisoned([3, 3, 2, 1], H))
    assert_seq_close(ys, R.encode_sequence([d], xs)[0])


@pytest.mark.parametrize("peephole, float32_weights, nil, cell_neuron", [
    (None, True, (), None),
    ("diagonal", True, (), None),
    ("dense", True, (), None),
    ("dense", False, (), None),
    ("diagonal", False, ("forget_gate_input_weights", "cell_gate_recurrent_weights"), None),
    ("dense", True, ("input_gate_memory_weights", "output_gate_recurrent_weights"), (m.NeuronType.SOFT_SIGN, 1, 1, 1)),
    ("dense", True, ("output_gate_memory_weights",), (m.NeuronType.TANH, 0.7, 1.3, 1.0)),
    ("diagonal", True, ("output_gate_memory_weights", "input_gate_input_weights"),
     (m.NeuronType.LINEAR, 0.5, 0.2, 1.0)),
])
def test_lstm_variants(peephole, float32_weights, nil, cell_neuron, rng):
    d = lstm(rng, 4, 7, peephole=peephole, nil=nil, use_float32_weights=float32_weights)
    if cell_neuron:
        (d.cell_to_output_neuron_type, d.cell_to_output_neuron_param_a, d.cell_to_output_neuron_param_b,
         d.cell_to_output_neuron_param_c) = cell_neuron
    xs = sequence(rng, VARIABLE_ROWS, 4)
    ys = m.RNNMatrixInferenceLayer(d).encode_sequence(xs, poisoned(VARIABLE_ROWS, 7))
    assert_seq_close(ys, R.encode_sequence([d], xs)[0])


@pytest.mark.parametrize("pnorm, flip, nil", [
    (1.0, False, ()),
    (1.0, True, ()),
    (2.0, False, ()),
    (0.5, True, ()),
    (1.0, False, ("output_gate_input_gate_weights",)),   # conventional reset-before GRU
    (3.0, True, ("output_gate_recurrent_weights",)),      # Minimal Gated Unit (Vh only)
    (1.0, False, ("recurrent_gate_input_weights", "input_gate_recurrent_weights")),
])
def test_gru_variants(pnorm, flip, nil, rng):
    d = gru(rng, 3, 6, nil=nil, gate_pnorm_value=pnorm, flip_output_gates=flip, use_float32_weights=True)
    xs = sequence(rng, VARIABLE_ROWS, 3)
    ys = m.RNNMatrixInferenceLayer(d).encode_sequence(xs, poisoned(VARIABLE_ROWS, 6))
    assert_seq_close(ys, R.encode_sequence([d], xs)[0])


@pytest.mark.parametrize("kind", KINDS)
def test_unit_input_transform_replaces_every_w_by_identity(kind, rng):
    nil = {"single": ("input_weights",), "gru": ("recurrent_gate_input_weights",),
           "lstm": ("forget_gate_input_weights",)}[kind]
    d = descriptor(kind, rng, 5, 5, nil=nil, use_float32_weights=True, use_layer_input_unit_transform_mode=True)
    xs = sequence(rng, [3, 3, 3], 5)
    ys = m.RNNMatrixInferenceLayer(d).encode_sequence(xs)
    assert_seq_close(ys, R.encode_sequence([d], xs)[0])
    d.use_layer_input_unit_transform_mode = False  # the weights were really ignored
    other = m.RNNMatrixInferenceLayer(d).encode_sequence(xs)
    assert not np.allclose(np.asarray(other[-1]), np.asarray(ys[-1]), rtol=1e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_float16_weights_are_rounded_and_accumulated_in_float32(kind, rng):
    d = descriptor(kind, rng, 6, 8, use_float32_weights=False)
    xs = sequence(rng, [4, 4, 3, 3, 1], 6)
    ys = m.RNNMatrixInferenceLayer(d).encode_sequence(xs)
    assert_seq_close(ys, R.encode_sequence([d], xs)[0], rtol=1e-5)   # float32 accuracy given rounded weights
    d.use_float32_weights = True
    unrounded = R.encode_sequence([d], xs)[0]
    assert max(np.abs(np.asarray(y) - r).max() for y, r in zip(ys, unrounded)) > 1e-5  # rounding did happen


def test_float16_matrices_in_and_out(rng):
    d = lstm(rng, 4, 6, use_float32_weights=True)
    xs = sequence(rng, VARIABLE_ROWS, 4, dtype=np.float16)
    ys = m.RNNMatrixInferenceLayer(d).encode_sequence(xs)
    assert all(y.data_type == m.DataType.FLOAT16 for y in ys)
    ref = R.encode_sequence([d], xs)[0]
    assert_seq_close(ys, ref, rtol=1e-3)  # float16 output rounding (~5e-4)


STACKS = [
    [("lstm", 3, 6), ("gru", 6, 5), ("single", 5, 4)],
    [("single", 4, 4, {"use_layer_input_unit_transform_mode": True}), ("lstm", 4, 7, {"peephole": "diagonal"})],
    [("gru", 5, 3, {"layer_sequence_direction": m.SequenceDirection.BACKWARD}), ("gru", 3, 8), ("lstm", 8, 2)],
]


def build_stack(rng, spec, float32_weights=True):
    out = []
    for item in spec:
        kind, n_in, n_out = item[:3]
        kw = dict(item[3]) if len(item) > 3 else {}
        kw.setdefault("use_float32_weights", float32_weights)
        out.append(descriptor(kind, rng, n_in, n_out, **kw))
    return out


@pytest.mark.parametrize("float32_weights", [True, False], ids=["w32", "w16"])
@pytest.mark.parametrize("spec", STACKS, ids=["lstm-gru-rnn", "rnn-lstm", "gru-gru-lstm"])
def test_stacks_of_mixed_cells(spec, float32_weights, rng):
    ds = build_stack(rng, spec, float32_weights)
    layer = m.RNNMatrixInferenceLayer(ds)
    assert layer.number_of_layers == len(ds)
    assert (layer.input_feature_channels, layer.output_feature_channels) == (spec[0][1], spec[-1][2])
    xs = sequence(rng, VARIABLE_ROWS, spec[0][1])
    ys = layer.encode_sequence(xs, poisoned(VARIABLE_ROWS, spec[-1][2]))
    assert_seq_close(ys, R.encode_sequence(ds, xs)[0])


def _state_arrays(state, n_layers):
    hs = [np.asarray(state.get_recurrent_output_matrix(k)) for k in range(n_layers)]
    cs = [state.get_memory_cell_matrix(k) for k in range(n_layers)]
    return hs, [None if c is None else np.asarray(c) for c in cs]


def test_state_carries_from_one_call_to_the_next(rng):
    ds = build_stack(rng, [("lstm", 3, 5), ("gru", 5, 4), ("single", 4, 6)])
    layer = m.RNNMatrixInferenceLayer(ds)
    rows = [4, 4, 4, 3, 3, 2, 1]
    xs = sequence(rng, rows, 3)
    full = R.encode_sequence(ds, xs)[0]
    states = []
    first = layer.encode_sequence(xs[:3], recurrent_output_states=states)
    assert len(states) == 1 and isinstance(states[0], m.RNNRecurrentMatrixState)
    assert states[0].get_memory_cell_matrix(1) is None and states[0].get_memory_cell_matrix(0) is not None
    second = layer.encode_sequence(xs[3:], recurrent_input_state=states[0], recurrent_output_states=states)
    assert_seq_close(first + second, full)
    # the 4th sequence ended at the split; it keeps its state through the second call
    hs, cs = _state_arrays(states[1], 3)
    ref_state = R.encode_sequence(ds, xs)[1][-1]
    for k in range(3):
        assert_close(hs[k], ref_state[k][0], what=f"final h of layer {k}")
    assert_close(cs[0], ref_state[0][1], what="final c of layer 0")


def test_user_built_initial_state(rng):
    ds = build_stack(rng, [("gru", 3, 5), ("lstm", 5, 4)])
    layer = m.RNNMatrixInferenceLayer(ds)
    xs = sequence(rng, [3, 2, 2, 1], 3)
    h0 = [rng.standard_normal((3, 5)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)]
    c0 = [None, rng.standard_normal((3, 4)).astype(np.float32)]
    state = m.RNNRecurrentMatrixState(recurrent_outputs=h0, memory_cells=c0)
    ys = layer.encode_sequence(xs, recurrent_input_state=state)
    assert_seq_close(ys, R.encode_sequence(ds, xs, h0s=h0, c0s=c0)[0])
    # the same state as float16 device matrices
    h16 = [m.Matrix.from_numpy(h.astype(np.float16)) for h in h0]
    c16 = [None, m.Matrix.from_numpy(c0[1].astype(np.float16))]
    ys16 = layer.encode_sequence(xs, recurrent_input_state=m.RNNRecurrentMatrixState(h16, c16))
    ref16 = R.encode_sequence(ds, xs, h0s=[np.asarray(h) for h in h16], c0s=[None, np.asarray(c16[1])])[0]
    assert_seq_close(ys16, ref16)


def test_all_intermediate_states_copy_ended_sequences_forward(rng):
    ds = build_stack(rng, [("lstm", 3, 4, {"peephole": "dense"}), ("single", 4, 5)])
    layer = m.RNNMatrixInferenceLayer(ds)
    layer.store_all_intermediate_states = True
    xs = sequence(rng, VARIABLE_ROWS, 3)
    states = []
    layer.encode_sequence(xs, recurrent_output_states=states)
    _, ref_states = R.encode_sequence(ds, xs)
    assert len(states) == len(xs)
    for t, (state, ref) in enumerate(zip(states, ref_states)):
        hs, cs = _state_arrays(state, 2)
        for k in range(2):
            assert_close(hs[k], ref[k][0], what=f"h[{t}][layer {k}]")
            if ref[k][1] is not None:
                assert_close(cs[k], ref[k][1], what=f"c[{t}][layer {k}]")
            else:
                assert cs[k] is None


def test_last_state_of_variable_length_batch_is_each_sequences_own_last(rng):
    d = gru(rng, 2, 3, use_float32_weights=True)
    xs = sequence(rng, [3, 2, 1], 2)
    states = []
    m.RNNMatrixInferenceLayer(d).encode_sequence(xs, recurrent_output_states=states)
    h = np.asarray(states[0].get_recurrent_output_matrix(0))
    per_row = [R.encode_sequence([d], [x[r:r + 1] for x in xs[:n]])[0][-1][0] for r, n in ((0, 3), (1, 2), (2, 1))]
    assert_close(h, np.stack(per_row), what="final state")


BIDI_STACKS = [
    [("lstm", 3, 5, {"peephole": "diagonal"}), ("lstm", 3, 5, {"layer_sequence_direction": m.SequenceDirection.BACKWARD})],
    [("gru", 4, 6), ("single", 4, 6, {"layer_sequence_direction": m.SequenceDirection.BACKWARD}),
     ("lstm", 6, 5), ("gru", 6, 5, {"layer_sequence_direction": m.SequenceDirection.BACKWARD})],
    [("single", 2, 4, {"layer_sequence_direction": m.SequenceDirection.BACKWARD}), ("lstm", 2, 4, {"peephole": None})],
]


@pytest.mark.parametrize("variable", [False, True], ids=["fixed", "variable"])
@pytest.mark.parametrize("combine", list(m.BidirectionalCombineMode), ids=lambda c: c.name)
@pytest.mark.parametrize("spec", BIDI_STACKS, ids=["lstm2", "mixed4", "bwd-first"])
def test_bidirectional(spec, combine, variable, rng):
    ds = build_stack(rng, spec, float32_weights=not variable)
    layer = m.RNNMatrixInferenceLayer(ds)
    layer.bidirectional_combine_mode = combine
    rows = VARIABLE_ROWS if variable else [3] * 5
    xs = sequence(rng, rows, spec[0][1])
    fwd, bwd = layer.encode_bidirectional_sequence(xs)
    ref_f, ref_b = R.encode_bidirectional(ds, xs, int(combine))
    assert_seq_close(fwd, ref_f, what="forward/combined")
    if combine == m.BidirectionalCombineMode.NONE:
        assert_seq_close(bwd, ref_b, what="backward")
    else:
        assert bwd is None


def test_bidirectional_into_given_destinations(rng):
    ds = build_stack(rng, BIDI_STACKS[0])
    layer = m.RNNMatrixInferenceLayer(ds)
    xs = sequence(rng, VARIABLE_ROWS, 3)
    df, db = poisoned(VARIABLE_ROWS, 5), [np.full((r, 5), np.nan, np.float32) for r in VARIABLE_ROWS]
    fwd, bwd = layer.encode_bidirectional_sequence(xs, df, db)
    ref_f, ref_b = R.encode_bidirectional(ds, xs, 0)
    assert fwd is df and bwd is db
    assert_seq_close(df, ref_f)
    assert_seq_close(db, ref_b)


def test_source_and_destination_byte_offsets(rng):
    """Offsets into each matrix, and other offsets at the next call of the same shape (the same
    plan: the views are per call, written into the layer's frame when they change), then the
    first ones again."""
    d = lstm(rng, 3, 4, use_float32_weights=True)
    layer = m.RNNMatrixInferenceLayer(d)
    rows = [4, 3, 3]
    wide = [rng.standard_normal((r, 7)).astype(np.float32) for r in rows]
    xs = [m.Matrix.from_numpy(w) for w in wide]
    # read columns c..c+2 of each 7-column matrix; write columns c..c+3 of each 9-column one
    for src_cols, dst_cols in (([2, 0, 4], [5, 1, 0]), ([1, 3, 0], [0, 5, 2]), ([2, 0, 4], [5, 1, 0])):
        dst = poisoned(rows, 9)
        layer.encode_sequence(xs, dst, source_offsets=[4 * c for c in src_cols],
                              destination_offsets=[4 * c for c in dst_cols])
        ref = R.encode_sequence([d], [w[:, c:c + 3] for w, c in zip(wide, src_cols)])[0]
        for t, (mat, c) in enumerate(zip(dst, dst_cols)):
            a = np.asarray(mat)
            assert_close(a[:, c:c + 4], ref[t], what=f"columns {src_cols} -> {dst_cols}, step {t}")
            outside = np.delete(a, range(c, c + 4), axis=1)
            assert np.isnan(outside).all(), "wrote outside the offset block"


def test_inputs_in_every_accepted_form(rng):
    import torch
    d = gru(rng, 3, 4, use_float32_weights=True)
    layer = m.RNNMatrixInferenceLayer(d)
    x3 = rng.standard_normal((5, 2, 3)).astype(np.float32)
    ref = R.encode_sequence([d], list(x3))[0]
    forms = {
        "3-D ndarray": x3,
        "3-D tensor": torch.from_numpy(x3.copy()),
        "list of tensors": [torch.from_numpy(x.copy()) for x in x3],
        "separate matrices": [m.Matrix.from_numpy(x) for x in x3],
        "views of one storage": _views(x3),
    }
    for name, src in forms.items():
        assert_seq_close(layer.encode_sequence(src), ref, what=name)
    assert np.array_equal(x3, np.asarray(forms["3-D tensor"]))  # inputs untouched


def _views(x3):
    T, B, C = x3.shape
    big = m.Matrix.from_numpy(x3.reshape(T * B, C))
    return [m.Matrix.view(big.storage, t * B * C, B, C, C) for t in range(T)]


def test_destinations_in_every_accepted_form(rng):
    import torch
    d = single_gate(rng, 3, 4, use_float32_weights=True)
    layer = m.RNNMatrixInferenceLayer(d)
    rows = [3, 2, 2]
    xs = sequence(rng, rows, 3)
    ref = R.encode_sequence([d], xs)[0]
    regular = m.Matrix(sum(rows), 4)
    forms = {
        "separate matrices": poisoned(rows, 4),
        "views of one storage": [m.Matrix.view(regular.storage, o, r, 4, 4) for o, r in ((0, 3), (12, 2), (20, 2))],
        "ndarrays": [np.full((r, 4), np.nan, np.float32) for r in rows],
        "float16 ndarrays": [np.full((r, 4), np.nan, np.float16) for r in rows],
        "tensors": [torch.full((r, 4), float("nan")) for r in rows],
    }
    for name, dst in forms.items():
        out = layer.encode_sequence(xs, dst)
        assert out is dst, name
        assert_seq_close([np.asarray(o, np.float32) for o in out], ref,
                         rtol=1e-3 if "float16" in name else 1e-5, what=name)


def test_whole_host_arrays_as_destinations(rng):
    """A 3-D array (NumPy, float32 or float16, or a tensor) of the sequence's shape is filled in one
    copy; the call returns the array itself, as it returns a list the caller passed."""
    import torch
    d = lstm(rng, 3, 4, use_float32_weights=True)
    layer = m.RNNMatrixInferenceLayer(d)
    x3 = rng.standard_normal((4, 2, 3)).astype(np.float32)
    ref = R.encode_sequence([d], list(x3))[0]
    for name, dst in {"3-D ndarray": np.full((4, 2, 4), np.nan, np.float32),
                      "3-D float16 ndarray": np.full((4, 2, 4), np.nan, np.float16),
                      "3-D tensor": torch.full((4, 2, 4), float("nan"))}.items():
        out = layer.encode_sequence(x3, dst)
        assert out is dst, name
        assert_seq_close(np.asarray(dst, np.float32), ref, rtol=1e-3 if "float16" in name else 1e-5, what=name)


def _cuda_torch():
    """PyTorch, where its tensors can live on the GPU Taichi runs on (the arch is CUDA), else None."""
    if m.init() != "cuda":
        return None
    torch = pytest.importorskip("torch")
    return torch if torch.cuda.is_available() else None


def test_gpu_tensors_stay_on_the_device(rng, monkeypatch):
    """With Taichi on CUDA, a whole 3-D PyTorch tensor on its GPU is read and written there, by one
    copy on the device each way (nothing goes through the host), in float32 and float16; the call
    returns the destination tensor, and the source is untouched. A call encoded in a command buffer
    sees the source as it was when it was encoded."""
    torch = _cuda_torch()
    if torch is None:
        pytest.skip("needs the CUDA arch and PyTorch with CUDA")
    import mpsrnn.sequences as S
    monkeypatch.setenv("MPSRNN_CUDA_TENSORS", "on")

    def no_host(obj, name):
        raise AssertionError(f"{name} went through the host")
    monkeypatch.setattr(S, "as_numpy", no_host)
    d = lstm(rng, 3, 4, use_float32_weights=True)
    layer = m.RNNMatrixInferenceLayer(d)
    x3 = rng.standard_normal((5, 2, 3)).astype(np.float32)
    ref = R.encode_sequence([d], list(x3))[0]
    for dtype, rtol in ((torch.float32, 1e-5), (torch.float16, 1e-2)):
        x = torch.from_numpy(x3).to("cuda", dtype)
        kept = x.clone()
        y = torch.full((5, 2, 4), float("nan"), dtype=dtype, device="cuda")
        out = layer.encode_sequence(x, y)
        assert out is y
        assert torch.equal(x, kept), "the source changed"
        xr = x3 if dtype == torch.float32 else x3.astype(np.float16).astype(np.float32)
        assert_seq_close(y.float().cpu().numpy(), R.encode_sequence([d], list(xr))[0], rtol=rtol, what=str(dtype))
    x = torch.from_numpy(x3).cuda()
    y = torch.full((5, 2, 4), float("nan"), device="cuda")
    cb = m.CommandBuffer()
    layer.encode_sequence(x, y, command_buffer=cb)
    x.fill_(7.0)
    cb.commit()
    assert_seq_close(y.cpu().numpy(), ref, what="committed after the source changed")


def test_copy_flat_between_storages_and_tensors(rng):
    """``copy_flat``, the one dispatch that moves a whole tensor on Taichi's GPU in or out of a
    storage, in the destination's type: here with the tensors the arch takes as kernel arguments
    in place (CUDA tensors on CUDA, else host tensors), float32 and float16 either way."""
    torch = pytest.importorskip("torch")
    from mpsrnn.matrix import Storage
    from mpsrnn.sequences import copy_flat
    device = "cuda" if _cuda_torch() is not None else "cpu"
    a = rng.standard_normal(203).astype(np.float32)
    for tensor_type, data_type in ((torch.float32, m.DataType.FLOAT16), (torch.float16, m.DataType.FLOAT32)):
        t = torch.from_numpy(a).to(device, tensor_type)
        s = Storage(a.size, data_type)
        copy_flat(s.array, t)
        s.written()
        want = a.astype(np.float16).astype(np.float32)   # either way the values pass through float16 once
        assert np.array_equal(s.host().astype(np.float32), want), (tensor_type, data_type)
        back = torch.full((a.size,), float("nan"), dtype=tensor_type, device=device)
        copy_flat(back, s.array)
        assert np.array_equal(back.float().cpu().numpy(), want), (tensor_type, data_type)


def test_cuda_host_transfers_by_the_driver(rng, monkeypatch):
    """On CUDA a storage's host transfers are the driver's memcpy on the ndarray's device memory
    (``cuda_copy``), checked against Taichi's own transfers, in float32 and float16; and calls
    with NumPy arrays in and out, back to back with no synchronisation between them, see each its
    own data (a copy in waits for the kernels of the call before, still reading the staging
    storage: the calls return device outputs, so nothing synchronises until they are read)."""
    if m.init() != "cuda":
        pytest.skip("needs the CUDA arch")
    from mpsrnn import cuda_copy
    from mpsrnn.matrix import Storage
    monkeypatch.setenv("MPSRNN_CUDA_MEMCPY", "on")
    monkeypatch.setattr(cuda_copy, "_driver", None)   # read the knob again at the next transfer
    for dtype, data_type in ((np.float32, m.DataType.FLOAT32), (np.float16, m.DataType.FLOAT16)):
        a = rng.standard_normal(1003).astype(dtype)
        s = Storage(a.size, data_type)
        s.upload(a)
        assert cuda_copy.in_use()
        assert np.array_equal(s.array.to_numpy()[: a.size], a), "driver copy in, Taichi's copy out"
        b = rng.standard_normal(a.size).astype(dtype)
        s.array.from_numpy(b)
        s.written()
        assert np.array_equal(s.host(), b), "Taichi's copy in, driver copy out"
    d = single_gate(rng, 24, 32, use_float32_weights=True)
    layer = m.RNNMatrixInferenceLayer(d)
    xs = [rng.standard_normal((300, 2, 24)).astype(np.float32) for _ in range(3)]
    ys = [layer.encode_sequence(x) for x in xs]
    for k, (x, y) in enumerate(zip(xs, ys)):
        assert_seq_close(y, R.encode_sequence([d], list(x))[0], what=f"call {k}")


def test_host_sequences_staged_call_after_call(rng):
    """A layer stages host arrays in storages it keeps: each call sees its own data, results of earlier
    calls stay as they were, and two calls encoded in one command buffer see the data as it was when
    each was encoded."""
    d = gru(rng, 3, 4, use_float32_weights=True)
    layer = m.RNNMatrixInferenceLayer(d)
    xa, xb = (rng.standard_normal((3, 2, 3)).astype(np.float32) for _ in range(2))
    ra, rb = (R.encode_sequence([d], list(x))[0] for x in (xa, xb))
    out_a = layer.encode_sequence(xa)
    ya = np.full((3, 2, 4), np.nan, np.float32)
    layer.encode_sequence(xa, ya)
    out_b = layer.encode_sequence(xb)
    assert_seq_close(out_a, ra, what="first call's matrices, after another call")
    assert_seq_close(out_b, rb, what="second call")
    assert_seq_close(ya, ra, what="first call's array")
    cb = m.CommandBuffer()
    x = xa.copy()
    y1, y2 = np.full((3, 2, 4), np.nan, np.float32), np.full((3, 2, 4), np.nan, np.float32)
    layer.encode_sequence(x, y1, command_buffer=cb)
    x[...] = xb
    layer.encode_sequence(x, y2, command_buffer=cb)
    x[...] = 0
    cb.commit()
    assert_seq_close(y1, ra, what="first of two deferred calls")
    assert_seq_close(y2, rb, what="second of two deferred calls")


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
def test_separate_matrices_gathered_from_the_host_or_the_device(dtype, rng):
    """Separate device matrices are packed on the host where each holds a current host copy (made
    from NumPy), else copied on the device (a kernel wrote them), and separate destinations are
    written by the plan's copies, in either matrix type; in a command buffer, a call that reads
    what an earlier call of the buffer writes sees its results."""
    mdt, tol = (m.DataType.FLOAT16, 1e-3) if dtype == np.float16 else (m.DataType.FLOAT32, 1e-5)
    d1 = lstm(rng, 3, 4, use_float32_weights=True)
    d2 = single_gate(rng, 4, 4, use_float32_weights=True)
    first, second = m.RNNMatrixInferenceLayer(d1), m.RNNMatrixInferenceLayer(d2)
    rows = [3, 3, 2, 1]
    xs = sequence(rng, rows, 3, dtype=dtype)
    ref1 = R.encode_sequence([d1], xs)[0]
    uploaded = [m.Matrix.from_numpy(x) for x in xs]
    assert all(x.storage.host_is_current() for x in uploaded)
    assert_seq_close(first.encode_sequence(uploaded), ref1, tol, what="from host copies")
    written = poisoned(rows, 4, mdt)
    first.encode_sequence(uploaded, written)
    assert not any(w.storage.host_is_current() for w in written)
    out = second.encode_sequence(written)
    assert_seq_close(written, ref1, tol, what="separate destinations")
    assert_seq_close(out, R.encode_sequence([d2], [np.asarray(w) for w in written])[0], tol, what="from the device")
    cb = m.CommandBuffer()
    written = [m.Matrix.from_numpy(np.full((r, 4), np.nan, dtype)) for r in rows]
    first.encode_sequence(uploaded, written, command_buffer=cb)
    out = second.encode_sequence(written, command_buffer=cb)
    cb.commit()
    assert_seq_close(out, R.encode_sequence([d2], [np.asarray(w) for w in written])[0], tol,
                     what="reading an earlier deferred call's outputs")


@pytest.mark.parametrize("copies", ["host", "plan"])
@pytest.mark.parametrize("launch", ["eager", "graph"])
def test_bidirectional_between_separate_matrices(launch, copies, rng, monkeypatch):
    """A bidirectional call reads separate matrices a kernel wrote and writes both directions to
    separate matrices, twice with other matrices (the plan's slots are per call), in either launch
    strategy. The host moves them where it can reach the device's memory (the CPU), else the plan
    gathers and scatters them; ``plan`` hides the CPU's memory, so that the plan's copies run here
    too."""
    from mpsrnn.scheduler.launch import STRATEGIES
    if copies == "plan":
        monkeypatch.setattr(m.matrix.Storage, "memory", lambda self: None)
    plan_gathers = copies == "plan" or m.current_arch() != "cpu"
    ds = build_stack(rng, BIDI_STACKS[0])
    copier = m.RNNMatrixInferenceLayer(single_gate(rng, 3, 3, use_float32_weights=True))
    layer = m.RNNMatrixInferenceLayer(ds)
    layer._launch = STRATEGIES[launch]()
    for _ in range(2):
        xs = sequence(rng, VARIABLE_ROWS, 3)
        written = poisoned(VARIABLE_ROWS, 3)
        copier.encode_sequence(xs, written)
        assert not any(w.storage.host_is_current() for w in written)
        df, db = poisoned(VARIABLE_ROWS, 5), poisoned(VARIABLE_ROWS, 5)
        layer.encode_bidirectional_sequence(written, df, db)
        ref_f, ref_b = R.encode_bidirectional(ds, [np.asarray(w) for w in written], 0)
        assert [key[-1] for key, _ in layer._plans._plans] == [plan_gathers], "the plan that gathers, or not"
        assert_seq_close(df, ref_f, what=f"{launch}: forward")
        assert_seq_close(db, ref_b, what=f"{launch}: backward")


def test_copy_is_independent_and_equal(rng):
    ds = build_stack(rng, STACKS[0])
    layer = m.RNNMatrixInferenceLayer(ds)
    layer.store_all_intermediate_states = True
    layer.bidirectional_combine_mode = m.BidirectionalCombineMode.ADD
    twin = layer.copy()
    assert twin.store_all_intermediate_states and twin.bidirectional_combine_mode == m.BidirectionalCombineMode.ADD
    assert all(a.wts is not b.wts for a, b in zip(layer._cells, twin._cells))
    xs = sequence(rng, VARIABLE_ROWS, 3)
    a = [np.asarray(y) for y in layer.encode_sequence(xs)]
    b = [np.asarray(y) for y in twin.encode_sequence(xs)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    twin.store_all_intermediate_states = False
    assert layer.store_all_intermediate_states


def test_layer_reads_descriptors_once(rng):
    d = lstm(rng, 3, 4, use_float32_weights=True)
    layer = m.RNNMatrixInferenceLayer(d)
    xs = sequence(rng, [2, 2], 3)
    ref = R.encode_sequence([d.copy()], xs)[0]
    d.forget_gate_input_weights = weights(rng, 4, 3, m.Neuron("relu"))
    d.use_float32_weights = False
    assert_seq_close(layer.encode_sequence(xs), ref)


def test_command_buffer_defers_work_until_commit(rng):
    d = gru(rng, 3, 4, use_float32_weights=True)
    layer = m.RNNMatrixInferenceLayer(d)
    xs = sequence(rng, [2, 2, 2], 3)
    dst = poisoned([2, 2, 2], 4)
    cb = m.CommandBuffer()
    out = layer.encode_sequence(xs, dst, command_buffer=cb)
    assert np.isnan(np.asarray(out[0])).all()  # nothing ran yet
    cb.commit()
    cb.wait_until_completed()
    assert_seq_close(out, R.encode_sequence([d], xs)[0])
    with pytest.raises(RuntimeError, match="command_buffer"):
        layer.encode_sequence(xs, command_buffer=cb)


def test_layer_properties_and_defaults(rng):
    layer = m.RNNMatrixInferenceLayer([gru(rng, 3, 5), lstm(rng, 5, 2)])
    assert layer.number_of_layers == 2
    assert layer.input_feature_channels == 3 and layer.output_feature_channels == 2
    assert layer.recurrent_output_is_temporary is False
    assert layer.store_all_intermediate_states is False
    assert layer.bidirectional_combine_mode == m.BidirectionalCombineMode.NONE
    layer.bidirectional_combine_mode = "concatenate"
    assert layer.bidirectional_combine_mode == m.BidirectionalCombineMode.CONCATENATE


def test_plans_are_reused_per_shape(rng):
    layer = m.RNNMatrixInferenceLayer(lstm(rng, 3, 4, use_float32_weights=True))
    xs = sequence(rng, [3, 3, 2], 3)
    a = np.asarray(layer.encode_sequence(xs)[-1])
    b = np.asarray(layer.encode_sequence([x.copy() for x in xs])[-1])
    assert np.array_equal(a, b) and len(layer._plans._plans) == 1
    layer.encode_sequence(xs[:2])
    assert len(layer._plans._plans) == 2


def test_graph_and_eager_launches_agree(rng, monkeypatch):
    from mpsrnn.scheduler.launch import EagerLaunch, GraphLaunch
    ds = build_stack(rng, BIDI_STACKS[1])
    xs = sequence(rng, VARIABLE_ROWS, 4)
    results = []
    for strategy in (EagerLaunch(), GraphLaunch()):
        layer = m.RNNMatrixInferenceLayer(ds)
        layer._launch = strategy
        layer.bidirectional_combine_mode = m.BidirectionalCombineMode.CONCATENATE
        runs = [layer.encode_bidirectional_sequence(xs)[0] for _ in range(2)]
        results.append([[np.asarray(y) for y in r] for r in runs])
    ref = R.encode_bidirectional(ds, xs, 2)[0]
    for r in results:
        for run in r:
            assert_seq_close(run, ref)
    assert all(np.array_equal(a, b) for a, b in zip(results[0][0], results[1][1]))
