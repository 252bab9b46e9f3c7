"""Independent float64 NumPy reference for the MPS recurrent layers (matrix form).

Everything here follows /work/shared/spec/mps-rnn-reference.md ("the spec") literally.
It imports only numpy and the standard library; it never imports mpsrnn.  Inputs are
duck-typed: a descriptor is any object with the attribute names of api.md, a weight slot
is None or an object with ``.weights``, ``.bias`` and ``.neuron``; a neuron is None or an
object with ``.type``, ``.a``, ``.b``, ``.c``.

Conventions (spec, "Notation"): vectors are rows, ``A * v`` is ``v @ A.T`` with ``A``
shaped (out, in); ``x`` has shape (rows, in), states ``h``/``c`` have shape (rows, out).

Public functions
----------------
neuron(kind, x, a, b, c)                 activation table (NeuronType raw values 0..15)
neuron_from(obj)                         -> (kind, a, b, c); None -> identity
cell_kind(d)                             -> "single" | "gru" | "lstm"
effective_weights(d)                     -> dict of the float64 weights the cell really uses
single_gate_cell(d, x, h0)               -> h1
gru_cell(d, x, h0)                       -> h1
lstm_cell(d, x, h0, c0)                  -> (h1, c1)
cell_step(d, x, h0, c0=None)             -> (h1, c1 or None)
run_layer(d, xs, h0=None, c0=None, reverse=False)      -> (ys, hs, cs)
run_stack(ds, xs, h0s=None, c0s=None, reverse=False)   -> (ys, per_layer)
encode_sequence(ds, xs, h0s=None, c0s=None)            -> (ys, states)
encode_bidirectional(ds, xs, combine_mode)             -> (first, second)
"""

import math

import numpy as np

# ---------------------------------------------------------------------------
# Enumerations (spec, "Enumerations"), raw values only.
# ---------------------------------------------------------------------------
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

FORWARD = 0
BACKWARD = 1

COMBINE_NONE = 0
COMBINE_ADD = 1
COMBINE_CONCATENATE = 2

F64 = np.float64


# ---------------------------------------------------------------------------
# Neurons (spec, "Neurons (activation functions), parameters a, b, c")
# ---------------------------------------------------------------------------
def _scalar(v):
    """A neuron parameter as a float64 scalar."""
    return F64(float(v))


def _gelu(x):
    # GELU: 0.5 * x * (1 + erf(x / sqrt(2))).  1 + erf(z) is computed as erfc(-z), the
    # same function: the literal sum cancels to 0 in float64 once z < -5.9, erfc does not.
    erfc = np.vectorize(math.erfc, otypes=[F64])
    return 0.5 * x * erfc(-x / math.sqrt(2.0))


