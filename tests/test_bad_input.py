"""Bad input: a clear error naming the argument, raised before any kernel runs, data untouched."""
import contextlib

import numpy as np
import pytest

import mpsrnn as m
from builders import gru, lstm, sequence, single_gate


@contextlib.contextmanager
def no_kernels(monkeypatch):
    """Fail the test if any Taichi kernel launches: ours or Taichi's own copy/fill kernels called
    from Python, or a captured graph replaying them."""
    from taichi.graph import Graph
    from taichi.lang.kernel_impl import Kernel

    def forbidden(self, *args, **kwargs):
        raise AssertionError(f"{getattr(getattr(self, 'func', None), '__name__', 'a graph')} ran before the "
                             f"error was raised")
    with monkeypatch.context() as mp:
        mp.setattr(Kernel, "__call__", forbidden)
        mp.setattr(Graph, "run", forbidden)
        yield


def snapshot(objs):
    out = []
    for o in objs:
        if isinstance(o, m.Matrix):
            out.append(("matrix", np.asarray(o).tobytes()))
        else:
            out.append(("array", np.array(o, copy=True).tobytes()))
    return out


def expect_error(monkeypatch, call, error, match, *data):
    """``call()`` raises ``error`` matching ``match`` with no kernel launched and ``data`` unchanged."""
    before = snapshot(data)
    with no_kernels(monkeypatch):
        with pytest.raises(error, match=match):
            call()
    assert snapshot(data) == before, "the call changed its inputs"


@pytest.fixture
def layer(rng):
    return m.RNNMatrixInferenceLayer(lstm(rng, 3, 4, use_float32_weights=True))


def test_wrong_channel_count(layer, rng, monkeypatch):
    xs = sequence(rng, [2, 2], 4)
    expect_error(monkeypatch, lambda: layer.encode_sequence(xs), ValueError,
                 r"source_matrices\[0\]: has 4 columns but the layer expects 3", *xs)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.complex64, np.bool_])
def test_wrong_dtype(layer, rng, monkeypatch, dtype):
    xs = [(rng.standard_normal((2, 3)) * 3).astype(dtype) for _ in range(2)]
    expect_error(monkeypatch, lambda: layer.encode_sequence(xs), ValueError,
                 rf"source_matrices\[0\]: dtype {np.dtype(dtype)} is not supported; expected float32 or float16", *xs)


def test_mixed_dtypes_within_a_sequence(layer, rng, monkeypatch):
    xs = [rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float16),
          rng.standard_normal((2, 3)).astype(np.float32)]
    expect_error(monkeypatch, lambda: layer.encode_sequence(xs), ValueError,
                 r"source_matrices\[1\]: all steps must share one data type; step 0 is float32, step 1 is float16",
                 *xs)


def test_rows_growing_over_time(layer, rng, monkeypatch):
    xs = sequence(rng, [2, 3, 1], 3)
    dst = [np.full((r, 4), np.nan, np.float32) for r in (2, 3, 1)]
    expect_error(monkeypatch, lambda: layer.encode_sequence(xs, dst), ValueError,
                 r"source_matrices\[1\]: has 3 rows after 2 rows at step 0; the row count may only shrink", *xs, *dst)


@pytest.mark.parametrize("empty", [[], np.zeros((0, 2, 3), np.float32)], ids=["list", "3-D array"])
def test_empty_sequence(layer, monkeypatch, empty):
    expect_error(monkeypatch, lambda: layer.encode_sequence(empty), ValueError,
                 "source_matrices: the sequence is empty")


def test_not_a_sequence(layer, rng, monkeypatch):
    expect_error(monkeypatch, lambda: layer.encode_sequence("abc"), TypeError, "source_matrices")
    mat = m.Matrix.from_numpy(rng.standard_normal((2, 3)).astype(np.float32))
    expect_error(monkeypatch, lambda: layer.encode_sequence(mat), TypeError, "got a single Matrix", mat)
    expect_error(monkeypatch, lambda: layer.encode_sequence(np.zeros((2, 3), np.float32)), ValueError,
                 r"3-D array \(steps, rows, columns\)")


