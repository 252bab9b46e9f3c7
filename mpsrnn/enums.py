"""MPS enumerations, as IntEnums carrying MPS's raw values."""
import enum


class DataType(enum.IntEnum):
    """MPSDataType: the storage type of a matrix or image (computation is float32)."""
    FLOAT16 = 0x10000000 | 16
    FLOAT32 = 0x10000000 | 32


class SequenceDirection(enum.IntEnum):
    FORWARD = 0    # index 0 to N-1
    BACKWARD = 1   # index N-1 to 0


class BidirectionalCombineMode(enum.IntEnum):
    NONE = 0         # keep the two sequences apart
    ADD = 1          # sum them
    CONCATENATE = 2  # forward channels, then backward channels


class NeuronType(enum.IntEnum):
    """MPSCNNNeuronType."""
    NONE = 0
    RELU = 1
    LINEAR = 2
    SIGMOID = 3
    HARD_SIGMOID = 4
    TANH = 5
    ABSOLUTE = 6
    SOFT_PLUS = 7
    SOFT_SIGN = 8
    ELU = 9
    PRELU = 10
    RELU_N = 11
    POWER = 12
    EXPONENTIAL = 13
    LOGARITHM = 14
    GELU = 15


class RNNMatrixId(enum.IntEnum):
    """MPSRNNMatrixId: names the trainable weight matrices of a training layer."""
    SINGLE_GATE_INPUT_WEIGHTS = 0
    SINGLE_GATE_RECURRENT_WEIGHTS = 1
    SINGLE_GATE_BIAS_TERMS = 2
    LSTM_INPUT_GATE_INPUT_WEIGHTS = 3
    LSTM_INPUT_GATE_RECURRENT_WEIGHTS = 4
    LSTM_INPUT_GATE_MEMORY_WEIGHTS = 5
    LSTM_INPUT_GATE_BIAS_TERMS = 6
    LSTM_FORGET_GATE_INPUT_WEIGHTS = 7
    LSTM_FORGET_GATE_RECURRENT_WEIGHTS = 8
    LSTM_FORGET_GATE_MEMORY_WEIGHTS = 9
    LSTM_FORGET_GATE_BIAS_TERMS = 10
    LSTM_MEMORY_GATE_INPUT_WEIGHTS = 11
    LSTM_MEMORY_GATE_RECURRENT_WEIGHTS = 12
    LSTM_MEMORY_GATE_MEMORY_WEIGHTS = 13
    LSTM_MEMORY_GATE_BIAS_TERMS = 14
    LSTM_OUTPUT_GATE_INPUT_WEIGHTS = 15
    LSTM_OUTPUT_GATE_RECURRENT_WEIGHTS = 16
    LSTM_OUTPUT_GATE_MEMORY_WEIGHTS = 17
    LSTM_OUTPUT_GATE_BIAS_TERMS = 18
    GRU_INPUT_GATE_INPUT_WEIGHTS = 19
    GRU_INPUT_GATE_RECURRENT_WEIGHTS = 20
    GRU_INPUT_GATE_BIAS_TERMS = 21
    GRU_RECURRENT_GATE_INPUT_WEIGHTS = 22
    GRU_RECURRENT_GATE_RECURRENT_WEIGHTS = 23
    GRU_RECURRENT_GATE_BIAS_TERMS = 24
    GRU_OUTPUT_GATE_INPUT_WEIGHTS = 25
    GRU_OUTPUT_GATE_RECURRENT_WEIGHTS = 26
    GRU_OUTPUT_GATE_INPUT_GATE_WEIGHTS = 27
    GRU_OUTPUT_GATE_BIAS_TERMS = 28


def coerce_enum(enum_cls, value, field):
    """``enum_cls(value)`` (member, raw value or case-insensitive member name), or a ValueError naming ``field``."""
    if isinstance(value, str):
        try:
            return enum_cls[value.strip().upper()]
        except KeyError:
            pass
    elif not isinstance(value, bool):
        try:
            return enum_cls(int(value))
        except (TypeError, ValueError):
            pass
    names = ", ".join(m.name for m in enum_cls)
    raise ValueError(f"{field}: expected a {enum_cls.__name__} ({names}), got {value!r}")
