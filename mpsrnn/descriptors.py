"""RNN descriptors: MPSRNNSingleGateDescriptor, MPSGRUDescriptor, MPSLSTMDescriptor.

Every MPS property is an attribute, settable after construction and type-checked
when set. Cross-field rules (weight shapes against channel counts, square U and
V, unit transform needing in == out) are checked by ``validate()``, which the
layers call when they are built, as MPS reads a descriptor at layer creation.
"""
import copy
import math

from .enums import NeuronType, SequenceDirection, coerce_enum
from .weights import ConvolutionWeights, as_diagonal, as_input, as_square

_BOOL, _CHANNELS, _DIRECTION, _SLOT, _PNORM, _NEURON_TYPE, _FLOAT = range(7)


class RNNDescriptor:
    """Base of the three descriptors (MPSRNNDescriptor)."""

    _FIELDS = {
        "input_feature_channels": (_CHANNELS, None),
        "output_feature_channels": (_CHANNELS, None),
        "use_layer_input_unit_transform_mode": (_BOOL, False),
        "use_float32_weights": (_BOOL, False),
        "layer_sequence_direction": (_DIRECTION, SequenceDirection.FORWARD),
    }
    # slots that act on x (their data source also carries the gate's bias and neuron)
    INPUT_SLOTS = ()
    # slots that act on h (square)
    RECURRENT_SLOTS = ()

    def __init__(self, input_feature_channels, output_feature_channels, **properties):
        for name, (_, default) in self._FIELDS.items():
            object.__setattr__(self, "_" + name, default)
        self.input_feature_channels = input_feature_channels
        self.output_feature_channels = output_feature_channels
        for name, value in properties.items():
            if name not in self._FIELDS or name.endswith("feature_channels"):
                raise TypeError(f"{type(self).__name__}() got an unknown property {name!r}; "
                                f"known: {', '.join(sorted(self._FIELDS))}")
            setattr(self, name, value)

    def __getattr__(self, name):
        fields = type(self)._FIELDS
        if name in fields:
            return object.__getattribute__(self, "_" + name)
        raise AttributeError(f"{type(self).__name__} has no property {name!r}")

    def __setattr__(self, name, value):
        fields = type(self)._FIELDS
        if name not in fields:
            raise AttributeError(f"{type(self).__name__} has no property {name!r}; "
                                 f"known: {', '.join(sorted(fields))}")
        kind = fields[name][0]
        field = f"{type(self).__name__}.{name}"
        object.__setattr__(self, "_" + name, _coerce(kind, value, field))

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._FIELDS))

    def properties(self):
        """All properties as a dict (name → value)."""
        return {name: getattr(self, name) for name in self._FIELDS}

    def copy(self):
        return copy.deepcopy(self)

    def __repr__(self):
        return (f"{type(self).__name__}(input_feature_channels={self.input_feature_channels}, "
                f"output_feature_channels={self.output_feature_channels}, ...)")

    # -- validation -------------------------------------------------------
    def validate(self, where=None):
        """Check the cross-field rules for a matrix layer; raise ValueError naming the field.

        ``where`` prefixes the message (a layer passes e.g. ``"descriptors[1]"``).
        """
        prefix = f"{where}: " if where else ""
        name = type(self).__name__
        out = self.output_feature_channels
        n_in = self.input_feature_channels
        if self.use_layer_input_unit_transform_mode and n_in != out:
            raise ValueError(f"{prefix}{name}.use_layer_input_unit_transform_mode: the identity input "
                             f"transform needs input_feature_channels == output_feature_channels, got "
                             f"{n_in} and {out}")
        for slot in self.INPUT_SLOTS:
            cw = getattr(self, slot)
            if cw is None:
                continue
            field = f"{prefix}{name}.{slot}"
            as_input(field, cw, out, n_in)
            nrn = cw.neuron
            if nrn is not None and nrn.type == NeuronType.PRELU and nrn.a.shape != (out,):
                raise ValueError(f"{field}: its PRELU neuron has {nrn.a.size} slopes; expected one per "
                                 f"output feature channel ({out})")
        for slot in self.RECURRENT_SLOTS:
            cw = getattr(self, slot)
            if cw is not None:
                as_square(f"{prefix}{name}.{slot}", cw, out)
        self._validate_more(prefix)

    def _validate_more(self, prefix):
        pass