def neuron(kind, x, a=1.0, b=0.0, c=1.0):
    """Apply the neuron of NeuronType raw value ``kind`` to ``x`` (float64).

    For PRELU, ``a`` is a vector (one slope per feature channel) broadcast along the
    last axis of ``x``.  Overflow gives inf and invalid operations give nan, exactly as
    float64 NumPy arithmetic does.
    """
    kind = int(kind)
    x = np.asarray(x, dtype=F64)
    with np.errstate(all="ignore"):
        if kind == NONE:
            # f(x) = x
            return x.copy()
        if kind == RELU:
            # f(x) = x if x >= 0 else a*x
            a = _scalar(a)
            return np.where(x >= 0, x, a * x)
        if kind == LINEAR:
            # f(x) = a*x + b
            return _scalar(a) * x + _scalar(b)
        if kind == SIGMOID:
            # f(x) = 1 / (1 + e^-x)
            return 1.0 / (1.0 + np.exp(-x))
        if kind == HARD_SIGMOID:
            # f(x) = clamp(a*x + b, 0, 1)
            return np.clip(_scalar(a) * x + _scalar(b), 0.0, 1.0)
        if kind == TANH:
            # f(x) = a * tanh(b*x)
            return _scalar(a) * np.tanh(_scalar(b) * x)
        if kind == ABSOLUTE:
            # f(x) = |x|
            return np.abs(x)
        if kind == SOFT_PLUS:
            # f(x) = a * log(1 + e^(b*x)); log(1 + e^t) == logaddexp(0, t) without overflow
            return _scalar(a) * np.logaddexp(0.0, _scalar(b) * x)
        if kind == SOFT_SIGN:
            # f(x) = x / (1 + |x|)
            return x / (1.0 + np.abs(x))
        if kind == ELU:
            # f(x) = x if x >= 0 else a*(e^x - 1)
            a = _scalar(a)
            return np.where(x >= 0, x, a * (np.exp(x) - 1.0))
        if kind == PRELU:
            # as RELU with one a per feature channel (last axis)
            a = np.asarray(a, dtype=F64)
            return np.where(x >= 0, x, a * x)
        if kind == RELU_N:
            # f(x) = min(x if x >= 0 else a*x, b)
            a = _scalar(a)
            return np.minimum(np.where(x >= 0, x, a * x), _scalar(b))
        if kind == POWER:
            # f(x) = (a*x + b)^c
            return np.power(_scalar(a) * x + _scalar(b), _scalar(c))
        if kind == EXPONENTIAL:
            # f(x) = c^(a*x + b); c == -1 means base e
            t = _scalar(a) * x + _scalar(b)
            if float(c) == -1.0:
                return np.exp(t)
            return np.power(_scalar(c), t)
        if kind == LOGARITHM:
            # f(x) = log_c(a*x + b); c == -1 means the natural log
            t = _scalar(a) * x + _scalar(b)
            if float(c) == -1.0:
                return np.log(t)
            return np.log(t) / np.log(_scalar(c))
        if kind == GELU:
            # f(x) = 0.5*x*(1 + erf(x/sqrt(2)))
            return _gelu(x)
    raise ValueError("unknown NeuronType raw value %r" % (kind,))


def neuron_from(obj):
    """(kind, a, b, c) of a neuron object; None means NONE (the identity)."""
    if obj is None:
        return (NONE, 1.0, 0.0, 1.0)
    kind = int(obj.type)
    a, b, c = obj.a, obj.b, obj.c
    if kind == PRELU:
        a = np.asarray(a, dtype=F64).reshape(-1)
    return (kind, a, b, c)


def _apply(nrn, x):
    kind, a, b, c = nrn
    return neuron(kind, x, a, b, c)


# ---------------------------------------------------------------------------
# Descriptor kind and effective weights (spec, "RNNDescriptor" and the slot lists)
# ---------------------------------------------------------------------------
def cell_kind(d):
    """'lstm', 'gru' or 'single', decided by which slot attributes exist."""
    if hasattr(d, "input_gate_input_weights") and hasattr(d, "forget_gate_input_weights"):
        return "lstm"
    if hasattr(d, "output_gate_input_gate_weights"):
        return "gru"
    return "single"


def _fp16(w, d):
    """Weights (not biases, not neuron parameters) are float16 unless use_float32_weights."""
    if bool(d.use_float32_weights):
        return w
    return w.astype(np.float16).astype(F64)


def _input_slot(d, name):
    """(W, b, neuron) of an input-weights slot.

    nil slot: zero W, zero b, identity neuron.  With use_layer_input_unit_transform_mode,
    W is the identity (exact, never rounded); b and the neuron still come from the slot.
    """
    n_out = int(d.output_feature_channels)
    n_in = int(d.input_feature_channels)
    slot = getattr(d, name, None)
    if slot is None:
        W = np.zeros((n_out, n_in), dtype=F64)
        b = np.zeros(n_out, dtype=F64)
        nrn = neuron_from(None)
    else:
        W = _fp16(np.asarray(slot.weights, dtype=F64).reshape(n_out, n_in), d)
        b = (np.zeros(n_out, dtype=F64) if slot.bias is None
             else np.asarray(slot.bias, dtype=F64).reshape(n_out))
        nrn = neuron_from(slot.neuron)
    if bool(d.use_layer_input_unit_transform_mode):
        if n_in != n_out:
            raise ValueError("use_layer_input_unit_transform_mode needs in == out")
        W = np.eye(n_out, dtype=F64)
    return W, b, nrn


