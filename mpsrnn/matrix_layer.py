"""RNNMatrixInferenceLayer (MPSRNNMatrixInferenceLayer)."""
import weakref

from .backend import current_arch, ensure_init
from .cells import PackedCell
from .command_buffer import check_command_buffer, submit
from .descriptors import RNNDescriptor
from .enums import BidirectionalCombineMode, DataType, SequenceDirection, coerce_enum
from .matrix import Matrix, MatrixSequence, Storage
from .scheduler import PlanCache, default_launch, packs_lanes, plan_bidirectional, plan_sequence, weights_transposed
from .sequences import Staging, prepare_destination, read_source, sequence_destination, sequence_source
from .state import RNNRecurrentMatrixState


def _descriptor_list(descriptors):
    if isinstance(descriptors, RNNDescriptor):
        return [descriptors]
    if isinstance(descriptors, (list, tuple)) and descriptors:
        for k, d in enumerate(descriptors):
            if not isinstance(d, RNNDescriptor):
                raise TypeError(f"descriptors[{k}]: expected an RNN descriptor (RNNSingleGateDescriptor, "
                                f"GRUDescriptor or LSTMDescriptor), got {type(d).__name__}")
        return list(descriptors)
    raise TypeError("descriptors: expected an RNN descriptor or a non-empty list of them")


def _chain_error(cells, indices, what):
    """A message if the layers at ``indices`` do not chain (each reads the previous one's output)."""
    for a, b in zip(indices, indices[1:]):
        if cells[b].n_in != cells[a].n_out:
            return (f"descriptors[{b}].input_feature_channels is {cells[b].n_in} but descriptors[{a}]."
                    f"output_feature_channels is {cells[a].n_out}; {what}")
    return None


