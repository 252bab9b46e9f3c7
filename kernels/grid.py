"""Fixed launch grids: every kernel is one task on the device.

Taichi splits a kernel into offloaded tasks, one device launch each. A parallel
loop whose bound is known only at run time (``range(B * H)``, even
``range(n)`` with ``n`` a kernel argument), and any statement before the loop,
become an extra serial task that computes the bound first. On the H100 that
second launch costs 9-15 µs per dispatch (``bench/probes/launch.py``), which is
more than a whole small recurrent step. So the kernels' outermost loops run over
a fixed number of *workers*, known when the kernel compiles, and each worker
takes its share of the items with :func:`share`:

* GPU (CUDA, Vulkan, Metal): worker w takes items w, w + W, w + 2W, ... so that
  neighbouring threads touch neighbouring addresses (coalesced); W is large
  enough to fill the device, and idle workers exit at once.
* CPU: Taichi 1.7 hands a CPU thread at least 512 iterations of a parallel
  loop at a time (its adaptive block size overrides ``loop_config``), so the
  workers come in tasks of CPU_TASK = 512, one task per pool thread, and the
  items are split first across the tasks, then into contiguous runs across a
  task's workers. Rows of a small batch thus land on different threads (with
  every worker in one task, a batch of 8 rows ran on one core).

Block kernels (one GPU block per sequence) loop over ``row_blocks()`` blocks
the same way, each taking batch rows b, b + row_blocks(), ...
"""
import taichi as ti

GPU_WORKERS = 1 << 17       # 512 blocks of 256 threads: ~4 blocks per SM on an H100
CPU_TASK = 512              # loop iterations Taichi gives a CPU thread at a time
MAX_CPU_TASKS = 8           # at most this many threads share a kernel (empty workers cost a few ns)
GPU_ROW_BLOCKS = 512        # blocks of a block-per-sequence kernel; more rows loop


def on_cpu():
    """Whether the kernels are being compiled for the CPU (read when a kernel compiles)."""
    return ti.lang.impl.current_cfg().arch in (ti.x64, ti.arm64)


def on_cuda():
    """Whether the kernels are being compiled for CUDA (warp shuffles; read when a kernel compiles)."""
    return ti.lang.impl.current_cfg().arch == ti.cuda


def cpu_tasks():
    """Tasks of a CPU kernel: one per thread of Taichi's pool, at most MAX_CPU_TASKS."""
    return max(1, min(ti.lang.impl.current_cfg().cpu_max_num_threads, MAX_CPU_TASKS))


def workers():
    return CPU_TASK * cpu_tasks() if on_cpu() else GPU_WORKERS


def worker_block():
    """block_dim of the workers' loop: 256 threads per GPU block. On the CPU Taichi 1.7 replaces it
    with its own block of at least CPU_TASK iterations (see above); 1 asks for the finest split."""
    return 1 if on_cpu() else 256


def row_blocks():
    return GPU_ROW_BLOCKS


@ti.func
def share(n, w):
    """(first item, item count, stride) of worker ``w`` among ``n`` items: for q in range(count),
    the item is first + q * stride."""
    first, count, stride = 0, 0, 1
    if ti.static(on_cpu()):
        tasks = ti.static(cpu_tasks())
        per_task = (n + tasks - 1) // tasks
        lo = (w // CPU_TASK) * per_task
        hi = ti.min(n, lo + per_task)
        run = (ti.max(hi - lo, 0) + CPU_TASK - 1) // CPU_TASK
        first = lo + (w % CPU_TASK) * run
        count = ti.max(ti.min(hi - first, run), 0)
    else:
        first = w
        stride = GPU_WORKERS
        count = (n - w + GPU_WORKERS - 1) // GPU_WORKERS if w < n else 0
    return first, count, stride


@ti.func
def block_share(n, b):
    """(first row, row count, stride) of block ``b`` among ``n`` rows."""
    return b, ((n - b + GPU_ROW_BLOCKS - 1) // GPU_ROW_BLOCKS if b < n else 0), GPU_ROW_BLOCKS
