"""Running a Neuron through the device kernel (``Neuron.apply``)."""
import numpy as np

from .arrays import as_numpy
from .backend import ensure_init
from .enums import NeuronType


def apply_neuron(neuron, x):
    ensure_init()
    import taichi as ti

    from .kernels.neurons import apply_neuron_array

    a = as_numpy(x, "x")
    if a.dtype.kind not in "fiu":
        raise ValueError(f"x: expected real numbers, got dtype {a.dtype}")
    flat = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    channels = 1
    slopes = np.zeros(1, np.float32)
    scalar_a = 0.0
    if neuron.type == NeuronType.PRELU:
        slopes = neuron.a
        channels = slopes.size
        if a.ndim == 0 or a.shape[-1] != channels:
            raise ValueError(f"x: PRELU has {channels} slopes, so the last axis of x must have {channels} "
                             f"channels; got shape {a.shape}")
    else:
        scalar_a = neuron.a
    if flat.size == 0:
        return np.zeros(a.shape, np.float32)
    xin = ti.ndarray(ti.f32, flat.shape)
    xin.from_numpy(flat)
    out = ti.ndarray(ti.f32, flat.shape)
    sl = ti.ndarray(ti.f32, slopes.shape)
    sl.from_numpy(slopes)
    apply_neuron_array(xin, out, sl, int(neuron.type), scalar_a, neuron.b, neuron.c, channels)
    return out.to_numpy().reshape(a.shape)
