"""Moving sequences between user matrices and the workspaces, in one launch.

``copy_sequence`` writes T steps of a destination view from one or two source
views, each given as (buffer, base, step stride, row stride), element units:

* COPY: the source (initial states in, outputs and states out, gathers);
* ADD: source + source2 (bidirectional ADD);
* CONCAT: source channels then source2 channels (bidirectional CONCATENATE).

Negative step strides read a backward run's history in input-time order. Only
the rows present at each step are written (``rows_tab[rows_at + t]``; a
negative ``rows_at`` means all ``batch`` rows at every step), so a user's
matrices with fewer rows are never written past their end. Values are stored in
the destination's type (float16 or float32). One task on the device: the
workers of ``grid.py`` share the items; on the CPU one loop on the calling
thread, a row's channels at a time (``copy_kernel`` chooses).

``store_output`` is the same store from inside a recurrence kernel: the last
layer of ``encode_sequence`` writes each new h straight into the caller's
destination as well as into its history, which saves the copy dispatch
(~20 µs a call on the H100).
"""
import taichi as ti

from .frame import output_view
from .grid import on_cpu, share, worker_block, workers

SEQ_COPY = 1
SEQ_ADD = 2
SEQ_CONCAT = 3


@ti.func
def copy_item(dst: ti.template(), d_base, d_step, d_row, src: ti.template(), s_base, s_step, s_row,
              src2: ti.template(), s2_base, s2_step, s2_row, mode, channels, width, batch,
              rows_tab: ti.template(), rows_at, idx):
    """Element ``idx`` of the (steps, batch, width) destination view."""
    c = idx % width
    n = idx // width
    t = n // batch
    r = n % batch
    rows = batch
    if rows_at >= 0:
        rows = rows_tab[rows_at + t]
    if r < rows:
        v = 0.0
        if mode == SEQ_COPY:
            v = ti.cast(src[s_base + t * s_step + r * s_row + c], ti.f32)
        elif mode == SEQ_ADD:
            v = (ti.cast(src[s_base + t * s_step + r * s_row + c], ti.f32)
                 + ti.cast(src2[s2_base + t * s2_step + r * s2_row + c], ti.f32))
        elif mode == SEQ_CONCAT:
            if c < channels:
                v = ti.cast(src[s_base + t * s_step + r * s_row + c], ti.f32)
            else:
                v = ti.cast(src2[s2_base + t * s2_step + r * s2_row + c - channels], ti.f32)
        dst[d_base + t * d_step + r * d_row + c] = ti.cast(v, dst.get_type().element_type)


@ti.func
def copy_step(dst: ti.template(), d_base, d_step, d_row, src: ti.template(), s_base, s_step, s_row,
              src2: ti.template(), s2_base, s2_step, s2_row, mode, channels, channels2, batch,
              rows_tab: ti.template(), rows_at, t):
    """Step t of the destination view, as ``copy_item`` writes it element by element, in runs of a
    row's channels: no division an element, and each run a plain loop over consecutive elements
    (the serial copy: on the CPU the per-element form took ~11 ns an element, 70 µs of a 190 µs
    bidirectional LSTM 64 b2 t25 call)."""
    rows = batch
    if rows_at >= 0:
        rows = ti.min(rows_tab[rows_at + t], batch)
    for r in range(rows):
        d = d_base + t * d_step + r * d_row
        a = s_base + t * s_step + r * s_row
        b = s2_base + t * s2_step + r * s2_row
        if mode == SEQ_ADD:
            for c in range(channels):
                dst[d + c] = ti.cast(ti.cast(src[a + c], ti.f32) + ti.cast(src2[b + c], ti.f32),
                                     dst.get_type().element_type)
        else:
            for c in range(channels):
                dst[d + c] = ti.cast(ti.cast(src[a + c], ti.f32), dst.get_type().element_type)
            if mode == SEQ_CONCAT:
                for c in range(channels2):
                    dst[d + channels + c] = ti.cast(ti.cast(src2[b + c], ti.f32), dst.get_type().element_type)


