"""Planning a sequence run, once per (layer stack, sequence shape, options).

A plan owns what a run needs besides the user's data: one float32 workspace
per layer (projected inputs, the state history, scratch), one int32 frame per
layer (sizes, offsets, the row count of each processing step, whether the
run starts from zeros; see ``kernels/layout.py``), and the :class:`Program` of dispatches:

    per layer:  initial state -> workspace slot 0   (a copy; without one, the projection
                                                     writes zeros: no dispatch of its own)
                project_inputs                      (all T steps, one launch; on the CPU
                                                     the recurrence kernel projects as it goes)
                the recurrence                      (one launch, or one per step)
    then:       state history -> returned states    (encode_sequence, if asked)
                last layer's history -> destination (bidirectional: copy, ADD or CONCATENATE;
                                                     encode_sequence's last layer writes it itself)

A backward stack (bidirectional) runs in processing order T-1 .. 0: its first
layer reads x with a negative step stride, its frames list the row counts in
that order, and its history is read back in time order with a negative stride,
so the kernels never need to know the direction.
"""
from collections import OrderedDict

import numpy as np

from ..backend import current_arch
from ..kernels import layout as L
from ..kernels.knobs import PLANNING_KNOBS, knob_settings
from ..kernels.lanes import LANES, lane_terms
from ..kernels.quads import QUAD
from ..kernels.sequence_lanes_pipelined import pipeline_counters
from ..kernels.sequence_persistent import term_quads
from ..kernels.sequence_copy import SEQ_ADD, SEQ_CONCAT, SEQ_COPY, block_kernel, copy_kernel
from .program import Program, Slot
from .recurrence import (choose_recurrence, emit_layer, emit_paired, lane_row_group, lanes_pipelined, lanes_serial,
                         lanes_split_row, pair_directions, project_apart, split_projection, split_workspace)

# Tests set this: workspaces start as NaN, so reading memory no kernel wrote shows up.
POISON_WORKSPACES = False