def _square_slot(d, name):
    """U (or dense V) of a recurrent/memory slot, (out, out); nil means zero.

    Only .weights counts on these slots (their bias and neuron are ignored)."""
    n_out = int(d.output_feature_channels)
    slot = getattr(d, name, None)
    if slot is None:
        return np.zeros((n_out, n_out), dtype=F64)
    return _fp16(np.asarray(slot.weights, dtype=F64).reshape(n_out, n_out), d)


def _diag_slot(d, name):
    """Diagonal memory weights, a vector of length out; nil means zero."""
    n_out = int(d.output_feature_channels)
    slot = getattr(d, name, None)
    if slot is None:
        return np.zeros(n_out, dtype=F64)
    return _fp16(np.asarray(slot.weights, dtype=F64).reshape(n_out), d)


LSTM_GATES = ("input", "forget", "cell", "output")


def effective_weights(d):
    """The float64 weights the cell of descriptor ``d`` computes with, as a dict."""
    kind = cell_kind(d)
    if kind == "single":
        W, b, g = _input_slot(d, "input_weights")
        return {"W": W, "b": b, "g": g, "U": _square_slot(d, "recurrent_weights")}
    if kind == "gru":
        Wz, bz, gz = _input_slot(d, "input_gate_input_weights")
        Wr, br, gr = _input_slot(d, "recurrent_gate_input_weights")
        Wh, bh, gh = _input_slot(d, "output_gate_input_weights")
        return {
            "Wz": Wz, "bz": bz, "gz": gz, "Uz": _square_slot(d, "input_gate_recurrent_weights"),
            "Wr": Wr, "br": br, "gr": gr, "Ur": _square_slot(d, "recurrent_gate_recurrent_weights"),
            "Wh": Wh, "bh": bh, "gh": gh, "Uh": _square_slot(d, "output_gate_recurrent_weights"),
            "Vh": _square_slot(d, "output_gate_input_gate_weights"),
            "p": float(d.gate_pnorm_value),
            "flip": bool(d.flip_output_gates),
        }
    # LSTM
    diagonal = bool(d.memory_weights_are_diagonal)
    out = {"diagonal": diagonal}
    for gate in LSTM_GATES:
        W, b, g = _input_slot(d, gate + "_gate_input_weights")
        U = _square_slot(d, gate + "_gate_recurrent_weights")
        if diagonal:
            V = _diag_slot(d, gate + "_gate_memory_weights")
        else:
            V = _square_slot(d, gate + "_gate_memory_weights")
        out[gate] = {"W": W, "b": b, "g": g, "U": U, "V": V}
    out["gh"] = (int(d.cell_to_output_neuron_type), d.cell_to_output_neuron_param_a,
                 d.cell_to_output_neuron_param_b, d.cell_to_output_neuron_param_c)
    return out


def _mv(A, v):
    """Spec notation A*v with rows as vectors: v @ A.T."""
    return v @ A.T


# ---------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------
def single_gate_cell(d, x, h0):
    """Spec "Single gate": h1 = g(W*x + U*h0 + b)."""
    w = effective_weights(d)
    x = np.asarray(x, dtype=F64)
    h0 = np.asarray(h0, dtype=F64)
    with np.errstate(all="ignore"):
        pre = _mv(w["W"], x) + _mv(w["U"], h0) + w["b"]
    return _apply(w["g"], pre)


