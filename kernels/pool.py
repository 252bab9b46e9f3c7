"""A kernel that keeps each of Taichi's CPU pool threads busy for a while: how ``mpsrnn.cpu_threads``
tells the pool's workers from the process's other threads (by the CPU time each gains).

One task of CPU_TASK iterations per worker (``grid.py``), of which the first counts itself in
``met[0]``, spins until every task has (at most ``wait`` polls: a worker that wakes behind another
on one core is run, or moved to an idle one, while the other spins), then spins through ``work``
dependent sines. Tasks from ``count`` on do nothing. The task count is fixed (MAX_POOL_TASKS) so
that one compiled kernel serves any pool. ``met`` holds 1 + MAX_POOL_TASKS integers, zero before
the call.
"""
import taichi as ti

from .grid import CPU_TASK

MAX_POOL_TASKS = 64


@ti.kernel
def meet_tasks(met: ti.types.ndarray(dtype=ti.i32, ndim=1), count: ti.i32, wait: ti.i32, work: ti.i32):
    ti.loop_config(block_dim=1)
    for w in range(CPU_TASK * MAX_POOL_TASKS):
        task = w // CPU_TASK
        if w % CPU_TASK == 0 and task < count:
            ti.atomic_add(met[0], 1)
            polls = 0
            while True:   # (calls in a while's condition broke Taichi's IR: the loop breaks instead)
                if ti.atomic_add(met[0], 0) >= count or polls >= wait:
                    break
                polls += 1
            s = 0.0
            for _ in range(work):
                s = ti.sin(s) + 1.0
            met[1 + task] = ti.cast(s, ti.i32)