class _LayerRun:
    def __init__(self, cell, steps, batch, proc_rows, has_initial_state):
        import taichi as ti
        self.recurrence = choose_recurrence(current_arch(), cell, steps, batch)
        xw, h, c, scratch, slot, size = cell.workspace_layout(steps, batch, terms_apart=self.recurrence == "lanes")
        if self.recurrence == "split":
            size += split_workspace(cell, steps, batch, split_projection(cell, steps, batch))
        if self.recurrence == "lanes":
            size += pipeline_counters(steps)   # (sequence_lanes_pipelined's, past the scratch region)
        params = L.F_ROWS + steps   # the float parameters, as their bits, after the rows (frame.param)
        frame = np.zeros(params + len(cell.host_prm), np.int32)
        frame[: L.F_HEADER] = cell.header
        frame[L.F_P_BIAS: L.F_P_PNORM + 1] += params
        frame[params:] = cell.host_prm.view(np.int32)
        frame[L.F_STEPS] = steps
        frame[L.F_BATCH] = batch
        frame[L.F_WS_XW] = xw
        frame[L.F_WS_H] = h
        frame[L.F_WS_C] = c
        frame[L.F_WS_SCRATCH] = scratch
        frame[L.F_SLOT] = slot
        frame[L.F_ROWS: params] = proc_rows
        frame[L.F_ZERO_STATE] = 0 if has_initial_state else 1
        self.has_initial_state = has_initial_state
        self.cell = cell
        self.projected_apart = project_apart(self.recurrence, cell, steps, batch)
        # the pipelined kernel (emit_layer's) steps every row on one worker, as the serial kernel does
        pipelined = self.recurrence == "lanes" and self.projected_apart and lanes_pipelined(cell, batch)
        group = 1   # rows a lanes worker steps together
        if self.recurrence == "lanes":
            group = lane_row_group(pipelined or lanes_serial(cell, steps, batch), batch)
        split = pipelined and lanes_split_row(cell, batch)
        frame[L.F_LANE_RUN] = ((L.LANE_PROJECTED if self.projected_apart else 0) | (L.LANE_PAIRS if group == 2 else 0)
                               | (L.LANE_FOURS if group == 4 else 0) | (L.LANE_SPLIT if split else 0))
        frame[L.F_OUT_BASE] = -1   # no output view until bind_views gives one
        self.h = h
        self.c = c
        self.slot = slot
        self.ws = ti.ndarray(ti.f32, (size,))
        self.terms = None   # the lanes kernels' input terms (kernels/lanes.py: term_at), in place of ws's
        if self.recurrence == "lanes":
            self.terms = ti.Vector.ndarray(LANES, ti.f32, (lane_terms(steps, batch, cell.gates, cell.n_out),))
        if POISON_WORKSPACES:
            self.ws.fill(float("nan"))
            if self.terms is not None:
                self.terms.fill(float("nan"))
        self.host_frame = frame
        self.frame = ti.ndarray(ti.i32, frame.shape)   # filled by bind_views, once the views are in
        self._views = None

    def term_quads(self, steps, batch):
        """The persistent kernel's copy of its terms, four floats a quad (``term_quads``).
        Zero-filled, not poisoned: a row's quads past H are never written, and the weights that
        meet them are zeros (0 x NaN is NaN)."""
        import taichi as ti
        n = term_quads(self.cell.kind, self.cell.n_out, batch, steps)
        quads = ti.Vector.ndarray(QUAD, ti.f32, (n,))
        quads.fill(0.0)
        return quads

    def bind_views(self, prog, x, output):
        """Put the layer's input and output views, (array, base, step stride, row stride) each,
        into its frame: fixed ints now, a call's values (Slots) before each run of ``prog``, which
        writes the frame only when they change. Returns (input array, output array), the kernels'
        arguments: as six int arguments the views cost Taichi's launcher 4-6 µs a dispatch (H200)."""
        views = (tuple(x[1:]), tuple(output[1:]))
        assert self._views in (None, views), "a layer run has one input and one output view"
        self._views = views
        fields = []
        for first, view in zip((L.F_X_BASE, L.F_OUT_BASE), views):
            for i, v in enumerate(view):
                if isinstance(v, Slot):
                    fields.append((first + i, v.name))
                else:
                    self.host_frame[first + i] = v
        self.frame.from_numpy(self.host_frame)
        if fields:
            prog.bind_frame(self.frame, self.host_frame, fields)
        return x[0], output[0]