def _coerce(kind, value, field):
    if kind == _CHANNELS:
        if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
            raise TypeError(f"{field}: expected a positive integer, got {value!r}")
        value = int(value)
        if value < 1:
            raise ValueError(f"{field}: expected a positive integer, got {value}")
        return value
    if kind == _BOOL:
        if not isinstance(value, bool) and type(value).__name__ != "bool_":
            raise TypeError(f"{field}: expected True or False, got {value!r}")
        return bool(value)
    if kind == _DIRECTION:
        return coerce_enum(SequenceDirection, value, field)
    if kind == _NEURON_TYPE:
        t = coerce_enum(NeuronType, value, field)
        if t == NeuronType.PRELU:
            raise ValueError(f"{field}: PRELU needs per-channel slopes, which this property cannot carry")
        return t
    if kind == _SLOT:
        if value is not None and not isinstance(value, ConvolutionWeights):
            raise TypeError(f"{field}: expected a mpsrnn.ConvolutionWeights or None (nil), got "
                            f"{type(value).__name__}")
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{field}: expected a number, got {value!r}") from None
    if kind == _PNORM and not (math.isfinite(f) and f > 0):
        raise ValueError(f"{field}: the p-norm value must be a finite number > 0, got {value!r}")
    if math.isnan(f):
        raise ValueError(f"{field}: must not be NaN")
    return f


class RNNSingleGateDescriptor(RNNDescriptor):
    """h1 = g(W·x + U·h0 + b)."""
    _FIELDS = dict(RNNDescriptor._FIELDS, input_weights=(_SLOT, None), recurrent_weights=(_SLOT, None))
    INPUT_SLOTS = ("input_weights",)
    RECURRENT_SLOTS = ("recurrent_weights",)


class GRUDescriptor(RNNDescriptor):
    """Gated recurrent unit, reset applied before the recurrent product, p-norm gating."""
    INPUT_SLOTS = ("input_gate_input_weights", "recurrent_gate_input_weights", "output_gate_input_weights")
    RECURRENT_SLOTS = ("input_gate_recurrent_weights", "recurrent_gate_recurrent_weights",
                       "output_gate_recurrent_weights", "output_gate_input_gate_weights")
    _FIELDS = dict(RNNDescriptor._FIELDS,
                   **{slot: (_SLOT, None) for slot in INPUT_SLOTS + RECURRENT_SLOTS},
                   gate_pnorm_value=(_PNORM, 1.0), flip_output_gates=(_BOOL, False))


LSTM_GATES = ("input", "forget", "cell", "output")


class LSTMDescriptor(RNNDescriptor):
    """Long short-term memory with optional peepholes (memory weights)."""
    INPUT_SLOTS = tuple(f"{g}_gate_input_weights" for g in LSTM_GATES)
    RECURRENT_SLOTS = tuple(f"{g}_gate_recurrent_weights" for g in LSTM_GATES)
    MEMORY_SLOTS = tuple(f"{g}_gate_memory_weights" for g in LSTM_GATES)
    _FIELDS = dict(RNNDescriptor._FIELDS,
                   **{slot: (_SLOT, None) for slot in INPUT_SLOTS + RECURRENT_SLOTS + MEMORY_SLOTS},
                   memory_weights_are_diagonal=(_BOOL, False),
                   cell_to_output_neuron_type=(_NEURON_TYPE, NeuronType.TANH),
                   cell_to_output_neuron_param_a=(_FLOAT, 1.0),
                   cell_to_output_neuron_param_b=(_FLOAT, 1.0),
                   cell_to_output_neuron_param_c=(_FLOAT, 1.0))

    def _validate_more(self, prefix):
        out = self.output_feature_channels
        for slot in self.MEMORY_SLOTS:
            cw = getattr(self, slot)
            if cw is None:
                continue
            field = f"{prefix}LSTMDescriptor.{slot}"
            if self.memory_weights_are_diagonal:
                as_diagonal(field, cw, out)
            else:
                as_square(field, cw, out)
