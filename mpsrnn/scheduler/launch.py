"""Launch strategies: how a :class:`Program` is executed.

* ``eager``: launch each dispatch from Python. Simple, every arch; costs one
  Python-side kernel launch per dispatch (measured: ~20 µs + ~10 µs per ndarray
  argument on the CPU backend, 34-62 µs on CUDA).
* ``graph``: capture the whole program once as a ``ti.graph`` and replay it with
  the per-call arguments; a dispatch then costs the graph runtime's overhead
  instead of a Python launch (CPU, CUDA, Vulkan; Metal via Taichi's graph
  runtime where supported).

The strategy is chosen per arch by :func:`default_launch`; ``MPSRNN_LAUNCH``
(``eager`` or ``graph``) overrides it, which is how the benchmarks compare them.
Measured (bench/step_time.py): on this project's 2-core CPU a graph-launched
LSTM step costs 100 µs against 179 µs eager (hidden 64, batch 2); on the H100,
hidden 512 batch 16, 274 vs 277 µs (CUDA) and 289 vs 295 µs (Vulkan), where
the step kernel itself dominates. So graphs are the default; Metal keeps eager
launches until Taichi's graph runtime has been checked there.
"""
from ..kernels.knobs import knob


class EagerLaunch:
    name = "eager"

    def prepare(self, program, sample_values):
        dispatches = program.dispatches

        def run(values):
            for d in dispatches:
                d.kernel(*d.bound_args(values))
        return run


class GraphLaunch:
    name = "graph"

    def prepare(self, program, sample_values):
        import taichi as ti
        symbols = {}   # graph argument name -> ti.graph.Arg
        fixed = {}     # graph argument name -> value bound at every run
        builder = ti.graph.GraphBuilder()
        for d in program.dispatches:
            slot_at = dict(d.slots)
            sym_args = []
            for i, a in enumerate(d.args):
                if i in slot_at:
                    name, value = slot_at[i], sample_values[slot_at[i]]
                elif isinstance(a, int):
                    # one graph argument per distinct value: a per-step program's thousands of step
                    # numbers and sizes would otherwise each be bound, in Python, at every run
                    name, value = f"int_{a}" if a >= 0 else f"int_m{-a}", a
                else:
                    name, value = f"n{id(a)}", a
                if name not in symbols:
                    symbols[name] = _graph_arg(ti, name, value)
                    if i not in slot_at:
                        fixed[name] = value
                sym_args.append(symbols[name])
            builder.dispatch(d.kernel, *sym_args)
        graph = builder.compile()

        args = dict(fixed)   # the per-call values (slots) are written over their own entries each run
        slots = [name for name in symbols if name not in fixed]   # (a call's values the frames take are not)

        def run(values):
            for name in slots:
                args[name] = values[name]
            graph.run(args)
        return run


def _graph_arg(ti, name, value):
    if isinstance(value, int):
        return ti.graph.Arg(ti.graph.ArgKind.SCALAR, name, ti.i32)
    dtype = ti.types.vector(value.n, value.dtype) if isinstance(value, ti.lang.matrix.VectorNdarray) else value.dtype
    return ti.graph.Arg(ti.graph.ArgKind.NDARRAY, name, dtype, ndim=len(value.shape))


STRATEGIES = {"eager": EagerLaunch, "graph": GraphLaunch}


def default_launch(arch):
    """The launch strategy for ``arch`` (``MPSRNN_LAUNCH`` overrides)."""
    name = knob("MPSRNN_LAUNCH", tuple(STRATEGIES))
    if name:
        return STRATEGIES[name]()
    return EagerLaunch() if arch == "metal" else GraphLaunch()