class StackRun:
    """The layers of one direction, run one after another in one processing order."""

    def __init__(self, cells, rows, reverse, time_rows, initial_state, batch=None):
        """``initial_state[k]``: whether layer k's h0/c0 come from the caller (slots)."""
        self.steps = T = len(rows)
        self.batch = batch or rows[0]
        self.reverse = reverse
        self.time_rows = time_rows
        proc_rows = list(rows[::-1] if reverse else rows)
        self.layers = [_LayerRun(cell, T, self.batch, proc_rows, given)
                       for cell, given in zip(cells, initial_state)]

    @property
    def out_channels(self):
        return self.layers[-1].cell.n_out

    def emit(self, prog, x_slots, output=None):
        """Dispatches that run the stack; ``output``, a destination view the last layer writes its
        outputs to as it goes (in processing order, so forward stacks only)."""
        for k in range(len(self.layers)):
            self.emit_states_in(prog, k)
            emit_layer(prog, self.layers[k].recurrence, self.layers[k], self.steps, self.batch,
                       *self.views(k, x_slots, output))

    def emit_states_in(self, prog, k):
        """Copies of layer k's initial state (from the caller's slots) into its workspace, if given."""
        lr, B = self.layers[k], self.batch
        cell, ws, H = lr.cell, lr.ws, lr.cell.n_out
        for what, offset in (("h0", lr.h), ("c0", lr.c)):
            if lr.has_initial_state and (what == "h0" or cell.is_lstm):
                src = (Slot(f"{what}_{k}"), Slot(f"{what}_{k}_base"), 0, Slot(f"{what}_{k}_row"))
                prog.add(copy_kernel(), ws, offset, 0, H, *src, ws, 0, 0, 0, SEQ_COPY, H, 0, 1, B,
                         self.time_rows, -1)

    def views(self, k, x_slots, output=None):
        """(input view, output view) of layer k: the stack's input or the layer below's history;
        ``output`` for the last layer where given, else none (a negative base)."""
        if k == 0:
            x = x_slots
        else:
            prev = self.layers[k - 1]
            x = (prev.ws, prev.h + prev.slot, prev.slot, prev.cell.n_out)
        last = k == len(self.layers) - 1
        return x, (output if last and output else (self.layers[k].ws, -1, 0, 0))

    def emit_states(self, prog, store_all):
        """Copy every layer's last (or every) state into the ``hs_k``/``cs_k`` slots, (T or 1, B, H)."""
        T, B = self.steps, self.batch
        for k, lr in enumerate(self.layers):
            H = lr.cell.n_out
            for name, offset in (("hs", lr.h), ("cs", lr.c)):
                if name == "cs" and not lr.cell.is_lstm:
                    continue
                if store_all:
                    src, n = (lr.ws, offset + lr.slot, lr.slot, H), T
                else:
                    src, n = (lr.ws, offset + T * lr.slot, 0, H), 1
                prog.add(copy_kernel(), Slot(f"{name}_{k}"), 0, B * H, H, *src, lr.ws, 0, 0, 0,
                         SEQ_COPY, H, 0, n, B, self.time_rows, -1)

    def output_view(self):
        """(ws, base, step, row) of the last layer's outputs, indexed by input time."""
        lr = self.layers[-1]
        if self.reverse:  # time t was processing step T-1-t, stored in history slot T-t
            return lr.ws, lr.h + self.steps * lr.slot, -lr.slot, lr.cell.n_out
        return lr.ws, lr.h + lr.slot, lr.slot, lr.cell.n_out


def _dest(prefix):
    return tuple(Slot(prefix + s) for s in ("", "_base", "_step", "_row"))


class Plan:
    """A program plus its launch strategy, prepared on first run."""

    def __init__(self, program, strategy, keep):
        self.program = program
        self.strategy = strategy
        self._keep = keep  # the stack runs whose arrays the program uses
        self._runner = None

    @property
    def recurrences(self):
        """The recurrence kernel of each layer run (for reports)."""
        return [lr.recurrence for part in self._keep if isinstance(part, StackRun) for lr in part.layers]

    def run(self, values):
        if self._runner is None:
            self._runner = self.strategy.prepare(self.program, values)
        self.program.write_frames(values)
        self._runner(values)


def _time_rows(rows):
    import taichi as ti
    t = ti.ndarray(ti.i32, (len(rows),))
    t.from_numpy(np.asarray(rows, np.int32))
    return t


def _emit_step_copies(prog, staged, rows, channels, into_staged):
    """Copies between a call's staged sequence ``staged`` (base 0, rows[0] rows a step) and its
    separate per-step matrices (slots ``{staged}d{t}``, ``_base``, ``_row``), a dispatch a step:
    into the staged sequence for a source (``into_staged``), out of it for a destination. Inside
    the plan's graph each copy costs ~8 µs on the CPU, where one launched from Python cost ~60."""
    step = rows[0] * channels
    for t, r in enumerate(rows):
        m = f"{staged}d{t}"
        staged_rows = (Slot(staged), t * step, channels)
        matrix_rows = (Slot(m), Slot(m + "_base"), Slot(m + "_row"))
        dst, src = (staged_rows, matrix_rows) if into_staged else (matrix_rows, staged_rows)
        prog.add(block_kernel(), *dst, *src, r, channels)


