"""Matrix, RNNRecurrentMatrixState, and the backend selection."""
import os
import subprocess
import sys

import numpy as np
import pytest

import mpsrnn as m


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_matrix_round_trip(dtype, rng):
    a = rng.standard_normal((3, 5)).astype(dtype)
    mat = m.Matrix.from_numpy(a)
    assert mat.shape == (3, 5) and (mat.rows, mat.columns) == (3, 5)
    assert mat.data_type == (m.DataType.FLOAT32 if dtype == np.float32 else m.DataType.FLOAT16)
    assert mat.row_bytes == 5 * np.dtype(dtype).itemsize
    b = np.asarray(mat)
    assert b.dtype == dtype and np.array_equal(a, b)
    assert np.array_equal(mat.numpy(), a)


def test_matrix_from_torch_and_conversion(rng):
    import torch
    t = torch.from_numpy(rng.standard_normal((2, 3)).astype(np.float32))
    assert np.array_equal(np.asarray(m.Matrix.from_numpy(t)), t.numpy())
    d = rng.standard_normal((2, 3))
    with pytest.raises(ValueError, match="array: dtype float64 is not supported"):
        m.Matrix.from_numpy(d)
    conv = m.Matrix.from_numpy(d, data_type=m.DataType.FLOAT16)
    assert np.array_equal(np.asarray(conv), d.astype(np.float16))


def test_new_matrix_is_zero_and_row_bytes_pad_rows():
    mat = m.Matrix(3, 5, m.DataType.FLOAT16, row_bytes=16)
    assert mat.row_stride == 8 and mat.row_bytes == 16
    assert np.array_equal(np.asarray(mat), np.zeros((3, 5), np.float16))
    with pytest.raises(ValueError, match="row_bytes: expected a multiple of 2 of at least 10 bytes"):
        m.Matrix(3, 5, m.DataType.FLOAT16, row_bytes=9)
    with pytest.raises(ValueError, match="rows: expected a positive integer"):
        m.Matrix(0, 5)
    with pytest.raises(ValueError, match="data_type"):
        m.Matrix(2, 2, "float64")


def test_views_share_storage_and_see_writes(rng):
    a = rng.standard_normal((6, 4)).astype(np.float32)
    big = m.Matrix.from_numpy(a)
    v = m.Matrix.view(big.storage, 5, 2, 3, 4)
    assert np.array_equal(np.asarray(v), a.reshape(-1)[5:13].reshape(2, 4)[:, :3])
    layer = m.RNNMatrixInferenceLayer(m.RNNSingleGateDescriptor(
        3, 4, use_float32_weights=True, input_weights=m.ConvolutionWeights(np.eye(4, 3, dtype=np.float32))))
    layer.encode_sequence([np.ones((1, 3), np.float32)], [m.Matrix.view(big.storage, 0, 1, 4, 4)])
    assert np.array_equal(np.asarray(big)[0], [1, 1, 1, 0])  # the host copy was refreshed after the write


def test_recurrent_state_construction(rng):
    h = [rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((2, 4)).astype(np.float16)]
    c = [None, rng.standard_normal((2, 4)).astype(np.float32)]
    s = m.RNNRecurrentMatrixState(recurrent_outputs=h, memory_cells=c)
    assert s.number_of_layers == 2
    assert np.array_equal(np.asarray(s.get_recurrent_output_matrix(1)), h[1])
    assert s.get_memory_cell_matrix(0) is None
    assert np.array_equal(np.asarray(s.get_memory_cell_matrix(1)), c[1])
    with pytest.raises(IndexError, match="layer_index: expected 0..1"):
        s.get_recurrent_output_matrix(2)
    with pytest.raises(ValueError, match=r"memory_cells\[1\]: shape \(2, 3\) differs"):
        m.RNNRecurrentMatrixState(h, [None, np.zeros((2, 3), np.float32)])
    with pytest.raises(ValueError, match=r"recurrent_outputs\[0\]: dtype float64 is not supported"):
        m.RNNRecurrentMatrixState([np.zeros((2, 3))])
    with pytest.raises(TypeError, match="recurrent_outputs: expected a non-empty list"):
        m.RNNRecurrentMatrixState([])


def test_current_arch_is_the_initialised_one():
    assert m.current_arch() in ("metal", "cuda", "vulkan", "cpu")
    assert m.init() == m.current_arch()


def _python(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **env))


