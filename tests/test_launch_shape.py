"""Every kernel of a planned run is one device task (none has a serial head or tail).

Taichi turns a statement before a kernel's parallel loop, or a loop bound known
only at run time, into an extra serial task: a second device launch per
dispatch, 9-15 µs on the H100 (bench/probes/launch.py). The kernels avoid it
by looping over the fixed workers of kernels/grid.py. This test runs the
planned paths of this arch's CPU backend in a fresh process with Taichi's
kernel profiler on (it must be set when Taichi starts) and checks the task
names it records.
"""
import json
import subprocess
import sys
import textwrap

import pytest

from builders import child_env

CHILD = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import taichi as ti
    start = ti.init
    ti.init = lambda *a, **k: start(*a, **{**k, "kernel_profiler": True})
    sys.path.insert(0, os.environ["MPSRNN_TESTS"])
    import mpsrnn as m
    from builders import descriptor, sequence
    from mpsrnn.scheduler import recurrence
    m.init("cpu")
    rng = np.random.default_rng(int(os.environ.get("MPSRNN_TEST_SEED", "5")))
    report = {}

    def record(name, run):
        run()                        # compiles and plans
        ti.sync()
        ti.profiler.clear_kernel_profiler_info()
        run()
        ti.sync()
        prog = ti.lang.impl.get_runtime().prog
        prog.sync_kernel_profiler()
        prog.update_kernel_profiler()
        # Taichi's own copy kernels (the NumPy sources are uploaded per call) are not mpsrnn's
        names = [r.name for r in prog.get_kernel_profiler_records()
                 if not r.name.startswith(("ext_arr_to_ndarray", "ndarray_to_ext_arr"))]
        report[name] = names

    for rec in ("lanes", "rows", "step"):
        os.environ["MPSRNN_RECURRENCE"] = rec
        for kind, opts in (("lstm", {"peephole": "dense"}), ("gru", {}), ("single", {})):
            d = descriptor(kind, rng, 5, 6, **opts)
            layer = m.RNNMatrixInferenceLayer(d)
            xs = sequence(rng, [3, 2, 2], 5)
            record(f"{rec}-{kind}", lambda: layer.encode_sequence(xs))
            states = []
            layer.encode_sequence(xs, recurrent_output_states=states)
            layer.store_all_intermediate_states = True
            record(f"{rec}-{kind}-states", lambda: layer.encode_sequence(
                xs, recurrent_input_state=states[0], recurrent_output_states=[]))
        ds = [descriptor("lstm", rng, 5, 6), descriptor("gru", rng, 5, 6,
              layer_sequence_direction=m.SequenceDirection.BACKWARD)]
        layer = m.RNNMatrixInferenceLayer(ds)
        layer.bidirectional_combine_mode = m.BidirectionalCombineMode.ADD
        xs = sequence(rng, [2, 2, 1], 5)
        record(f"{rec}-bidirectional", lambda: layer.encode_bidirectional_sequence(xs))
    os.environ["MPSRNN_RECURRENCE"] = "lanes"
    recurrence.LANES_SERIAL_FLOPS = 0.0   # a batch of rows on every thread
    layer = m.RNNMatrixInferenceLayer(descriptor("lstm", rng, 5, 6))
    xs = sequence(rng, [3, 2, 2], 5)
    record("lanes-threads-lstm", lambda: layer.encode_sequence(xs))
    os.environ["MPSRNN_PROJECTION"] = "apart"
    layer = m.RNNMatrixInferenceLayer(descriptor("lstm", rng, 5, 6))
    xs = sequence(rng, [3, 2, 2], 5)
    record("lanes-apart-lstm", lambda: layer.encode_sequence(xs))
    print("REPORT" + json.dumps(report))
""")


@pytest.fixture(scope="module")
def task_names():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=child_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("REPORT")][-1]
    return json.loads(line[len("REPORT"):])


def test_every_kernel_is_one_range_task(task_names):
    assert len(task_names) == 23
    for run, names in task_names.items():
        assert names, run
        # one task per kernel: its parallel loop, or the serial loop of a serial kernel (the lanes
        # kernel's and the copy's forms for small work on the CPU)
        extra = [n for n in names if not (n.endswith("_range_for") or ("_serial_c" in n and n.endswith("_serial")))]
        assert not extra, f"{run}: tasks that are not the kernel's one loop: {extra}"


def test_a_plain_run_is_two_launches(task_names):
    """Zero initial states are written by the projection and the outputs by the recurrence: a
    single-layer run without states is the projection and the recurrence, nothing else."""
    names = task_names["rows-lstm"]
    assert [n.split("_c")[0] for n in names] == ["project_inputs", "lstm_rows"], names
    # the CPU's lanes kernel projects the inputs itself: one launch, run on the calling thread for
    # a layer this small, on every thread when told (this LSTM's peepholes are dense: its kernels'
    # own form)
    names = task_names["lanes-lstm"]
    assert [n.split("_c")[0] for n in names] == ["lstm_lanes_dense_serial"], names
    names = task_names["lanes-threads-lstm"]
    assert [n.split("_c")[0] for n in names] == ["lstm_lanes_dense"], names
    names = task_names["lanes-apart-lstm"]
    assert [n.split("_c")[0] for n in names] == ["project_inputs_lanes", "lstm_lanes_dense"], names
    # the step path: one task per step (three steps), two for the GRU's two phases and the
    # dense-peephole LSTM's output pass
    assert sum("single_gate_step" in n for n in task_names["step-single"]) == 3
    assert sum("gru_step" in n for n in task_names["step-gru"]) == 6
    assert sum("lstm_step" in n for n in task_names["step-lstm"]) == 3
    assert sum("lstm_peephole_output_step" in n for n in task_names["step-lstm"]) == 3