def plan_sequence(cells, rows, batch, initial_state, states, strategy, gather=False, scatter=False):
    """encode_sequence: all layers forward over ``batch`` sequences (>= rows[0]).

    ``states`` is None, "last" or "all". ``gather``: the source comes from separate device
    matrices, copied in first; ``scatter``: the destination is separate device matrices, copied to
    last (``sequences.step_binds`` names their slots)."""
    time_rows = _time_rows(rows)
    run = StackRun(cells, rows, False, time_rows, initial_state, batch)
    prog = Program()
    if gather:
        _emit_step_copies(prog, "x", rows, cells[0].n_in, True)
    run.emit(prog, _dest("x"), output=_dest("y"))   # the last layer writes y itself: no copy dispatch
    if states:
        run.emit_states(prog, states == "all")
    if scatter:
        _emit_step_copies(prog, "y", rows, cells[-1].n_out, False)
    return Plan(prog, strategy, (run, time_rows))


def plan_bidirectional(fwd_cells, bwd_cells, rows, combine, strategy, gather=False, scatter=()):
    """encode_bidirectional_sequence: a forward stack and a backward stack, then combine.

    ``combine``: 0 NONE (forward to ``y``, backward to ``y2``), 1 ADD, 2 CONCATENATE (to ``y``).
    ``gather`` and ``scatter`` (the destinations' names, "y" or "y2") as for ``plan_sequence``.
    """
    time_rows = _time_rows(rows)
    fwd = StackRun(fwd_cells, rows, False, time_rows, [False] * len(fwd_cells))
    bwd = StackRun(bwd_cells, rows, True, time_rows, [False] * len(bwd_cells))
    prog = Program()
    if gather:
        _emit_step_copies(prog, "x", rows, fwd_cells[0].n_in, True)
    x_fwd, x_bwd = _dest("x"), (Slot("x"), Slot("xr_base"), Slot("xr_step"), Slot("x_row"))
    # level by level: a level's two directions depend only on the level below in their own direction,
    # so where both run the spread kernel they can share one launch, each on half the SMs
    # (the two stacks may differ in depth and cells: MPS takes each descriptor's direction)
    for k in range(max(len(fwd.layers), len(bwd.layers))):
        here = [(run, x) for run, x in ((fwd, x_fwd), (bwd, x_bwd)) if k < len(run.layers)]
        for run, _ in here:
            run.emit_states_in(prog, k)
        views = [run.views(k, x) for run, x in here]
        layers = [run.layers[k] for run, _ in here]
        if len(here) == 2 and pair_directions(current_arch(), *layers, fwd.batch):
            emit_paired(prog, layers, fwd.steps, fwd.batch, *zip(*views))
        else:
            for lr, (x, out) in zip(layers, views):
                emit_layer(prog, lr.recurrence, lr, fwd.steps, fwd.batch, x, out)
    f, b = fwd.output_view(), bwd.output_view()
    T, B = fwd.steps, fwd.batch
    copy = copy_kernel()
    if combine == 0:
        prog.add(copy, *_dest("y"), *f, f[0], 0, 0, 0, SEQ_COPY, fwd.out_channels, 0, T, B, time_rows, 0)
        prog.add(copy, *_dest("y2"), *b, b[0], 0, 0, 0, SEQ_COPY, bwd.out_channels, 0, T, B, time_rows, 0)
    elif combine == 1:
        prog.add(copy, *_dest("y"), *f, *b, SEQ_ADD, fwd.out_channels, 0, T, B, time_rows, 0)
    else:
        prog.add(copy, *_dest("y"), *f, *b, SEQ_CONCAT, fwd.out_channels, bwd.out_channels, T, B,
                 time_rows, 0)
    widths = {"y": fwd.out_channels + (bwd.out_channels if combine == 2 else 0), "y2": bwd.out_channels}
    for prefix in scatter:
        _emit_step_copies(prog, prefix, rows, widths[prefix], False)
    return Plan(prog, strategy, (fwd, bwd, time_rows))


class PlanCache:
    """Plans of one layer by key (and the planning knobs' values), least recently used dropped
    beyond ``size``."""

    def __init__(self, size=16):
        self._plans = OrderedDict()
        self._size = size

    def get(self, key, build):
        key = (key, knob_settings(PLANNING_KNOBS))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = build()
            while len(self._plans) > self._size:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan
