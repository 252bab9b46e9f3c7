"""Neuron (activation) descriptors: MPSNNNeuronDescriptor."""
import math

import numpy as np

from .arrays import real_float_array
from .enums import NeuronType, coerce_enum

# MPS's documented default parameters per neuron type (a, b, c); unused ones are inert.
_DEFAULTS = {
    NeuronType.RELU: (0.0, 0.0, 1.0),
    NeuronType.LINEAR: (1.0, 0.0, 1.0),
    NeuronType.HARD_SIGMOID: (0.2, 0.5, 1.0),
    NeuronType.TANH: (1.0, 1.0, 1.0),
    NeuronType.SOFT_PLUS: (1.0, 1.0, 1.0),
    NeuronType.ELU: (1.0, 0.0, 1.0),
    NeuronType.RELU_N: (1.0, 6.0, 1.0),
    NeuronType.POWER: (1.0, 0.0, 1.0),
    NeuronType.EXPONENTIAL: (1.0, 0.0, -1.0),
    NeuronType.LOGARITHM: (1.0, 0.0, -1.0),
}


class Neuron:
    """An activation function with its parameters (MPSNNNeuronDescriptor).

    ``Neuron(NeuronType.TANH)``, ``Neuron("relu", a=0.1)``, ``Neuron(NeuronType.PRELU, a=slopes)``.
    Parameters left out take MPS's defaults for the type (e.g. HARD_SIGMOID a=0.2, b=0.5;
    RELU_N a=1, b=6; EXPONENTIAL and LOGARITHM c=-1, meaning base e). For PRELU, ``a`` is
    a vector with one slope per output feature channel.
    """

    __slots__ = ("_type", "_a", "_b", "_c")

    def __init__(self, type=NeuronType.NONE, a=None, b=None, c=None):  # noqa: A002 (MPS's name)
        self._type = coerce_enum(NeuronType, type, "Neuron.type")
        da, db, dc = _DEFAULTS.get(self._type, (1.0, 0.0, 1.0))
        if self._type == NeuronType.PRELU:
            if a is None:
                raise ValueError("Neuron.a: PRELU needs a vector of slopes, one per feature channel")
            slopes = real_float_array(a, "Neuron.a", (1,))
            if slopes.size == 0:
                raise ValueError("Neuron.a: PRELU needs at least one slope")
            self._a = slopes
        else:
            self._a = self._scalar(da if a is None else a, "a")
        self._b = self._scalar(db if b is None else b, "b")
        self._c = self._scalar(dc if c is None else c, "c")

    @staticmethod
    def _scalar(v, field):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"Neuron.{field}: expected a number, got {v!r}") from None
        if math.isnan(f):
            raise ValueError(f"Neuron.{field}: must not be NaN")
        return f

    @property
    def type(self):
        return self._type

    neuron_type = type

    @property
    def a(self):
        return self._a.copy() if isinstance(self._a, np.ndarray) else self._a

    @property
    def b(self):
        return self._b

    @property
    def c(self):
        return self._c

    def apply(self, x):
        """The neuron applied elementwise to ``x`` by the device kernel (float32 NumPy result).

        For PRELU the last axis of ``x`` is the feature channel axis.
        """
        from .neuron_eval import apply_neuron
        return apply_neuron(self, x)

    def __eq__(self, other):
        if not isinstance(other, Neuron):
            return NotImplemented
        same_a = (np.array_equal(self._a, other._a) if isinstance(self._a, np.ndarray) or
                  isinstance(other._a, np.ndarray) else self._a == other._a)
        return self._type == other._type and same_a and self._b == other._b and self._c == other._c

    def __repr__(self):
        a = f"array(len={self._a.size})" if isinstance(self._a, np.ndarray) else self._a
        return f"Neuron({self._type.name}, a={a}, b={self._b}, c={self._c})"
