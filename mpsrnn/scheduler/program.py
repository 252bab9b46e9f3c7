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


class Program:
    """An ordered list of dispatches."""

    def __init__(self):
        self.dispatches = []

    def add(self, kernel, *args):
        self.dispatches.append(Dispatch(kernel, *args))

    def slot_names(self):
        return {name for d in self.dispatches for _, name in d.slots}

    def __len__(self):
        return len(self.dispatches)
