"""MatrixSequence: one storage for a whole sequence, used by layers as a whole."""
import numpy as np
import pytest

import mpsrnn as m
import reference as R
from builders import assert_seq_close, gru, lstm, sequence


def test_reads_like_a_list(rng):
    a = rng.standard_normal((4, 3, 5)).astype(np.float32)
    seq = m.MatrixSequence.from_numpy(a)
    assert len(seq) == 4 and seq.rows == (3, 3, 3, 3) and seq.columns == 5
    assert all(np.array_equal(np.asarray(seq[t]), a[t]) for t in range(4))
    assert np.array_equal(np.asarray(seq[-1]), a[3]) and np.array_equal(np.asarray(seq), a)
    assert [np.asarray(x).tolist() for x in seq[1:3]] == a[1:3].tolist()
    shrinking = m.MatrixSequence.from_numpy([a[0], a[1][:2], a[2][:1]])
    assert shrinking.rows == (3, 2, 1)
    assert [x.shape for x in shrinking.numpy()] == [(3, 5), (2, 5), (1, 5)]
    with pytest.raises(ValueError, match="no 3-D array form"):
        np.asarray(shrinking)
    assert m.MatrixSequence(3, [2, 2, 1], 4, m.DataType.FLOAT16).numpy()[2].dtype == np.float16


def test_whole_array_of_views_with_offsets_and_strides(rng):
    """``np.asarray`` of a sequence reads its steps through its base, step and row strides: a slice,
    and a view whose rows are padded and whose steps are apart, in both types."""
    for dtype in (np.float32, np.float16):
        a = rng.standard_normal((4, 3, 5)).astype(dtype)
        seq = m.MatrixSequence.from_numpy(a)
        assert np.asarray(seq[1:3]).dtype == dtype and np.array_equal(np.asarray(seq[1:3]), a[1:3])
        padded = np.full((4, 3, 4, 7), np.nan, dtype)   # a step is 3 x 4 x 7 elements, of which 3 x 5 are ours
        padded[:, 1, :3, 2:] = a
        flat = m.Matrix.from_numpy(padded.reshape(-1, 7))
        view = m.MatrixSequence.view(flat.storage, 1 * 28 + 2, 3 * 28, [3] * 4, 5, 7)
        assert np.array_equal(np.asarray(view), a)
        assert np.array_equal(np.asarray(view[2:]), a[2:])


def test_layers_take_and_return_sequences(rng):
    ds = [lstm(rng, 3, 5, use_float32_weights=True), gru(rng, 5, 4, use_float32_weights=True)]
    layer = m.RNNMatrixInferenceLayer(ds)
    xs = sequence(rng, [4, 4, 3, 1], 3)
    seq = m.MatrixSequence.from_numpy(xs)
    ys = layer.encode_sequence(seq)
    assert isinstance(ys, m.MatrixSequence) and ys.rows == seq.rows
    assert_seq_close(ys, R.encode_sequence(ds, xs)[0])
    out = m.MatrixSequence(4, [4, 4, 3, 1], 4)
    assert layer.encode_sequence(seq, out) is out
    assert_seq_close(out, R.encode_sequence(ds, xs)[0])
    states = []   # chunks of one sequence, carried through the state
    first = layer.encode_sequence(seq[:2], recurrent_output_states=states)
    second = layer.encode_sequence(seq[2:], recurrent_input_state=states[0])
    assert_seq_close(list(first) + list(second), R.encode_sequence(ds, xs)[0])


def test_bidirectional_with_a_sequence(rng):
    ds = [lstm(rng, 3, 4, use_float32_weights=True),
          lstm(rng, 3, 4, use_float32_weights=True, layer_sequence_direction=m.SequenceDirection.BACKWARD)]
    layer = m.RNNMatrixInferenceLayer(ds)
    xs = sequence(rng, [3, 2, 2], 3)
    fwd, bwd = layer.encode_bidirectional_sequence(m.MatrixSequence.from_numpy(xs))
    ref_f, ref_b = R.encode_bidirectional(ds, xs, 0)
    assert isinstance(fwd, m.MatrixSequence) and isinstance(bwd, m.MatrixSequence)
    assert_seq_close(fwd, ref_f)
    assert_seq_close(bwd, ref_b)