class RNNMatrixInferenceLayer:
    """A stack of recurrent layers over sequences of matrices (rows = sequences, columns = channels).

    Built from one descriptor or a list (index 0 first). The descriptors are read now;
    later changes to them do not affect the layer.
    """

    def __init__(self, descriptors):
        ensure_init()
        ds = _descriptor_list(descriptors)
        where = (lambda k: f"descriptors[{k}]") if len(ds) > 1 else (lambda k: None)
        arch = current_arch()
        self._cells = [PackedCell(d, where(k), weights_transposed(arch), packs_lanes(arch)) for k, d in enumerate(ds)]
        seq_err = self._sequence_chain_error()
        bidi_err = self._bidirectional_chain_error()
        if seq_err and bidi_err:
            raise ValueError(seq_err)
        self._plans = PlanCache()
        self._staging = Staging()   # where host sequences are staged on the device, call after call
        self._launch = default_launch(current_arch())
        self._checked = None   # the last encode_sequence's sequences, as checked (see _source_and_destination)
        self.recurrent_output_is_temporary = False
        self.store_all_intermediate_states = False
        self.bidirectional_combine_mode = BidirectionalCombineMode.NONE

    # -- properties --------------------------------------------------------
    @property
    def number_of_layers(self):
        return len(self._cells)

    @property
    def input_feature_channels(self):
        return self._cells[0].n_in

    @property
    def output_feature_channels(self):
        return self._cells[-1].n_out

    @property
    def bidirectional_combine_mode(self):
        return self._combine

    @bidirectional_combine_mode.setter
    def bidirectional_combine_mode(self, value):
        self._combine = coerce_enum(BidirectionalCombineMode, value, "bidirectional_combine_mode")

    @property
    def store_all_intermediate_states(self):
        return self._store_all

    @store_all_intermediate_states.setter
    def store_all_intermediate_states(self, value):
        self._store_all = _flag(value, "store_all_intermediate_states")

    @property
    def recurrent_output_is_temporary(self):
        """A lifetime hint in MPS; here states are ordinary objects either way."""
        return self._temporary

    @recurrent_output_is_temporary.setter
    def recurrent_output_is_temporary(self, value):
        self._temporary = _flag(value, "recurrent_output_is_temporary")

    def copy(self):
        """An independent layer with the same weights and properties (MPS copy(with:device:))."""
        new = RNNMatrixInferenceLayer.__new__(RNNMatrixInferenceLayer)
        new._cells = [c.copy() for c in self._cells]
        new._plans = PlanCache()
        new._staging = Staging()
        new._launch = self._launch
        new._checked = None
        new._temporary = self._temporary
        new._store_all = self._store_all
        new._combine = self._combine
        return new

    # -- validation helpers --------------------------------------------------
    def _sequence_chain_error(self):
        return _chain_error(self._cells, list(range(len(self._cells))),
                            "encode_sequence feeds each layer's output to the next layer")

    def _directions(self):
        fwd = [k for k, c in enumerate(self._cells) if c.direction == SequenceDirection.FORWARD]
        bwd = [k for k, c in enumerate(self._cells) if c.direction == SequenceDirection.BACKWARD]
        return fwd, bwd

    def _bidirectional_chain_error(self):
        fwd, bwd = self._directions()
        what = "in encode_bidirectional_sequence each layer reads the previous layer of its own direction"
        for ks in (fwd, bwd):
            err = _chain_error(self._cells, ks, what)
            if err:
                return err
        if not fwd or not bwd:
            return ("encode_bidirectional_sequence needs at least one FORWARD and one BACKWARD layer "
                    "(layer_sequence_direction)")
        if self._cells[fwd[0]].n_in != self._cells[bwd[0]].n_in:
            return (f"descriptors[{bwd[0]}].input_feature_channels is {self._cells[bwd[0]].n_in} but "
                    f"descriptors[{fwd[0]}].input_feature_channels is {self._cells[fwd[0]].n_in}; the first "
                    f"layer of each direction reads the source sequence")
        return None

    def _initial_state(self, state, rows):
        """(per layer (h, c) of ``state`` checked against this stack, batch rows), or (None, rows[0]).

        A state may have more rows than the first step: rows are sequences, and those
        absent from this call (they ended earlier) keep their state, as within a call.
        """
        if state is None:
            return None, rows[0]
        if not isinstance(state, RNNRecurrentMatrixState):
            raise TypeError(f"recurrent_input_state: expected a mpsrnn.RNNRecurrentMatrixState or None, got "
                            f"{type(state).__name__}")
        if state.number_of_layers != len(self._cells):
            raise ValueError(f"recurrent_input_state: holds {state.number_of_layers} layers' state; this stack "
                             f"has {len(self._cells)} layers")
        batch = state.get_recurrent_output_matrix(0).rows
        if batch < rows[0]:
            raise ValueError(f"recurrent_input_state: has {batch} rows (sequences) but the first step of "
                             f"source_matrices has {rows[0]}; a state needs a row for every sequence")
        pairs = []
        for k, cell in enumerate(self._cells):
            h = state.get_recurrent_output_matrix(k)
            c = state.get_memory_cell_matrix(k)
            for name, m in (("recurrent output", h), ("memory cell", c)):
                if m is None:
                    continue
                if m.shape != (batch, cell.n_out):
                    raise ValueError(f"recurrent_input_state: layer {k}'s {name} matrix is {m.rows}x{m.columns}; "
                                     f"expected {batch}x{cell.n_out} (the state's rows x this layer's output "
                                     f"channels)")
            if cell.is_lstm and c is None:
                raise ValueError(f"recurrent_input_state: layer {k} is an LSTM and needs its memory cell matrix")
            pairs.append((h, c if cell.is_lstm else None))
        return pairs, batch

    # -- encoding ------------------------------------------------------------
    def encode_sequence(self, source_matrices, destination_matrices=None, *, recurrent_input_state=None,
                        recurrent_output_states=None, source_offsets=None, destination_offsets=None,
                        command_buffer=None):
        """Run the stack forward over a sequence; returns the destination matrices (one per step).

        Every layer runs forward in time (``layer_sequence_direction`` is for the
        bidirectional call). ``recurrent_input_state`` (None = zeros) seeds each layer;
        ``recurrent_output_states``, a list, receives the last state, or one per step with
        ``store_all_intermediate_states``.
        """
        check_command_buffer(command_buffer)
        err = self._sequence_chain_error()
        if err:
            raise ValueError(err)
        src, dst = self._source_and_destination(source_matrices, destination_matrices, source_offsets,
                                                destination_offsets)
        rows, T = src.rows, len(src.rows)
        initial, B = self._initial_state(recurrent_input_state, rows)
        if recurrent_output_states is not None and not hasattr(recurrent_output_states, "append"):
            raise TypeError("recurrent_output_states: expected a list to append states to, or None")
        states = None
        if recurrent_output_states is not None:
            states = "all" if self._store_all else "last"
        given = [initial is not None] * len(self._cells)
        key = ("sequence", rows, B, tuple(given), states, src.data_type, dst.view.storage.data_type,
               None if initial is None else tuple((h.data_type, c and c.data_type) for h, c in initial),
               dst.scatter is not None)

        def plan_for(gather):
            return self._plans.get(key + (gather,), lambda: plan_sequence(
                self._cells, rows, B, given, states, self._launch, gather, dst.scatter is not None))
        plan = plan_for(False) if src.gather is None else None   # (a gathering source's: when it runs)

        values = dict(src.view.binds("x"))
        values.update(dst.view.binds("y"))
        values.update(dst.scatter or {})
        if initial is not None:
            for k, (h, c) in enumerate(initial):
                for name, m in (("h0", h), ("c0", c)):
                    if m is not None:
                        values.update({f"{name}_{k}": m.storage.array, f"{name}_{k}_base": m.offset,
                                       f"{name}_{k}_row": m.row_stride})
        outputs = []
        if states:
            n = T if states == "all" else 1
            per_layer = []
            for k, cell in enumerate(self._cells):
                H = cell.n_out
                hs = Storage(n * B * H, DataType.FLOAT32)
                cs = Storage(n * B * H, DataType.FLOAT32) if cell.is_lstm else None
                values[f"hs_{k}"] = hs.array
                if cs is not None:
                    values[f"cs_{k}"] = cs.array
                per_layer.append((hs, cs, H))
                outputs += [hs] + ([cs] if cs is not None else [])
            for t in range(n):
                recurrent_output_states.append(RNNRecurrentMatrixState(
                    [Matrix.view(hs, t * B * H, B, H, H) for hs, _, H in per_layer],
                    [None if cs is None else Matrix.view(cs, t * B * H, B, H, H) for _, cs, H in per_layer]))

        def work():
            for p in src.prelude:
                p()
            _run_plan(plan, plan_for, src, values)
            _finish(dst, outputs)
        submit(work, command_buffer)
        return dst.result

    def _source_and_destination(self, source_matrices, destination_matrices, source_offsets, destination_offsets):
        """encode_sequence's checked source and destination.

        A call that passes the same two MatrixSequence objects as the last one (a loop over one
        input and one output) skips their checks: a sequence's storage, layout and rows never
        change once it is made, and the checks read nothing else (not the data), so they would
        find the same. That is 15 of a call's 27 µs of Python on this project's VM. The layer
        remembers the two by weak references only, so it keeps neither alive."""
        plain = source_offsets is None and destination_offsets is None
        last = self._checked
        if plain and last is not None and last[0]() is source_matrices and last[1]() is destination_matrices:
            return sequence_source(source_matrices), sequence_destination(destination_matrices)
        self._checked = None
        src = read_source(source_matrices, "source_matrices", self.input_feature_channels, source_offsets,
                          staging=self._staging)
        dst = prepare_destination(destination_matrices, "destination_matrices", src.rows,
                                  self.output_feature_channels, src.data_type, destination_offsets,
                                  sources=src.spans, as_sequence=isinstance(source_matrices, MatrixSequence),
                                  staging=self._staging)
        if plain and isinstance(source_matrices, MatrixSequence) and isinstance(destination_matrices, MatrixSequence):
            self._checked = (weakref.ref(source_matrices), weakref.ref(destination_matrices))
        return src, dst

    def encode_bidirectional_sequence(self, source_sequence, destination_forward_matrices=None,
                                      destination_backward_matrices=None, *, recurrent_input_state=None,
                                      command_buffer=None):
        """Run the FORWARD layers over the sequence and the BACKWARD layers over it reversed.

        Returns ``(forward, backward)``, both indexed by input time; with
        ``bidirectional_combine_mode`` ADD or CONCATENATE, ``(combined, None)``.
        """
        check_command_buffer(command_buffer)
        if recurrent_input_state is not None:
            raise ValueError("recurrent_input_state: a bidirectional sequence cannot start from a prior state "
                             "(MPS); run two unidirectional layers instead")
        err = self._bidirectional_chain_error()
        if err:
            raise ValueError(err)
        fwd_k, bwd_k = self._directions()
        fwd_cells = [self._cells[k] for k in fwd_k]
        bwd_cells = [self._cells[k] for k in bwd_k]
        combine = self._combine
        hf, hb = fwd_cells[-1].n_out, bwd_cells[-1].n_out
        if combine == BidirectionalCombineMode.ADD and hf != hb:
            raise ValueError(f"bidirectional_combine_mode: ADD needs both directions to have the same output "
                             f"channels; forward has {hf}, backward {hb}")
        if combine != BidirectionalCombineMode.NONE and destination_backward_matrices is not None:
            raise ValueError(f"destination_backward_matrices: must be None with bidirectional_combine_mode "
                             f"{combine.name}; the combined sequence goes to destination_forward_matrices")
        src = read_source(source_sequence, "source_sequence", self._cells[fwd_k[0]].n_in, staging=self._staging)
        rows, T = src.rows, len(src.rows)
        width = hf + hb if combine == BidirectionalCombineMode.CONCATENATE else hf
        seq = isinstance(source_sequence, MatrixSequence)
        dst = prepare_destination(destination_forward_matrices, "destination_forward_matrices", rows, width,
                                  src.data_type, sources=src.spans, as_sequence=seq, staging=self._staging)
        dst2 = None
        if combine == BidirectionalCombineMode.NONE:
            dst2 = prepare_destination(destination_backward_matrices, "destination_backward_matrices", rows, hb,
                                       src.data_type, sources=src.spans, as_sequence=seq, staging=self._staging,
                                       role="y2")
        scatter = tuple(name for name, d in (("y", dst), ("y2", dst2)) if d is not None and d.scatter is not None)
        key = ("bidirectional", rows, int(combine), src.data_type, dst.view.storage.data_type,
               dst2 and dst2.view.storage.data_type, scatter)

        def plan_for(gather):
            return self._plans.get(key + (gather,), lambda: plan_bidirectional(
                fwd_cells, bwd_cells, rows, int(combine), self._launch, gather, scatter))
        plan = plan_for(False) if src.gather is None else None
        values = dict(src.view.binds("x"))
        values["xr_base"] = src.view.base + (T - 1) * src.view.step
        values["xr_step"] = -src.view.step
        for d in (dst, dst2):
            if d is not None:
                values.update(d.scatter or {})
        values.update(dst.view.binds("y"))
        if dst2 is not None:
            values.update(dst2.view.binds("y2"))

        def work():
            for p in src.prelude:
                p()
            _run_plan(plan, plan_for, src, values)
            _finish(dst, [])
            if dst2 is not None:
                _finish(dst2, [])
        submit(work, command_buffer)
        return dst.result, (None if dst2 is None else dst2.result)

    def __repr__(self):
        kinds = {0: "single gate", 1: "GRU", 2: "LSTM"}
        layers = ", ".join(f"{kinds[c.kind]} {c.n_in}->{c.n_out}" for c in self._cells)
        return f"RNNMatrixInferenceLayer([{layers}])"


def _run_plan(plan, plan_for, src, values):
    """Run the call's plan: ``plan``, planned when the call was encoded, or for a source of separate
    device matrices ``plan_for(gather)`` once it is gathered (``Source.gather``): packed on the
    host, or by the copies of a plan of its own."""
    if src.gather is None:
        plan.run(values)
        return
    binds = src.gather()
    if binds is None:
        plan_for(False).run(values)
    else:
        plan_for(True).run({**values, **binds})


def _finish(dst, state_storages):
    """After the program: drop stale host copies, running the destination's postlude in between."""
    dst.view.storage.written()   # the program wrote it; a postlude may read it back
    for p in dst.postlude:
        p()
    for s in dst.storages + state_storages:
        s.written()


def _flag(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return value
