"""A launch program: the kernel dispatches that run a planned sequence.

The planner writes down *what* runs, as a flat list of :class:`Dispatch`es whose
arguments are either fixed (the plan's workspaces, frames, weights, sizes) or a
:class:`Slot`, a per-call argument (the user's buffers and their offsets) filled
in from a dict at run time. *How* it runs (a Python loop, a captured graph, later
a persistent kernel) is the launch strategy's business (``launch.py``), so
strategies can be swapped without touching the planner or the layer API.
"""


class Slot:
    """A per-call argument of a program, filled in by name when it runs."""
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Slot({self.name!r})"


class Dispatch:
    """One kernel launch: ``kernel(*args)`` with :class:`Slot`s filled in per call."""
    __slots__ = ("kernel", "args", "slots")

    def __init__(self, kernel, *args):
        self.kernel = kernel
        self.args = list(args)
        self.slots = [(i, a.name) for i, a in enumerate(args) if isinstance(a, Slot)]

    def bound_args(self, values):
        args = self.args
        if self.slots:
            args = list(args)
            for i, name in self.slots:
                args[i] = values[name]
        return args


class FrameInts:
    """Entries of a layer's frame filled in from a call's values (its input and output views):
    written to the device before the dispatches run, and only where they differ from what the
    device holds, so a run with the same buffers costs nothing (on a GPU the write is a copy and a
    sync)."""
    __slots__ = ("frame", "host", "fields")

    def __init__(self, frame, host, fields):
        self.frame = frame      # the ndarray the kernels read
        self.host = host        # its numpy copy, always what the device holds
        self.fields = fields    # [(entry, slot name)]

    def write(self, values):
        changed = False
        for entry, name in self.fields:
            if self.host[entry] != values[name]:
                self.host[entry] = values[name]
                changed = True
        if changed:
            self.frame.from_numpy(self.host)


class Program:
    """An ordered list of dispatches, and the frame entries a call fills in before they run."""

    def __init__(self):
        self.dispatches = []
        self.frame_ints = []

    def add(self, kernel, *args):
        self.dispatches.append(Dispatch(kernel, *args))

    def bind_frame(self, frame, host, fields):
        """Fill ``frame``'s ``fields``, [(entry, slot name)], from each call's values."""
        self.frame_ints.append(FrameInts(frame, host, fields))

    def write_frames(self, values):
        for f in self.frame_ints:
            f.write(values)

    def __len__(self):
        return len(self.dispatches)