def test_environment_variable_picks_the_arch():
    r = _python("import mpsrnn; print(mpsrnn.current_arch()); print(mpsrnn.init())", MPSRNN_ARCH="cpu")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["None", "cpu"]
    r = _python("import mpsrnn; mpsrnn.init()", MPSRNN_ARCH="quantum")
    assert r.returncode != 0 and "arch: expected one of metal, cuda, vulkan, cpu or 'auto', got 'quantum'" in r.stderr


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS 'auto' takes Metal or the CPU, never Vulkan")
def test_auto_passes_over_a_vulkan_driver_on_the_cpu(monkeypatch):
    """'auto' never takes a CPU implementation of Vulkan (lavapipe cuts long shader loops short),
    whatever this machine has; types are VkPhysicalDeviceType values (4: CPU, 2: discrete GPU)."""
    from mpsrnn import backend
    assert all(isinstance(t, int) for t in backend.vulkan_device_types())   # the loader, if any, answers
    monkeypatch.setattr(backend, "_available", lambda name: name in ("vulkan", "cpu"))
    monkeypatch.setattr(backend, "vulkan_device_types", lambda: [backend.VK_PHYSICAL_DEVICE_TYPE_CPU])
    assert backend.best_available_arch() == "cpu"
    monkeypatch.setattr(backend, "vulkan_device_types", lambda: [backend.VK_PHYSICAL_DEVICE_TYPE_CPU, 2])
    assert backend.best_available_arch() == "vulkan"
    monkeypatch.setattr(backend, "vulkan_device_types", lambda: [])   # no loader to ask: Taichi's answer stands
    assert backend.best_available_arch() == "vulkan"


def test_unavailable_arch_is_a_clear_error():
    missing = next((a for a in ("metal", "cuda", "vulkan") if not m.backend._available(a)), None)
    if missing is None:
        pytest.skip("every arch is available here")
    r = _python(f"import mpsrnn; mpsrnn.init({missing!r})")
    assert r.returncode != 0 and f"arch: Taichi cannot run on '{missing}' on this machine" in r.stderr


def test_outputs_reuse_only_arrays_nothing_references(rng):
    """A layer's new outputs take the array of earlier outputs once nothing references those (the
    tests poison a recycled array with NaN, so the layer must write every element a view sees), and
    never the array of outputs still held."""
    import reference as R
    from builders import gru
    d = gru(rng, 3, 4, use_float32_weights=True)
    layer = m.RNNMatrixInferenceLayer(d)
    xa, xb, xc = (rng.standard_normal((5, 2, 3)).astype(np.float32) for _ in range(3))
    first = layer.encode_sequence(xa)
    held = [np.asarray(y) for y in first]
    array = first[0].storage.array
    second = layer.encode_sequence(xb)
    assert second[0].storage.array is not array
    assert all(np.array_equal(np.asarray(y), h) for y, h in zip(first, held)), "held outputs changed"
    del first
    third = layer.encode_sequence(xc)
    assert third[0].storage.array is array, "the dropped outputs' array is taken again"
    for got, x in ((second, xb), (third, xc)):
        ref = R.encode_sequence([d], list(x))[0]
        assert all(np.allclose(np.asarray(g), r, rtol=1e-5, atol=1e-6) for g, r in zip(got, ref))


def test_recycled_pool_bounds():
    """At most ``per_size`` arrays of a size and ``limit`` bytes in all, the sizes given least recently
    dropped first; arrays of another Taichi program are never kept."""
    from mpsrnn.matrix import Recycled, taichi_program
    pool, program = Recycled(per_size=2, limit=1000), taichi_program()
    f32 = m.DataType.FLOAT32
    a = [object() for _ in range(6)]   # stand-ins: the pool only keeps them
    pool.give((100, f32), a[0], program)
    pool.give((100, f32), a[1], program)
    pool.give((100, f32), a[2], program)   # a third of one size: dropped
    assert pool.take((100, f32)) is a[1] and pool.take((100, f32)) is a[0] and pool.take((100, f32)) is None
    pool.give((300, f32), a[3], program)   # 1200 bytes, past the limit
    assert pool.take((300, f32)) is None
    pool.give((100, f32), a[0], program)
    pool.give((101, f32), a[1], program)
    pool.give((102, f32), a[2], program)   # 400 + 404 + 408 bytes: the least recent size goes
    assert pool.take((100, f32)) is None and pool.take((101, f32)) is a[1] and pool.take((102, f32)) is a[2]
    pool.give((100, f32), a[4], object())  # another program's array
    assert pool.take((100, f32)) is None