def test_sequence_errors(rng):
    layer = m.RNNMatrixInferenceLayer(lstm(rng, 3, 4))
    seq = m.MatrixSequence.from_numpy(rng.standard_normal((3, 2, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="source_matrices: has 3 columns but the layer expects"):
        m.RNNMatrixInferenceLayer(lstm(rng, 5, 4)).encode_sequence(seq)
    with pytest.raises(ValueError, match=r"source_matrices\[1\]: has 3 rows after 1 rows"):
        layer.encode_sequence(m.MatrixSequence(3, [1, 3, 3], 3))
    with pytest.raises(ValueError, match="source_offsets: offsets address the matrices of a list"):
        layer.encode_sequence(seq, source_offsets=[0, 0, 0])
    with pytest.raises(ValueError, match="the sequence is empty"):
        layer.encode_sequence(seq[3:])
    with pytest.raises(ValueError, match=r"destination_matrices\[0\]: has 1 rows; step 0 of the sequence has 2"):
        layer.encode_sequence(seq, m.MatrixSequence(3, 1, 4))
    with pytest.raises(ValueError, match="destination_matrices: overlaps the source sequence"):
        wide = m.MatrixSequence(3, 2, 4)
        m.RNNMatrixInferenceLayer(lstm(rng, 4, 4)).encode_sequence(wide, wide)
    with pytest.raises(ValueError, match="rows: expected 3 row counts"):
        m.MatrixSequence(3, [2, 2], 4)


def test_a_loop_over_the_same_sequences(rng):
    """A layer called again with the same source and destination sequences (a loop over one input
    and one output) skips their checks but reads the data as it is at each call: the source's
    storage rewritten between calls gives each call's result. Other sequences are checked again
    (a destination that overlaps the source, one of the wrong rows), and the layer keeps neither
    sequence alive."""
    import gc
    import weakref
    d = lstm(rng, 3, 5, use_float32_weights=True)
    layer = m.RNNMatrixInferenceLayer(d)
    rows = [4, 4, 3, 1]
    seq = m.MatrixSequence.from_numpy(sequence(rng, rows, 3))
    out = m.MatrixSequence(4, rows, 5)
    for _ in range(3):
        xs = sequence(rng, rows, 3)
        seq.storage.upload(m.MatrixSequence.from_numpy(xs).storage.host())   # same layout: new data in place
        assert layer.encode_sequence(seq, out) is out
        assert_seq_close(out, R.encode_sequence([d], xs)[0])
    assert layer._checked[0]() is seq and layer._checked[1]() is out   # the second and third calls skipped the checks
    with pytest.raises(ValueError, match=r"destination_matrices\[0\]: has 1 rows; step 0 of the sequence has 4"):
        layer.encode_sequence(seq, m.MatrixSequence(4, 1, 5))
    square = m.RNNMatrixInferenceLayer(lstm(rng, 5, 5))
    square.encode_sequence(out, m.MatrixSequence(4, rows, 5))
    with pytest.raises(ValueError, match="destination_matrices: overlaps the source sequence"):
        square.encode_sequence(out, out)
    refs = [weakref.ref(seq), weakref.ref(out)]
    layer.encode_sequence(seq, out)
    del seq, out
    gc.collect()
    assert [r() for r in refs] == [None, None]


def test_views_that_change_between_calls_of_one_plan(rng):
    """One layer and shape called with other offsets into the same sequences' matrices (each
    step's matrix of a sequence at one offset: still one strided view, nothing copied), then the
    first offsets again: the input and output views are per call, written into the layer's frame
    where they change, so each call reads and writes where it was told."""
    d = lstm(rng, 3, 4, use_float32_weights=True)
    layer = m.RNNMatrixInferenceLayer(d)
    rows = [4, 4, 3]
    wide = sequence(rng, rows, 7)
    src = m.MatrixSequence.from_numpy(wide)
    for c_in, c_out in ((0, 0), (2, 5), (4, 1), (0, 0)):
        dst = m.MatrixSequence(3, rows, 9)
        dst.storage.array.fill(float("nan"))
        dst.storage.written()
        layer.encode_sequence(list(src), list(dst), source_offsets=[4 * c_in] * 3,
                              destination_offsets=[4 * c_out] * 3)
        ref = R.encode_sequence([d], [w[:, c_in:c_in + 3] for w in wide])[0]
        for t in range(3):
            got = np.asarray(dst[t])
            assert_seq_close([got[:, c_out:c_out + 4]], [ref[t]])
            assert np.isnan(np.delete(got, range(c_out, c_out + 4), axis=1)).all(), "wrote outside the view"
