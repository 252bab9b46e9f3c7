"""The CPU's lanes recurrence with its input projection pipelined beside it, in one launch.

Where the batch is too small to give every CPU thread rows of its own, the projection runs apart
(``scheduler.recurrence.project_apart``), which leaves one thread's recurrence waiting for the
whole projection first (LSTM 256 b1 t50 on this project's Xeon VM: 350 µs projecting on both
threads, then 621 µs of recurrence on one). Here the two overlap:

* the *stepping* worker (the loop's first) runs every step of every batch row, as the serial lanes
  kernel does, a *chunk* of steps at a time: 4 steps first (projected before the first step can
  run: half a block's wait), then blocks of 8 (the projection's unit: one weight load, 8 rows);
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
from .sequence_lanes import STEP_BLOCK, lanes_name, project_span, row_group, rows_step, start_row


FIRST_CHUNK = 4   # steps of the first chunk, which the stepping worker projects alone before its first step


def chunk_count(steps):
    """Chunks of a run of ``steps`` steps: the first, then ceil((steps - FIRST_CHUNK) / STEP_BLOCK)
    (the numerator is never negative: a first chunk of at most STEP_BLOCK - 1 steps)."""
    return 1 + (steps - FIRST_CHUNK + STEP_BLOCK - 1) // STEP_BLOCK


chunk_count_ti = ti.func(chunk_count)


def pipeline_counters(steps):
    """Floats the counters take after the scratch region: the claim counter and a flag a chunk."""
    return 1 + chunk_count(steps)


@ti.func
def chunk_span(k, T):
    """(first step, end) of chunk k: FIRST_CHUNK steps, then STEP_BLOCK a chunk."""
    s0 = 0
    if k > 0:
        s0 = FIRST_CHUNK + (k - 1) * STEP_BLOCK
    return s0, ti.min(T, FIRST_CHUNK + k * STEP_BLOCK)


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
    s0, end = chunk_span(k, frame[F_STEPS])
    for r in range(frame[F_BATCH]):
        project_span(x, ws, lanes, frame, r, s0, end)
    ti.atomic_add(ws[c + 1 + k], 1.0)


@ti.func
def claim_and_project(x: ti.template(), ws: ti.template(), lanes: ti.template(), frame: ti.template(), c, chunks):
    """Claim the next unclaimed chunk and project it; False once every chunk is claimed."""
    k = ti.cast(ti.atomic_add(ws[c], 1.0), ti.i32)
    claimed = k < chunks
    if claimed:
        project_claimed(x, ws, lanes, frame, c, k)
    return claimed


def _pipelined_kernel(kind, standard, dense):
    def run(x: INPUT, ws: WORKSPACE, lanes: LANE_WEIGHTS, frame: FRAME, out: OUTPUT):
        ti.loop_config(serialize=True)
        for _ in range(1):   # a serial task of its own, done before the workers start
            c = counters_at(frame)
            for i in range(1 + chunk_count_ti(frame[F_STEPS])):   # (pipeline_counters)
                ws[c + i] = 0.0
        ti.loop_config(block_dim=ti.static(worker_block()))
        for w in range(ti.static(workers())):
            if w == 0 or w == CPU_TASK:   # the stepping worker and the helper
                T, B, H, _ = run_sizes(frame)
                c = counters_at(frame)
                chunks = chunk_count_ti(T)
                stepping = w == 0
                if stepping:
                    for r in range(B):
                        start_row(ws, frame, r, H)
                rows = row_group(frame)
                k = 0   # the chunk the stepping worker steps next
                # One loop for both workers, so that the projection's and the step's code are each
                # inlined once (Taichi inlines a function at every call: compile time). Each pass
                # the stepping worker steps chunk k once it is projected, waits while the helper
                # projects it, or else claims the next chunk; the helper only claims.
                while True:   # (calls in a while's condition broke Taichi's IR: the loop breaks instead)
                    act = 0   # 0: claim a chunk and project it; 1: step chunk k; 2: wait; 3: done
                    if stepping:
                        if k >= chunks:
                            act = 3
                        elif read_counter(ws, c + 1 + k) != 0.0:
                            act = 1
                        elif ti.cast(read_counter(ws, c), ti.i32) > k:
                            act = 2
                    if act == 3:
                        break
                    if act == 1:
                        s0, end = chunk_span(k, T)
                        for s in range(s0, end):
                            for g in range((B + rows - 1) // rows):
                                rows_step(kind, standard, dense, ws, lanes, frame, out, s, g * rows,
                                          ti.min(rows, B - g * rows))
                        k += 1
                    elif act == 0:
                        claimed = claim_and_project(x, ws, lanes, frame, c, chunks)
                        if not claimed and not stepping:
                            break
    run.__name__ = run.__qualname__ = f"{lanes_name(kind, standard, dense)}_pipelined"
    return ti.kernel(run)


@functools.lru_cache(maxsize=None)
def pipelined_kernel(kind, standard=True, dense=False):
    """The pipelined lanes kernel of a ``kind`` cell, for cells with the usual neurons or the others,
    for LSTMs with dense peepholes or the others (``sequence_lanes.lanes_kernel``; each compiled on
    first use)."""
    return _pipelined_kernel(kind, standard, dense)