def gru_cell(d, x, h0):
    """Spec "GRU":
    z  = gz(Wz*x + Uz*h0 + bz)
    r  = gr(Wr*x + Ur*h0 + br)
    c  = Uh*(r o h0) + Vh*(z o h0)
    h  = gh(Wh*x + c + bh)
    h1 = (1 - z^p)^(1/p) o h + z o h0        (default)
    h1 = (1 - z^p)^(1/p) o h0 + z o h        (flip_output_gates)
    """
    w = effective_weights(d)
    x = np.asarray(x, dtype=F64)
    h0 = np.asarray(h0, dtype=F64)
    with np.errstate(all="ignore"):
        z = _apply(w["gz"], _mv(w["Wz"], x) + _mv(w["Uz"], h0) + w["bz"])
        r = _apply(w["gr"], _mv(w["Wr"], x) + _mv(w["Ur"], h0) + w["br"])
        c = _mv(w["Uh"], r * h0) + _mv(w["Vh"], z * h0)
        h = _apply(w["gh"], _mv(w["Wh"], x) + c + w["bh"])
        p = w["p"]
        keep = np.power(1.0 - np.power(z, p), 1.0 / p)
        if w["flip"]:
            h1 = keep * h0 + z * h
        else:
            h1 = keep * h + z * h0
    return h1


def lstm_cell(d, x, h0, c0):
    """Spec "LSTM":
    I  = gi(Wi*x + Ui*h0 + Vi*c0 + bi)
    F  = gf(Wf*x + Uf*h0 + Vf*c0 + bf)
    C  = gc(Wc*x + Uc*h0 + Vc*c0 + bc)
    c1 = F o c0 + I o C
    O  = go(Wo*x + Uo*h0 + Vo*c1 + bo)
    h1 = O o gh(c1)
    Diagonal memory weights act elementwise (V * c).
    """
    w = effective_weights(d)
    x = np.asarray(x, dtype=F64)
    h0 = np.asarray(h0, dtype=F64)
    c0 = np.asarray(c0, dtype=F64)

    def peep(V, cell):
        return V * cell if w["diagonal"] else _mv(V, cell)

    def gate(name, cell):
        g = w[name]
        return _apply(g["g"], _mv(g["W"], x) + _mv(g["U"], h0) + peep(g["V"], cell) + g["b"])

    with np.errstate(all="ignore"):
        I = gate("input", c0)
        F = gate("forget", c0)
        C = gate("cell", c0)
        c1 = F * c0 + I * C
        O = gate("output", c1)  # the output gate peeks at the NEW cell c1
        h1 = O * _apply(w["gh"], c1)
    return h1, c1


def cell_step(d, x, h0, c0=None):
    """One step of any cell: (h1, c1), c1 None unless LSTM."""
    kind = cell_kind(d)
    if kind == "lstm":
        return lstm_cell(d, x, h0, c0)
    if kind == "gru":
        return gru_cell(d, x, h0), None
    return single_gate_cell(d, x, h0), None


# ---------------------------------------------------------------------------
# Sequences (spec, "Inference layers": variable lengths)
# ---------------------------------------------------------------------------
def _check_rows(xs):
    rows = [int(np.shape(x)[0]) for x in xs]
    for t in range(1, len(rows)):
        if rows[t] > rows[t - 1]:
            raise ValueError("row counts must not increase over time: %r" % (rows,))
    return rows