def test_device_matrices_are_left_untouched(layer, rng, monkeypatch):
    xs = [m.Matrix.from_numpy(rng.standard_normal((2, 5)).astype(np.float32)) for _ in range(3)]
    expect_error(monkeypatch, lambda: layer.encode_sequence(xs), ValueError, "5 columns", *xs)


def test_mismatched_stack_is_refused_at_construction(rng, monkeypatch):
    ds = [lstm(rng, 3, 5), gru(rng, 4, 6)]
    with pytest.raises(ValueError, match=r"descriptors\[1\]\.input_feature_channels is 4 but "
                                         r"descriptors\[0\]\.output_feature_channels is 5"):
        m.RNNMatrixInferenceLayer(ds)


def test_stack_that_only_chains_per_direction(rng, monkeypatch):
    ds = [lstm(rng, 3, 5), lstm(rng, 3, 5, layer_sequence_direction=m.SequenceDirection.BACKWARD)]
    layer = m.RNNMatrixInferenceLayer(ds)   # fine for encode_bidirectional_sequence ...
    xs = sequence(rng, [2], 3)
    expect_error(monkeypatch, lambda: layer.encode_sequence(xs), ValueError,   # ... not for encode_sequence
                 r"descriptors\[1\]\.input_feature_channels is 3 but descriptors\[0\]\.output_feature_channels is 5",
                 *xs)


def test_bidirectional_needs_both_directions(rng, monkeypatch):
    layer = m.RNNMatrixInferenceLayer([gru(rng, 3, 3), gru(rng, 3, 3)])
    xs = sequence(rng, [2], 3)
    expect_error(monkeypatch, lambda: layer.encode_bidirectional_sequence(xs), ValueError,
                 "at least one FORWARD and one BACKWARD layer", *xs)


@pytest.mark.parametrize("slot, shape, match", [
    ("input_gate_recurrent_weights", (4, 3), r"LSTMDescriptor\.input_gate_recurrent_weights: must be square"),
    ("output_gate_memory_weights", (4, 2), r"LSTMDescriptor\.output_gate_memory_weights: must be square"),
    ("cell_gate_input_weights", (4, 4), r"LSTMDescriptor\.cell_gate_input_weights: expected weights of shape \(4, 3\)"),
])
def test_lstm_weight_shapes(rng, slot, shape, match):
    d = lstm(rng, 3, 4)
    setattr(d, slot, m.ConvolutionWeights(np.ones(shape, np.float32)))
    with pytest.raises(ValueError, match=match):
        m.RNNMatrixInferenceLayer(d)


def test_non_square_u_and_v(rng):
    d = gru(rng, 3, 4)
    d.output_gate_input_gate_weights = m.ConvolutionWeights(np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"GRUDescriptor\.output_gate_input_gate_weights: must be square"):
        m.RNNMatrixInferenceLayer(d)
    d = single_gate(rng, 3, 4)
    d.recurrent_weights = m.ConvolutionWeights(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"RNNSingleGateDescriptor\.recurrent_weights: must be square"):
        m.RNNMatrixInferenceLayer(d)


def test_errors_in_a_stack_name_the_layer(rng):
    bad = gru(rng, 5, 4)
    bad.input_gate_recurrent_weights = m.ConvolutionWeights(np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"descriptors\[1\]: GRUDescriptor\.input_gate_recurrent_weights"):
        m.RNNMatrixInferenceLayer([lstm(rng, 3, 5), bad])


