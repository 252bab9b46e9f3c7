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

**A split row** (the run's LANE_SPLIT: batch 1 or a pair, a cell whose unit blocks need nothing of
each other within a step, ``sequence_lanes.splits_row``). Once every chunk is claimed, the helper
steps the second half of the unit blocks beside the stepping worker, so each thread reads half of
U, which stays in its core's L2 (LSTM 256: 0.5 MiB a half, where the whole 1 MiB streamed from L3
every step); a pair shares each load of it (``row_blocks_step``). A step at which a row is absent
runs whole, on the stepping worker. The stepping worker steps a step's first half, then claims the second unless the
helper has (``atomic_max`` on the last claimed step returns the old value: the claim is whoever
moved it); it waits for a half the helper has claimed, then counts the step done. The helper takes
the second half of the next step once the step before is done and its chunk projected (and, for
the first, once the stepping worker has written the rows' zero start: a helper that Taichi's pool
starts before the stepping worker projects every chunk and could come to step 0 first). The
helper's waits give up after ``patience`` polls, and it then leaves the rest to the stepping worker
(a helper woken on the stepping worker's core would otherwise spin where it should step). The
stepping worker waits for a half the helper has claimed however long it takes: a pair's half adds
its products into the input terms in place, so no half may run twice.
This VM (AMD EPYC, 1 MiB L2 a core), same process, µs a step, split / not: LSTM 256 b1 t50
7.5-8.5 / 9.3-9.9; ratio to PyTorch, LSTM 256 b2 0.67 / 0.85 (the pair not split: a row a thread,
the projection inside), LSTM 512 b2 0.68 / 1.61, LSTM 128 b2 0.75 / 0.82.

The counters (the claim counter, a done flag a chunk, then the split row's three) are floats after
the workspace's scratch region, reset by a serial task before the workers start. Every read or
write of them is an atomic (an add of 0 to read), which LLVM neither hoists out of a wait loop nor
reorders with the stores before it. Arguments: those of ``sequence_lanes``' kernels.
"""
import functools

import taichi as ti

from .frame import FRAME, INPUT, OUTPUT, WORKSPACE, run_sizes
from .grid import CPU_TASK, worker_block, workers
from .lanes import LANE_TERMS, LANE_WEIGHTS, lane_blocks
from .layout import F_BATCH, F_LANE_RUN, F_ROWS, F_STEPS, F_WS_SCRATCH, LANE_SPLIT
from .sequence_lanes import PAIR, STEP_BLOCK, lanes_name, project_span, row_blocks_step, splits_row, start_row


FIRST_CHUNK = 4   # steps of the first chunk, which the stepping worker projects alone before its first step


def chunk_count(steps):
    """Chunks of a run of ``steps`` steps: the first, then ceil((steps - FIRST_CHUNK) / STEP_BLOCK)
    (the numerator is never negative: a first chunk of at most STEP_BLOCK - 1 steps)."""
    return 1 + (steps - FIRST_CHUNK + STEP_BLOCK - 1) // STEP_BLOCK


chunk_count_ti = ti.func(chunk_count)


SPLIT_COUNTERS = 3   # a split row's: progress (start, steps done), second halves claimed, second halves done


def pipeline_counters(steps):
    """Floats the counters take after the scratch region: the claim counter, a flag a chunk, then
    the split row's."""
    return 1 + chunk_count(steps) + SPLIT_COUNTERS


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
def project_claimed(x: ti.template(), ws: ti.template(), lanes: ti.template(), terms: ti.template(),
                    frame: ti.template(), c, k):
    """Chunk k's input terms for every batch row, then its done flag."""
    s0, end = chunk_span(k, frame[F_STEPS])
    for r in range(frame[F_BATCH]):
        project_span(x, terms, lanes, frame, r, s0, end)
    ti.atomic_add(ws[c + 1 + k], 1.0)


@ti.func
def claim_and_project(x: ti.template(), ws: ti.template(), lanes: ti.template(), terms: ti.template(),
                      frame: ti.template(), c, chunks):
    """Claim the next unclaimed chunk and project it; False once every chunk is claimed."""
    k = ti.cast(ti.atomic_add(ws[c], 1.0), ti.i32)
    claimed = k < chunks
    if claimed:
        project_claimed(x, ws, lanes, terms, frame, c, k)
    return claimed


@ti.func
def chunk_of(s):
    """The chunk that holds step s (``chunk_span``'s inverse)."""
    k = 0
    if s >= FIRST_CHUNK:
        k = 1 + (s - FIRST_CHUNK) // STEP_BLOCK
    return k


@ti.func
def wait_for(ws: ti.template(), i, value, polls):
    """Poll counter ws[i] until it reaches ``value``, at most ``polls`` times; whether it did."""
    reached = False
    n = 0
    while True:
        if read_counter(ws, i) >= value:
            reached = True
            break
        if n >= polls:
            break
        n += 1
    return reached


NO_END = 2147483647   # polls: a wait that never gives up

# What a worker does on a pass of the loop (``act``)
PROJECT, STEP, WAIT, DONE, BLOCKS, NOTHING = 0, 1, 2, 3, 4, 5


def _pipelined_kernel(kind, standard, dense):
    splits = splits_row(kind, standard, dense)

    def run(x: INPUT, ws: WORKSPACE, lanes: LANE_WEIGHTS, terms: LANE_TERMS, frame: FRAME, out: OUTPUT):
        ti.loop_config(serialize=True)
        for _ in range(1):   # a serial task of its own, done before the workers start
            c = counters_at(frame)
            for i in range(1 + chunk_count_ti(frame[F_STEPS]) + SPLIT_COUNTERS):   # (pipeline_counters)
                ws[c + i] = 0.0
        ti.loop_config(block_dim=ti.static(worker_block()))
        for w in range(ti.static(workers())):
            if w == 0 or w == CPU_TASK:   # the stepping worker and the helper
                T, B, H, _ = run_sizes(frame)
                c = counters_at(frame)
                chunks = chunk_count_ti(T)
                progress = c + 1 + chunks    # split: 0 until the rows' start is written, then 1 + steps done
                claimed_half = progress + 1  # 1 + the last step whose second half is claimed
                done_half = progress + 2     # 1 + the last step whose second half is done
                stepping = w == 0
                nb = lane_blocks(H)
                half = nb // 2
                split = 0
                if ti.static(splits):
                    if B <= PAIR and half > 0 and frame[F_LANE_RUN] & LANE_SPLIT != 0:
                        split = 1
                patience = ti.max(H * H, 4096)   # polls before a helper's wait gives up
                if stepping:
                    for r in range(B):
                        start_row(ws, frame, r, H)
                    ti.atomic_add(ws[progress], 1.0)   # (a helper that starts first must not step before it)
                k = 0        # the chunk the stepping worker steps next (whole chunks: not split)
                s = 0        # the step the worker steps (split) or helps with (helper) next
                second = 0   # whether the stepping worker is at step s's second half (split)
                joined = 0   # whether the helper, every chunk claimed, helps step the row (split)
                # One loop for both workers, so that the projection's and the step's code are each
                # inlined once (Taichi inlines a function at every call: compile time). The stepping
                # worker steps chunk k once it is projected (split: step s, a half at a time), waits
                # while the helper projects it, or else claims the next chunk; the helper claims
                # chunks, then (split) takes the second half of the steps the stepping worker has
                # not claimed yet.
                while True:   # (calls in a while's condition broke Taichi's IR: the loop breaks instead)
                    act = PROJECT
                    s0, s1 = 0, 0   # STEP: steps s0 .. s1-1, whole
                    lo, hi = half, nb   # BLOCKS: blocks lo .. hi-1 of step s
                    if stepping:
                        kk = k
                        if split != 0:
                            kk = chunk_of(s)
                        if (split == 0 and k >= chunks) or (split != 0 and s >= T):
                            act = DONE
                        elif read_counter(ws, c + 1 + kk) == 0.0:
                            if ti.cast(read_counter(ws, c), ti.i32) > kk:
                                act = WAIT
                        elif split == 0:
                            act = STEP
                            s0, s1 = chunk_span(k, T)
                        elif frame[F_ROWS + s] < B:   # a row is absent: the step runs whole
                            act = STEP
                            s0, s1 = s, s + 1
                        elif second == 0:
                            act = BLOCKS
                            lo, hi = 0, half
                        else:
                            act = BLOCKS
                            if ti.atomic_max(ws[claimed_half], s + 1.0) >= s + 1:   # the helper's
                                # wait however long it takes: a pair's half adds its products into
                                # the input terms in place, so it must run once
                                wait_for(ws, done_half, s + 1, NO_END)
                                act = NOTHING
                    elif joined != 0:
                        act = NOTHING
                        if s >= T or not wait_for(ws, progress, s + 1, patience):
                            act = DONE   # (the stepping worker stalls, or shares this core: leave it the rest)
                        elif frame[F_ROWS + s] >= B and read_counter(ws, c + 1 + chunk_of(s)) != 0.0:
                            if ti.atomic_max(ws[claimed_half], s + 1.0) < s + 1:
                                act = BLOCKS
                    if act == DONE:
                        break
                    if act == STEP or act == BLOCKS:   # (one call of the step: one inlined copy)
                        if act == BLOCKS:
                            s0, s1 = s, s + 1
                        else:
                            lo, hi = 0, nb
                        for st in range(s0, s1):
                            row_blocks_step(kind, standard, dense, ws, lanes, terms, frame, out, st, lo, hi)
                    elif act == PROJECT:
                        claimed = claim_and_project(x, ws, lanes, terms, frame, c, chunks)
                        if not claimed and not stepping:
                            if split == 0:
                                break
                            joined = 1
                            s = ti.max(ti.cast(read_counter(ws, progress), ti.i32) - 1, 0)
                    # what comes next
                    if stepping:
                        if split == 0:
                            if act == STEP:
                                k += 1
                        elif act == STEP or (act == BLOCKS and second != 0) or act == NOTHING:
                            second = 0
                            s += 1
                            ti.atomic_add(ws[progress], 1.0)
                        elif act == BLOCKS:
                            second = 1
                    elif joined != 0 and (act == BLOCKS or act == NOTHING):
                        if act == BLOCKS:
                            ti.atomic_max(ws[done_half], s + 1.0)
                        s += 1
    run.__name__ = run.__qualname__ = f"{lanes_name(kind, standard, dense)}_pipelined"
    return ti.kernel(run)


@functools.lru_cache(maxsize=None)
def pipelined_kernel(kind, standard=True, dense=False):
    """The pipelined lanes kernel of a ``kind`` cell, for cells with the usual neurons or the others,
    for LSTMs with dense peepholes or the others (``sequence_lanes.lanes_kernel``; each compiled on
    first use)."""
    return _pipelined_kernel(kind, standard, dense)
