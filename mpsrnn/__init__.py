"""mpsrnn: Apple's Metal Performance Shaders recurrent layers, on Taichi kernels.

Single-gate RNN, GRU and LSTM layers over matrices, with MPS's semantics (see
``shared/spec``), running on Metal, CUDA, Vulkan or the CPU.
"""
import os as _os

# Taichi prints a banner on import; a library should not.
_os.environ.setdefault("ENABLE_TAICHI_HEADER_PRINT", "False")

# In a source checkout the kernels and the command line live beside this package
# (kernels/, cli.py); the wheel installs them inside it. Extending the package
# path makes ``mpsrnn.kernels`` and ``mpsrnn.cli`` resolve the same way in both.
_here = _os.path.dirname(_os.path.abspath(__file__))
_root = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "kernels")) and _os.path.isfile(_os.path.join(_root, "kernels", "layout.py")):
    __path__.append(_root)

from .backend import current_arch, init  # noqa: E402
from .command_buffer import CommandBuffer  # noqa: E402
from .descriptors import GRUDescriptor, LSTMDescriptor, RNNDescriptor, RNNSingleGateDescriptor  # noqa: E402
from .enums import BidirectionalCombineMode, DataType, NeuronType, RNNMatrixId, SequenceDirection  # noqa: E402
from .matrix import Matrix, MatrixSequence  # noqa: E402
from .matrix_layer import RNNMatrixInferenceLayer  # noqa: E402
from .neuron import Neuron  # noqa: E402
from .state import RNNRecurrentMatrixState  # noqa: E402
from .weights import ConvolutionWeights  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "init", "current_arch", "CommandBuffer", "Matrix", "MatrixSequence", "DataType", "Neuron", "NeuronType",
    "ConvolutionWeights", "SequenceDirection", "BidirectionalCombineMode", "RNNMatrixId",
    "RNNDescriptor", "RNNSingleGateDescriptor", "GRUDescriptor", "LSTMDescriptor",
    "RNNMatrixInferenceLayer", "RNNRecurrentMatrixState",
]