def _copy_body(serial):
    """The body of copy_sequence on the fixed workers (grid.py), an element an item (GPUs), or with
    ``serial`` as one loop over the steps that Taichi runs on the calling thread (``copy_step``: the
    CPU, where it beat waking the thread pool at every size measured; ``copy_kernel`` chooses)."""
    def copy_sequence(dst: ti.types.ndarray(ndim=1), d_base: ti.i32, d_step: ti.i32, d_row: ti.i32,
                      src: ti.types.ndarray(ndim=1), s_base: ti.i32, s_step: ti.i32, s_row: ti.i32,
                      src2: ti.types.ndarray(ndim=1), s2_base: ti.i32, s2_step: ti.i32, s2_row: ti.i32,
                      mode: ti.i32, channels: ti.i32, channels2: ti.i32, steps: ti.i32, batch: ti.i32,
                      rows_tab: ti.types.ndarray(dtype=ti.i32, ndim=1), rows_at: ti.i32):
        if ti.static(serial):
            ti.loop_config(serialize=True)
            for t in range(steps):
                copy_step(dst, d_base, d_step, d_row, src, s_base, s_step, s_row, src2, s2_base, s2_step, s2_row,
                          mode, channels, channels2, batch, rows_tab, rows_at, t)
        else:
            ti.loop_config(block_dim=ti.static(worker_block()))
            for w in range(ti.static(workers())):
                width = channels + channels2 if mode == SEQ_CONCAT else channels
                first, count, stride = share(steps * batch * width, w)
                for q in range(count):
                    copy_item(dst, d_base, d_step, d_row, src, s_base, s_step, s_row, src2, s2_base, s2_step,
                              s2_row, mode, channels, width, batch, rows_tab, rows_at, first + q * stride)
    return copy_sequence


def _both(make):
    """The kernels of the body ``make(serial)`` returns, parallel and serial; the serial one's name
    ends in ``_serial`` (in profiles, and for test_launch_shape)."""
    kernels = []
    for serial in (False, True):
        body = make(serial)
        if serial:
            body.__name__ = body.__qualname__ = body.__name__ + "_serial"
        kernels.append(ti.kernel(body))
    return kernels


copy_sequence, copy_sequence_serial = _both(_copy_body)


def copy_kernel():
    """The copy kernel for the arch Taichi runs on: on the CPU the serial one, which walks a step's
    rows in runs of channels on the calling thread. It beat the parallel kernel (Taichi's thread
    pool, one element an item) at every size measured (2-core AMD EPYC VM, concatenations, µs a
    launch, parallel / serial): 6,400 elements 140 / 48, 51,200 381 / 66, 204,800 1181 / 120,
    819,200 2342 / 324, 3,276,800 8948 / 1254. A GPU takes an element a thread."""
    return copy_sequence_serial if on_cpu() else copy_sequence


def _block_body(serial):
    """The body of copy_block: one matrix's ``rows`` x ``channels`` from ``src`` to ``dst``, each at
    its element base and row stride: a step of a gather from separate source matrices or a scatter
    to separate destinations, a dispatch a step inside a plan. Eight arguments where
    ``copy_sequence`` takes nineteen (four of them arrays): inside the CPU's graph a dispatch of that
    took ~13 µs, of this ~8. Serial on the CPU, a row's channels a run; on a GPU the workers share
    the elements."""
    def copy_block(dst: ti.types.ndarray(ndim=1), d_base: ti.i32, d_row: ti.i32,
                   src: ti.types.ndarray(ndim=1), s_base: ti.i32, s_row: ti.i32, rows: ti.i32, channels: ti.i32):
        if ti.static(serial):
            ti.loop_config(serialize=True)
            for r in range(rows):
                for c in range(channels):
                    dst[d_base + r * d_row + c] = ti.cast(src[s_base + r * s_row + c], dst.get_type().element_type)
        else:
            ti.loop_config(block_dim=ti.static(worker_block()))
            for w in range(ti.static(workers())):
                first, count, stride = share(rows * channels, w)
                for q in range(count):
                    i = first + q * stride
                    r, c = i // channels, i % channels
                    dst[d_base + r * d_row + c] = ti.cast(src[s_base + r * s_row + c], dst.get_type().element_type)
    return copy_block


copy_block, copy_block_serial = _both(_block_body)


def block_kernel():
    """``copy_block`` for the arch Taichi runs on (serial on the CPU, as ``copy_kernel``)."""
    return copy_block_serial if on_cpu() else copy_block


@ti.func
def store_output(out: ti.template(), frame: ti.template(), s, r, i, v):
    """Write output channel i of row r at step s to the layer's output view (its frame's base, step
    stride, row stride; element units), in its type. A negative base means this layer has none."""
    out_base, out_step, out_row = output_view(frame)
    if out_base >= 0:
        out[out_base + s * out_step + r * out_row + i] = ti.cast(v, out.get_type().element_type)
