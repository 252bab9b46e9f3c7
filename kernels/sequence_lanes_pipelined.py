"""The CPU's lanes recurrence with its input projection pipelined beside it, in one launch.

Where the batch is too small to give every CPU thread rows of its own, the projection runs apart
(``scheduler.recurrence.project_apart``), which leaves one thread's recurrence waiting for the
whole projection first (LSTM 256 b1 t50 on this project's Xeon VM: 350 µs projecting on both
threads, then 621 µs of recurrence on one). Here the two overlap:

* the *stepping* worker (the loop's first) runs every step of every batch row, as the serial lanes
  kernel does, a block of 8 steps (a *chunk*) at a time;
* the *helper* (the first worker of the next CPU task, so another pool thread) projects chunks
  ahead of it, in order, claiming each from a counter in the workspace.

Before a chunk, the stepping worker checks its done flag. If no one has claimed the chunk yet it
claims the next one and projects it itself, so a helper that Taichi's pool starts late (on this
VM the second thread wakes ~200 µs after the first: ``bench/probes/cpu_wake.py``) or never (one
thread) costs nothing but the overlap. It waits only for a chunk the helper is projecting now.
Whoever claims a chunk projects it, so every chunk is projected once.

The counters (the claim counter, then a done flag a chunk) are floats after the workspace's scratch
region, reset by a serial task before the workers start. Every read or write of them is an atomic
add (of 0 to read), which LLVM neither hoists out of the wait loop nor reorders with the chunk's
stores. Arguments: those of ``sequence_lanes``' kernels.
"""
import functools

import taichi as ti

from .frame import FRAME, INPUT, OUTPUT, WORKSPACE, run_sizes
from .grid import CPU_TASK, worker_block, workers
from .lanes import LANE_WEIGHTS
from .layout import F_BATCH, F_STEPS, F_WS_SCRATCH
from .sequence_lanes import STEP_BLOCK, project_steps, row_group, rows_step, start_row


def pipeline_counters(steps):
    """Floats the counters take after the scratch region: the claim counter and a flag a chunk."""
    return 1 + (steps + STEP_BLOCK - 1) // STEP_BLOCK


@ti.func
def counters_at(frame: ti.template()):
    """Where the counters start: past the scratch region (3·B·H floats, ``Cell.workspace_layout``)."""
    _, B, H, _ = run_sizes(frame)
    return frame[F_WS_SCRATCH] + 3 * B * H


@ti.func
def read_counter(ws: ti.template(), i):
    return ti.atomic_add(ws[i], 0.0)


@ti.func
def project_claimed(x: ti.template(), ws: ti.template(), lanes: ti.template(), frame: ti.template(), c, k):
    """Chunk k's input terms for every batch row, then its done flag."""
    for r in range(frame[F_BATCH]):
        project_steps(x, ws, lanes, frame, r, k * STEP_BLOCK)
    ti.atomic_add(ws[c + 1 + k], 1.0)


@ti.func
def claim_and_project(x: ti.template(), ws: ti.template(), lanes: ti.template(), frame: ti.template(), c, chunks):
    """Claim the next unclaimed chunk and project it; False once every chunk is claimed."""
    k = ti.cast(ti.atomic_add(ws[c], 1.0), ti.i32)
    claimed = k < chunks
    if claimed:
        project_claimed(x, ws, lanes, frame, c, k)
    return claimed


@ti.func
def wait_for_chunk(x: ti.template(), ws: ti.template(), lanes: ti.template(), frame: ti.template(), c, chunks, k):
    """Return once chunk k is projected: projecting it (and any chunk claimed with it) while it is
    unclaimed, spinning while the helper has it."""
    while True:   # (calls in a while's condition broke Taichi's IR: the loop breaks instead)
        if read_counter(ws, c + 1 + k) != 0.0:
            break
        if ti.cast(read_counter(ws, c), ti.i32) <= k:
            claim_and_project(x, ws, lanes, frame, c, chunks)


def _pipelined_kernel(kind):
    def run(x: INPUT, ws: WORKSPACE, lanes: LANE_WEIGHTS, frame: FRAME, out: OUTPUT):
        ti.loop_config(serialize=True)
        for _ in range(1):   # a serial task of its own, done before the workers start
            c = counters_at(frame)
            for i in range(1 + (frame[F_STEPS] + STEP_BLOCK - 1) // STEP_BLOCK):
                ws[c + i] = 0.0
        ti.loop_config(block_dim=ti.static(worker_block()))
        for w in range(ti.static(workers())):
            T, B, H, _ = run_sizes(frame)
            c = counters_at(frame)
            chunks = (T + STEP_BLOCK - 1) // STEP_BLOCK
            if w == 0:
                for r in range(B):
                    start_row(ws, frame, r, H)
                rows = row_group(frame)
                for k in range(chunks):
                    wait_for_chunk(x, ws, lanes, frame, c, chunks, k)
                    for s in range(k * STEP_BLOCK, ti.min(k * STEP_BLOCK + STEP_BLOCK, T)):
                        for g in range((B + rows - 1) // rows):
                            rows_step(kind, ws, lanes, frame, out, s, g * rows, ti.min(rows, B - g * rows))
            elif w == CPU_TASK:
                while True:
                    if not claim_and_project(x, ws, lanes, frame, c, chunks):
                        break
    run.__name__ = run.__qualname__ = f"{('single_gate', 'gru', 'lstm')[kind]}_lanes_pipelined"
    return ti.kernel(run)


@functools.lru_cache(maxsize=None)
def pipelined_kernel(kind):
    """The pipelined lanes kernel of a ``kind`` cell (each compiled on first use)."""
    return _pipelined_kernel(kind)
