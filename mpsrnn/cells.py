"""A validated descriptor packed into the device arrays the kernels read.

``PackedCell`` is a layer's compiled form, built once when a layer is made (MPS
reads its descriptors then, so later edits to a descriptor do not reach the
layer). It holds:

* ``wts``: W (G, H, In), U (G, H, H), then V (LSTM memory weights, (4, H, H) or
  diagonal (4, H); GRU Vh (H, H)), row-major, float16 unless
  ``use_float32_weights`` (MPS's default), so float16 weights are rounded once here;
* ``host_prm``: biases, PReLU slopes and neuron parameters, float32, which each layer run copies
  into the tail of its frame (``scheduler/plans.py``);
* ``header``: the layer-header fields of the frame (see ``kernels/layout.py``).

Gate order: single gate (g); GRU (z, r, h); LSTM (input, forget, cell, output).
Matrices are stored row-major or transposed (``transposed``; see the F_*_SO/SJ
strides in ``kernels/layout.py``): the layer picks what its arch's kernels read best.
On the CPU (``lanes``) they are also packed eight output rows wide into ``lanes``
(``kernels/lanes.py``), which the CPU's projection and recurrence read. The CUDA
persistent kernel reads U (and a GRU's Vh, where set) four inputs at a time, from ``quads()``
(``kernels/quads.py``), made the first time a plan asks for them.
Nil slots are zeros (an input slot also means zero bias and the identity neuron);
with ``use_layer_input_unit_transform_mode`` every gate reads x itself.
"""
import warnings

import numpy as np

from .backend import ensure_init
from .descriptors import GRUDescriptor, LSTMDescriptor
from .enums import DataType, NeuronType
from .kernels import layout as L
from .kernels.lanes import lane_group, pack_lanes
from .kernels.quads import QUAD, pack_quads, pack_streams