def test_bidirectional_call_with_a_prior_state(rng, monkeypatch):
    ds = [lstm(rng, 3, 4), lstm(rng, 3, 4, layer_sequence_direction=m.SequenceDirection.BACKWARD)]
    layer = m.RNNMatrixInferenceLayer(ds)
    xs = sequence(rng, [2, 2], 3)
    h = rng.standard_normal((2, 4)).astype(np.float32)
    state = m.RNNRecurrentMatrixState([h, h], [h, h])
    expect_error(monkeypatch, lambda: layer.encode_bidirectional_sequence(xs, recurrent_input_state=state),
                 ValueError, "recurrent_input_state: a bidirectional sequence cannot start from a prior state", *xs, h)


def test_bad_recurrent_state(layer, rng, monkeypatch):
    """Checked after the destination is prepared: the new outputs take no array (a recycled one is
    poisoned by a fill kernel in the tests) before every check has passed."""
    from mpsrnn.matrix import RECYCLED
    taken = []
    take = RECYCLED.take
    monkeypatch.setattr(RECYCLED, "take", lambda key: taken.append(key) or take(key))
    xs = sequence(rng, [3, 2], 3)
    h = rng.standard_normal((3, 4)).astype(np.float32)
    cases = [
        (m.RNNRecurrentMatrixState([h]), "layer 0 is an LSTM and needs its memory cell matrix"),
        (m.RNNRecurrentMatrixState([h[:2]], [h[:2]]), "has 2 rows .* first step of source_matrices has 3"),
        (m.RNNRecurrentMatrixState([h[:, :3]], [h[:, :3]]), "layer 0.s recurrent output matrix is 3x3; expected 3x4"),
        (m.RNNRecurrentMatrixState([h, h], [h, h]), "holds 2 layers' state; this stack has 1"),
    ]
    for state, match in cases:
        expect_error(monkeypatch, lambda: layer.encode_sequence(xs, recurrent_input_state=state), ValueError,
                     "recurrent_input_state: " + match, *xs, h)
        assert not taken, "a failed call took an array for its outputs"
    expect_error(monkeypatch, lambda: layer.encode_sequence(xs, recurrent_input_state=[h]), TypeError,
                 "recurrent_input_state", *xs)


def test_bad_destinations(layer, rng, monkeypatch):
    xs = sequence(rng, [3, 2], 3)
    cases = [
        ([np.full((3, 4), np.nan, np.float32)], ValueError, "destination_matrices: has 1 matrices for a sequence of 2"),
        ([np.full((3, 4), np.nan, np.float32), np.full((3, 4), np.nan, np.float32)], ValueError,
         r"destination_matrices\[1\]: has 3 rows; step 1 of the sequence has 2"),
        ([np.full((3, 5), np.nan, np.float32), np.full((2, 5), np.nan, np.float32)], ValueError,
         r"destination_matrices\[0\]: has 5 columns but the layer writes 4"),
        ([np.full((3, 4), np.nan), np.full((2, 4), np.nan)], ValueError, "dtype float64 is not supported"),
    ]
    for dst, error, match in cases:
        expect_error(monkeypatch, lambda: layer.encode_sequence(xs, dst), error, match, *xs, *dst)


def test_bad_whole_arrays(layer, rng, monkeypatch):
    """3-D host arrays, taken whole when they fit, get the per-step path's errors when they do not."""
    x3 = rng.standard_normal((2, 3, 3)).astype(np.float32)
    for src, match in ((x3.astype(np.float64), r"source_matrices\[0\]: dtype float64 is not supported"),
                       (x3[:, :, :2].copy(), r"source_matrices\[0\]: has 2 columns but the layer expects 3"),
                       (x3[:, :0], r"source_matrices\[0\]: has no rows")):
        expect_error(monkeypatch, lambda: layer.encode_sequence(src), ValueError, match, src)
    read_only = np.full((2, 3, 4), np.nan, np.float32)
    read_only.flags.writeable = False
    for dst, match in ((np.full((3, 3, 4), np.nan, np.float32),
                        "destination_matrices: has 3 matrices for a sequence of 2"),
                       (np.full((2, 2, 4), np.nan, np.float32), r"destination_matrices\[0\]: has 2 rows; step 0"),
                       (np.full((2, 3, 5), np.nan, np.float32), r"destination_matrices\[0\]: has 5 columns"),
                       (np.full((2, 3, 4), np.nan), "dtype float64 is not supported"),
                       (read_only, r"destination_matrices\[0\]: the array is read-only")):
        expect_error(monkeypatch, lambda: layer.encode_sequence(x3, dst), ValueError, match, x3, dst)