def run_layer(d, xs, h0=None, c0=None, reverse=False):
    """Run one layer over a (possibly variable-length) sequence.

    xs[t] has shape (rows_t, in), rows_t non-increasing in t; row r is sequence r.
    The state is kept for all B = rows_0 sequences; at a processed step only rows < rows_t
    are updated, the others keep their state (forward: an ended sequence keeps its final
    state; reverse: a sequence not yet started keeps the initial state).

    Returns (ys, hs, cs): ys indexed by input time t (ys[t] = first rows_t rows of the new
    state at step t); hs/cs the full (B, out) state after each processed step, in
    processing order (cs entries are None for non-LSTM layers).
    """
    xs = [np.asarray(x, dtype=F64) for x in xs]
    rows = _check_rows(xs)
    n_out = int(d.output_feature_channels)
    is_lstm = cell_kind(d) == "lstm"
    if not xs:
        return [], [], []
    # B = rows of the first step; a given initial state may hold more rows (sequences that
    # are absent from the whole call keep their state, like ended sequences within a call).
    B = rows[0] if h0 is None else max(rows[0], np.shape(h0)[0])
    h = np.zeros((B, n_out), dtype=F64) if h0 is None else np.array(h0, dtype=F64).reshape(B, n_out)
    c = None
    if is_lstm:
        c = np.zeros((B, n_out), dtype=F64) if c0 is None else np.array(c0, dtype=F64).reshape(B, n_out)

    order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    ys = [None] * len(xs)
    hs, cs = [], []
    for t in order:
        n = rows[t]
        h_new, c_new = cell_step(d, xs[t], h[:n], None if c is None else c[:n])
        h = h.copy()
        h[:n] = h_new
        if is_lstm:
            c = c.copy()
            c[:n] = c_new
        ys[t] = h[:n].copy()
        hs.append(h.copy())
        cs.append(c.copy() if is_lstm else None)
    return ys, hs, cs


def run_stack(ds, xs, h0s=None, c0s=None, reverse=False):
    """Run a stack of layers in one time direction; layer k's ys feed layer k+1.

    Returns (ys of the last layer, per_layer) where per_layer[k] = (ys, hs, cs) of layer k.
    """
    ds = list(ds)
    per_layer = []
    inp = list(xs)
    for k, d in enumerate(ds):
        h0 = None if h0s is None else h0s[k]
        c0 = None if c0s is None else c0s[k]
        ys, hs, cs = run_layer(d, inp, h0, c0, reverse=reverse)
        per_layer.append((ys, hs, cs))
        inp = ys
    return inp, per_layer


def encode_sequence(ds, xs, h0s=None, c0s=None):
    """Spec encode_sequence: every layer runs forward in time (direction ignored).

    ``ds`` is a descriptor or a list of descriptors.  Returns (ys, states): ys of the last
    layer indexed by time; states[t][k] = (h, c) of layer k after step t, full B rows
    (c None for non-LSTM; an ended sequence's state is copied forward).
    """
    if not isinstance(ds, (list, tuple)):
        ds = [ds]
    ys, per_layer = run_stack(ds, xs, h0s, c0s, reverse=False)
    states = []
    for t in range(len(xs)):
        states.append([(hs[t], cs[t]) for (_ys, hs, cs) in per_layer])
    return ys, states


def encode_bidirectional(ds, xs, combine_mode):
    """Spec encode_bidirectional_sequence.

    FORWARD layers (direction 0), in stack order, run forward in time from zero state;
    BACKWARD layers (direction 1), in stack order, run from the last step to the first
    from zero state; each layer reads the previous layer of its own direction.
    combine_mode 0 NONE -> (forward ys, backward ys); 1 ADD -> (fwd + bwd, None);
    2 CONCATENATE -> ([fwd, bwd] along channels, None).  All indexed by input time.
    A direction with no layers gives None; ADD and CONCATENATE then raise ValueError.
    """
    if not isinstance(ds, (list, tuple)):
        ds = [ds]
    fwd_layers = [d for d in ds if int(d.layer_sequence_direction) == FORWARD]
    bwd_layers = [d for d in ds if int(d.layer_sequence_direction) == BACKWARD]
    fwd = run_stack(fwd_layers, xs, reverse=False)[0] if fwd_layers else None
    bwd = run_stack(bwd_layers, xs, reverse=True)[0] if bwd_layers else None
    mode = int(combine_mode)
    if mode == COMBINE_NONE:
        return fwd, bwd
    if fwd is None or bwd is None:
        raise ValueError("ADD/CONCATENATE need at least one layer in each direction")
    if mode == COMBINE_ADD:
        return [f + b for f, b in zip(fwd, bwd)], None
    if mode == COMBINE_CONCATENATE:
        return [np.concatenate([f, b], axis=1) for f, b in zip(fwd, bwd)], None
    raise ValueError("unknown BidirectionalCombineMode %r" % (mode,))
