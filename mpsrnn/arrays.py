"""Accepting NumPy arrays and PyTorch tensors wherever the API takes data."""
import numpy as np


def is_torch_tensor(obj):
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def torch_dtype_name(t):
    """A PyTorch tensor's element type as NumPy spells it ("float32", "float16", "bfloat16"...),
    read without importing torch."""
    return str(t.dtype).replace("torch.", "")


def as_numpy(obj, name):
    """A NumPy view/copy of an array-like (NumPy array, PyTorch tensor, nested lists)."""
    if isinstance(obj, np.ndarray):
        return obj
    if is_torch_tensor(obj):
        t = obj.detach()
        if torch_dtype_name(t) == "bfloat16":
            raise ValueError(f"{name}: dtype bfloat16 is not supported; expected float32 or float16")
        return t.cpu().numpy()
    if isinstance(obj, (list, tuple, float, int)):
        return np.asarray(obj)
    raise TypeError(f"{name}: expected a NumPy array or PyTorch tensor, got {type(obj).__name__}")


def real_float_array(obj, name, ndims):
    """``obj`` as a new float32 array with one of ``ndims`` dimensions, for weights and parameters."""
    a = as_numpy(obj, name)
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise ValueError(f"{name}: expected real numbers, got dtype {a.dtype}")
    if a.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name}: expected a {want} array, got shape {a.shape}")
    return np.array(a, dtype=np.float32, copy=True)