def test_destinations_may_not_alias_sources(layer, rng, monkeypatch):
    big = m.Matrix.from_numpy(rng.standard_normal((4, 4)).astype(np.float32))
    xs = [m.Matrix.view(big.storage, 0, 2, 3, 4), m.Matrix.view(big.storage, 8, 2, 3, 4)]
    dst = [m.Matrix.view(big.storage, 8, 2, 4, 4), m.Matrix(2, 4)]
    expect_error(monkeypatch, lambda: layer.encode_sequence(xs, dst), ValueError,
                 r"destination_matrices\[0\]: overlaps a source matrix", big)


def test_bad_offsets(layer, rng, monkeypatch):
    xs = [rng.standard_normal((2, 5)).astype(np.float32) for _ in range(2)]
    expect_error(monkeypatch, lambda: layer.encode_sequence(xs, source_offsets=[2, 0]), ValueError,
                 r"source_offsets\[0\]: byte offset 2 must be >= 0 and a multiple of the element size", *xs)
    expect_error(monkeypatch, lambda: layer.encode_sequence(xs, source_offsets=[12, 0]), ValueError,
                 r"source_matrices\[0\]: an offset of 3 elements leaves 2 of the 3 feature channels", *xs)
    expect_error(monkeypatch, lambda: layer.encode_sequence(xs, source_offsets=[0]), ValueError,
                 "source_offsets: has 1 offsets for a sequence of 2 steps", *xs)


def test_bidirectional_combine_errors(rng, monkeypatch):
    ds = [lstm(rng, 3, 4), gru(rng, 3, 5, layer_sequence_direction=m.SequenceDirection.BACKWARD)]
    layer = m.RNNMatrixInferenceLayer(ds)
    layer.bidirectional_combine_mode = m.BidirectionalCombineMode.ADD
    xs = sequence(rng, [2], 3)
    expect_error(monkeypatch, lambda: layer.encode_bidirectional_sequence(xs), ValueError,
                 "ADD needs both directions to have the same output channels; forward has 4, backward 5", *xs)
    layer.bidirectional_combine_mode = m.BidirectionalCombineMode.CONCATENATE
    expect_error(monkeypatch, lambda: layer.encode_bidirectional_sequence(xs, None, [np.zeros((2, 5), np.float32)]),
                 ValueError, "destination_backward_matrices: must be None", *xs)
    with pytest.raises(ValueError, match="bidirectional_combine_mode"):
        layer.bidirectional_combine_mode = 7


def test_bad_command_buffer(layer, rng, monkeypatch):
    xs = sequence(rng, [2], 3)
    expect_error(monkeypatch, lambda: layer.encode_sequence(xs, command_buffer="now"), TypeError, "command_buffer",
                 *xs)


def test_arch_errors():
    with pytest.raises(ValueError, match="arch: expected one of metal, cuda, vulkan, cpu or 'auto'"):
        m.backend.init.__wrapped__("tpu") if hasattr(m.backend.init, "__wrapped__") else _fresh_init("tpu")
    other = next(a for a in ("cpu", "vulkan") if a != m.current_arch())
    with pytest.raises(RuntimeError, match=f"arch: mpsrnn is already running on '{m.current_arch()}'"):
        m.init(other)
    assert m.init(m.current_arch()) == m.current_arch() == m.init() == m.init("auto")


def _fresh_init(arch):
    """init() as on a fresh process (the argument check comes before any start-up)."""
    saved = m.backend._current
    m.backend._current = None
    try:
        return m.init(arch)
    finally:
        m.backend._current = saved
