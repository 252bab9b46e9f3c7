"""ConvolutionWeights: the data-source role (MPSCNNConvolutionDataSource) of a weight slot."""
from .arrays import real_float_array
from .neuron import Neuron


class ConvolutionWeights:
    """Weights, bias and neuron of one slot of an RNN descriptor.

    ``weights`` is ``(out, in)`` for matrix layers, ``(out, kernel_height, kernel_width, in)``
    for image layers, or ``(out,)`` for an LSTM's diagonal memory weights; ``bias`` is
    ``(out,)`` or None (zero); ``neuron`` a :class:`Neuron` or None (identity). As in MPS, a
    gate's bias and neuron are read from its *input* weights; on recurrent and memory
    slots only ``weights`` counts. The arrays are copied (as float32) when the object is
    made, as MPS reads a data source when a layer is built.
    """

    __slots__ = ("_weights", "_bias", "_neuron")

    def __init__(self, weights, bias=None, neuron=None):
        w = real_float_array(weights, "ConvolutionWeights.weights", (1, 2, 4))
        if w.size == 0:
            raise ValueError(f"ConvolutionWeights.weights: empty array, shape {w.shape}")
        self._weights = w
        out = w.shape[0]
        if bias is not None:
            b = real_float_array(bias, "ConvolutionWeights.bias", (1,))
            if b.shape != (out,):
                raise ValueError(f"ConvolutionWeights.bias: expected shape ({out},) for {out} output "
                                 f"channels, got {b.shape}")
            bias = b
        self._bias = bias
        if neuron is not None and not isinstance(neuron, Neuron):
            raise TypeError(f"ConvolutionWeights.neuron: expected a mpsrnn.Neuron or None, got "
                            f"{type(neuron).__name__}")
        self._neuron = neuron

    @property
    def weights(self):
        return self._weights

    @property
    def bias(self):
        return self._bias

    @property
    def neuron(self):
        return self._neuron

    @property
    def output_feature_channels(self):
        return self._weights.shape[0]

    @property
    def input_feature_channels(self):
        return self._weights.shape[-1]

    @property
    def kernel_height(self):
        return self._weights.shape[1] if self._weights.ndim == 4 else 1

    @property
    def kernel_width(self):
        return self._weights.shape[2] if self._weights.ndim == 4 else 1

    def matrix(self):
        """The weights as a 2-D (out, in) matrix; 1×1 kernels collapse, anything else is an error."""
        w = self._weights
        if w.ndim == 4:
            return w.reshape(w.shape[0], w.shape[3])
        return w

    def __repr__(self):
        return (f"ConvolutionWeights(weights{list(self._weights.shape)}, "
                f"bias={'None' if self._bias is None else list(self._bias.shape)}, neuron={self._neuron!r})")

    def __deepcopy__(self, memo):
        new = ConvolutionWeights.__new__(ConvolutionWeights)
        new._weights = self._weights.copy()
        new._bias = None if self._bias is None else self._bias.copy()
        new._neuron = self._neuron
        return new


def same_shape_message(field, expected, got):
    return f"{field}: expected weights of shape {tuple(expected)}, got {tuple(got)}"


def as_square(name, cw, out):
    """The (out, out) matrix of a recurrent/memory slot, or a ValueError naming ``name``."""
    if cw.weights.ndim == 4 and (cw.kernel_height, cw.kernel_width) != (1, 1):
        raise ValueError(f"{name}: matrix layers take 1x1 weights; got a {cw.kernel_height}x{cw.kernel_width} kernel")
    if cw.weights.ndim == 1:
        raise ValueError(f"{name}: expected an ({out}, {out}) matrix, got a vector of shape {cw.weights.shape}")
    m = cw.matrix()
    if m.shape[0] != m.shape[1]:
        raise ValueError(f"{name}: must be square (output x output channels, ({out}, {out})); got {m.shape}")
    if m.shape != (out, out):
        raise ValueError(same_shape_message(name, (out, out), m.shape))
    return m


def as_input(name, cw, out, n_in):
    """The (out, in) matrix of an input slot, or a ValueError naming ``name``."""
    if cw.weights.ndim == 4 and (cw.kernel_height, cw.kernel_width) != (1, 1):
        raise ValueError(f"{name}: matrix layers take 1x1 weights; got a {cw.kernel_height}x{cw.kernel_width} kernel")
    if cw.weights.ndim == 1:
        raise ValueError(f"{name}: expected an ({out}, {n_in}) matrix, got a vector of shape {cw.weights.shape}")
    m = cw.matrix()
    if m.shape != (out, n_in):
        raise ValueError(same_shape_message(name, (out, n_in), m.shape) +
                         " (output_feature_channels, input_feature_channels)")
    return m


def as_diagonal(name, cw, out):
    if cw.weights.ndim != 1 or cw.weights.shape != (out,):
        raise ValueError(f"{name}: with memory_weights_are_diagonal the memory weights are a vector of "
                         f"length {out}; got shape {cw.weights.shape}")
    return cw.weights