class PackedCell:
    def __init__(self, descriptor, where=None, transposed=False, lanes=False):
        descriptor.validate(where)
        d = descriptor
        if isinstance(d, LSTMDescriptor):
            kind = L.CELL_LSTM
        elif isinstance(d, GRUDescriptor):
            kind = L.CELL_GRU
        else:
            kind = L.CELL_SINGLE_GATE
        self.kind = kind
        self.n_in = d.input_feature_channels
        self.n_out = H = d.output_feature_channels
        self.gates = G = L.GATES[kind]
        self.direction = d.layer_sequence_direction
        self.weight_type = DataType.FLOAT32 if d.use_float32_weights else DataType.FLOAT16

        W = np.zeros((G, H, self.n_in), np.float32)
        U = np.zeros((G, H, H), np.float32)
        o_bias, o_prelu, o_neuron, o_cell, o_pnorm = L.prm_offsets(G, H)
        prm = np.zeros(L.prm_size(G, H), np.float32)
        header = np.zeros(L.F_HEADER, np.int32)
        for g, slot in enumerate(d.INPUT_SLOTS):
            cw = getattr(d, slot)
            if d.use_layer_input_unit_transform_mode:
                mode = L.INPUT_IDENTITY
            elif cw is None:
                mode = L.INPUT_NIL
            else:
                mode = L.INPUT_DENSE
                W[g] = cw.matrix()
            header[L.F_INPUT_MODE + g] = mode
            neuron = None if cw is None else cw.neuron
            if cw is not None and cw.bias is not None:
                prm[o_bias + g * H: o_bias + (g + 1) * H] = cw.bias
            ntype, a, b, c = NeuronType.NONE, 1.0, 0.0, 1.0
            if neuron is not None:
                ntype, b, c = neuron.type, neuron.b, neuron.c
                if ntype == NeuronType.PRELU:
                    prm[o_prelu + g * H: o_prelu + (g + 1) * H] = neuron.a
                    a = 0.0
                else:
                    a = neuron.a
            header[L.F_NEURON + g] = int(ntype)
            prm[o_neuron + 3 * g: o_neuron + 3 * g + 3] = (a, b, c)
        recurrent = d.RECURRENT_SLOTS[:G]
        for g, slot in enumerate(recurrent):
            cw = getattr(d, slot)
            if cw is not None:
                U[g] = cw.matrix()
        V = np.zeros(0, np.float32)
        if kind == L.CELL_GRU:
            vh = d.output_gate_input_gate_weights
            V = (vh.matrix() if vh is not None else np.zeros((H, H), np.float32)).reshape(-1)
            prm[o_pnorm] = d.gate_pnorm_value
            header[L.F_HAS_VH] = int(vh is not None)
            header[L.F_FLIP] = int(d.flip_output_gates)
        elif kind == L.CELL_LSTM:
            slots = [getattr(d, s) for s in d.MEMORY_SLOTS]
            if all(cw is None for cw in slots):
                header[L.F_PEEP] = L.PEEP_NONE
            elif d.memory_weights_are_diagonal:
                header[L.F_PEEP] = L.PEEP_DIAGONAL
                V = np.stack([np.zeros(H, np.float32) if cw is None else cw.weights for cw in slots]).reshape(-1)
            else:
                header[L.F_PEEP] = L.PEEP_DENSE
                V = np.stack([np.zeros((H, H), np.float32) if cw is None else cw.matrix()
                              for cw in slots]).reshape(-1)
            header[L.F_CELL_NEURON] = int(d.cell_to_output_neuron_type)
            prm[o_cell: o_cell + 3] = (d.cell_to_output_neuron_param_a, d.cell_to_output_neuron_param_b,
                                       d.cell_to_output_neuron_param_c)
        header[L.F_STANDARD] = int(_standard(d, kind, header, prm, o_neuron, o_cell))
        header[L.F_CELL] = kind
        header[L.F_IN] = self.n_in
        header[L.F_OUT] = H
        header[L.F_GATES] = G
        header[L.F_P_BIAS: L.F_P_PNORM + 1] = (o_bias, o_prelu, o_neuron, o_cell, o_pnorm)
        # (rows, columns) of each matrix as (output o, input j); V is (4H, H) dense LSTM
        # peepholes, (H, H) GRU Vh, or a diagonal vector (no strides).
        W = W.reshape(G * H, self.n_in)
        U = U.reshape(G * H, H)
        v_rows = 0
        if V.size and not (kind == L.CELL_LSTM and header[L.F_PEEP] == L.PEEP_DIAGONAL):
            v_rows = V.size // H
            V = V.reshape(v_rows, H)
        wtype = np.float32 if self.weight_type == DataType.FLOAT32 else np.float16
        self.host_lanes = (self._pack_lanes(W, prm[o_bias: o_bias + G * H], U, V, v_rows, header, wtype)
                           if lanes else None)
        self._quads = None
        self._streams = None
        self._tiles = None
        self._spread_rows = None
        if transposed:
            W, U = W.T, U.T
            V = V.T if v_rows else V
        header[L.F_W] = 0
        header[L.F_U] = W.size
        header[L.F_V] = W.size + U.size
        for (so, sj), rows, cols in (((L.F_W_SO, L.F_W_SJ), G * H, self.n_in), ((L.F_U_SO, L.F_U_SJ), G * H, H),
                                     ((L.F_V_SO, L.F_V_SJ), max(v_rows, 1), H)):
            header[so], header[sj] = (1, rows) if transposed else (cols, 1)
        self.header = header
        self.transposed = transposed
        self.host_wts = np.concatenate([np.ascontiguousarray(W).reshape(-1), np.ascontiguousarray(U).reshape(-1),
                                        np.ascontiguousarray(V).reshape(-1)]).astype(wtype)
        self.host_prm = prm
        self._upload()

    def _pack_lanes(self, W, bias, U, V, v_rows, header, wtype):
        """W, the biases (float32, as the other kernels read them), U and V in the CPU's lane layout
        (kernels/lanes.py), W's after rounding to the weight type; U's and V's offsets go to the
        header (F_LANE_U, F_LANE_V), the biases sit just before U (``lanes.bias_vector``)."""
        G, H, group = self.gates, self.n_out, lane_group(self.kind)
        parts = [np.concatenate([pack_lanes(W.astype(wtype), G, H, group),
                                 pack_lanes(bias.reshape(G * H, 1), G, H, group)]),
                 pack_lanes(U.astype(wtype), G, H, group)]
        if V.size:
            v_gates = v_rows // H if v_rows else 4   # dense: 4 (LSTM) or 1 (GRU Vh) gates; diagonal: 4 columns of one
            parts.append(pack_lanes(V.reshape(v_gates * H, -1).astype(wtype), v_gates, H, group))
        header[L.F_LANE_U] = len(parts[0])
        header[L.F_LANE_V] = len(parts[0]) + len(parts[1])
        return np.concatenate(parts).astype(np.float32)

    def _upload(self):
        ensure_init()
        import taichi as ti
        self.lanes = None
        if self.host_lanes is not None:
            self.lanes = ti.Vector.ndarray(self.host_lanes.shape[1], ti.f32, len(self.host_lanes))
            with warnings.catch_warnings():
                # Taichi's copy kernel unrolls a vector's elements and warns past 32 (the LSTM's lane
                # vectors hold 64 with 16 lanes): a compile-time note about its own kernel, not ours
                warnings.filterwarnings("ignore", message="You are unrolling more than", category=SyntaxWarning)
                self.lanes.from_numpy(self.host_lanes)
        self.wts = ti.ndarray(self._ti_weight_type(), self.host_wts.shape)
        self.wts.from_numpy(self.host_wts)

    def _ti_weight_type(self):
        """Taichi's type of the layer's weight arrays: float32 or float16."""
        import taichi as ti
        return ti.f32 if self.weight_type == DataType.FLOAT32 else ti.f16

    def quads(self):
        """U, then for a GRU whose Vh is set Vh, in the quad layout (``kernels/quads.py``), as one
        device array: U's quad q of row o at q·G·H + o, Vh's at ceil(H / 4)·G·H + q·H + o. Made on
        first use, so only layers that run the persistent kernel hold this second copy."""
        if self._quads is None:
            import taichi as ti
            host = np.concatenate([pack_quads(m) for m in self._recurrent_rows()])
            self._quads = ti.Vector.ndarray(QUAD, ti.f32, len(host))
            self._quads.from_numpy(host)
        return self._quads

    def stream_quads(self, nblocks, rows, loads, kept=(0, 0)):
        """U, then for a GRU whose Vh is set Vh, in the order the persistent kernel's threads read
        them on ``nblocks`` blocks, ``rows`` gate rows a thread, groups of ``loads`` loads
        (``kernels/quads.py``'s ``pack_streams``): the first phase's gates, then a GRU's Uh and Vh;
        ``kept``: the quads a thread of the first phase and of the GRU's Uh that the kernel keeps
        in shared memory (``kept_counts``), which open each run. Made on first use; the cell keeps
        the last shape asked for."""
        from .kernels.sequence_persistent import BLOCK

        def make():
            import taichi as ti
            phases = self._phase_matrices()
            host = pack_streams(phases, self.n_out, nblocks, rows, loads, BLOCK, (*kept, 0)[:len(phases)])
            quads = ti.Vector.ndarray(QUAD, ti.f32, len(host))
            quads.from_numpy(host)
            return quads
        return self._kept("_streams", (nblocks, rows, loads, kept), make)

    def tile_weights(self, units):
        """U, then for a GRU whose Vh is set Vh, in the order the tiles kernels' threads read them for
        tiles of ``units`` units (``kernels/sequence_tiles.pack_tiles``), in the layer's weight type.
        Made on first use; the cell keeps the last size asked for."""
        from .kernels.sequence_tiles import pack_tiles
        return self._kept("_tiles", units,
                          lambda: self._weight_array(pack_tiles(self._phase_matrices(), self.n_out, units)))

    def spread_rows(self, nblocks, rho, threads):
        """The rows the spread kernel's threads read from memory every step, on ``nblocks`` blocks of
        ``threads`` threads with ``rho`` rows a thread, in their order
        (``kernels/sequence_spread.pack_memory_rows``), in the layer's weight type. Made on first use;
        the cell keeps the last shape asked for."""
        from .kernels.sequence_spread import pack_memory_rows
        return self._kept("_spread_rows", (nblocks, rho, threads), lambda: self._weight_array(
            pack_memory_rows(self.kind, self._phase_matrices(), self.n_out, nblocks, rho, threads)))

    def _kept(self, attr, key, make):
        """The device array that ``make()`` builds for ``key``, kept in ``attr`` for the last key asked
        for: a copy of the weights in the order one kernel's threads read them, for its shape."""
        kept = getattr(self, attr)
        if kept is None or kept[0] != key:
            kept = (key, make())
            setattr(self, attr, kept)
        return kept[1]

    def _weight_array(self, host):
        """The host array ``host`` as a device array in the layer's weight type."""
        import taichi as ti
        array = ti.ndarray(self._ti_weight_type(), host.shape)
        array.from_numpy(host.astype(self.host_wts.dtype))
        return array

    def _phase_matrices(self):
        """[(matrix, gates)] of each product a step takes in turn, float32: U's first-phase gates (all
        of them but the GRU's), then the GRU's Uh, and its Vh where set."""
        from .kernels.layout import FIRST_PHASE_GATES
        G, H = self.gates, self.n_out
        mats = self._recurrent_rows()
        first = FIRST_PHASE_GATES[self.kind]
        phases = [(mats[0][:first * H], first)]
        if first < G:   # the GRU's second phase: Uh, and Vh where set
            phases += [(mats[0][first * H:], 1)] + [(m, 1) for m in mats[1:]]
        return phases

    def _recurrent_rows(self):
        """U (G·H, H), and for a GRU whose Vh is set Vh (H, H), row-major float32, read back from
        ``host_wts``."""
        G, H, h = self.gates, self.n_out, self.header
        flat = self.host_wts.astype(np.float32)
        mats = [(h[L.F_U], G * H)] + ([(h[L.F_V], H)] if self.has_vh else [])
        return [flat[at: at + rows * H].reshape(H, rows).T if self.transposed else
                flat[at: at + rows * H].reshape(rows, H) for at, rows in mats]

    @property
    def has_vh(self):
        """Whether this is a GRU whose Vh is set (nil is zero: the kernels skip its product)."""
        return bool(self.header[L.F_HAS_VH])

    @property
    def header_peep(self):
        return int(self.header[L.F_PEEP])

    @property
    def is_lstm(self):
        return self.kind == L.CELL_LSTM

    @property
    def standard(self):
        """Whether every gate has its usual neuron (the frame's F_STANDARD), which the fast kernels need."""
        return self.header[L.F_STANDARD] != 0

    @property
    def dense_peepholes(self):
        """Whether this is an LSTM with dense peepholes (V·c a matrix product, not a diagonal one)."""
        return self.is_lstm and self.header_peep == L.PEEP_DENSE

    def copy(self):
        """An independent cell with the same weights (new device arrays)."""
        new = PackedCell.__new__(PackedCell)
        new.__dict__.update({k: v for k, v in self.__dict__.items()
                             if k not in ("wts", "lanes", "_quads", "_streams", "_tiles", "_spread_rows")})
        new._quads = None
        new._streams = None
        new._tiles = None
        new._spread_rows = None
        new._upload()
        return new

    def workspace_layout(self, steps, batch, terms_apart=False):
        """Offsets (xw, h history, c history, scratch), history slot stride and total size, in floats.
        ``terms_apart``: the run keeps its input terms in an array of their own (the CPU's lanes
        kernels: ``kernels/lanes.term_at``), so the workspace has no xw region.

        Every region starts on a 128-byte line (see ``kernels/layout.history_slot``)."""
        H, G = self.n_out, self.gates
        slot = L.history_slot(batch, H)
        xw = 0
        h = 0 if terms_apart else L.history_slot(steps * batch * G, H)
        c = h + (steps + 1) * slot
        # the C region: the LSTM's cell history; for a GRU, per-step r∘h and z∘h (persistent kernels)
        c_slots = {L.CELL_LSTM: steps + 1, L.CELL_GRU: 2 * steps}.get(self.kind, 0)
        scratch = c + c_slots * slot
        return xw, h, c, scratch, slot, scratch + 3 * batch * H


def _standard(d, kind, header, prm, o_neuron, o_cell):
    """Whether every gate uses its usual neuron (see kernels/layout.F_STANDARD)."""
    sig, tanh = int(NeuronType.SIGMOID), int(NeuronType.TANH)
    want = {L.CELL_LSTM: (sig, sig, tanh, sig), L.CELL_GRU: (sig, sig, tanh), L.CELL_SINGLE_GATE: (tanh,)}[kind]
    for g, neuron in enumerate(want):
        if header[L.F_NEURON + g] != neuron:
            return False
        if neuron == tanh and tuple(prm[o_neuron + 3 * g: o_neuron + 3 * g + 2]) != (1.0, 1.0):
            return False
    if kind == L.CELL_LSTM:
        return (d.cell_to_output_neuron_type == NeuronType.TANH and d.cell_to_output_neuron_param_a == 1.0
                and d.cell_to_output_neuron_param_b == 1.0)
    if kind == L.CELL_GRU:
        return d.gate_pnorm_value == 1.0
    return True
