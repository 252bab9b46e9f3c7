"""Input projection of a whole sequence in one launch.

The input term of every gate, W·x + b, does not depend on the recurrence, so it
is computed for all T steps at once, as one batched product over T·B rows,
before the time loop starts: XW[s, r, g·H + i] = Σ_j W[g, i, j]·x[s, r, j] + b[g, i].
The step kernels then only add the recurrent terms.

``x`` is read through a strided view (base, step stride, row stride; the step
stride is negative when a backward-running stack reads its input from the last
time step), so user matrices, offset views and the previous layer's output
history are all read in place. Rows a sequence no longer has (variable length)
are skipped. Accumulation is float32 whatever the storage type of x and W,
which is read through the layer's strides (row-major or transposed).
"""
import taichi as ti

from .layout import (F_BATCH, F_CURSOR, F_GATES, F_IN, F_INPUT_MODE, F_OUT, F_P_BIAS, F_ROWS, F_STEPS, F_W,
                     F_W_SJ, F_W_SO, F_WS_XW, INPUT_DENSE, INPUT_IDENTITY)


@ti.kernel
def project_inputs(x: ti.types.ndarray(ndim=1), x_base: ti.i32, x_step: ti.i32, x_row: ti.i32,
                   ws: ti.types.ndarray(dtype=ti.f32, ndim=1), wts: ti.types.ndarray(ndim=1),
                   prm: ti.types.ndarray(dtype=ti.f32, ndim=1), frame: ti.types.ndarray(dtype=ti.i32, ndim=1)):
    T = frame[F_STEPS]
    B = frame[F_BATCH]
    G = frame[F_GATES]
    H = frame[F_OUT]
    n_in = frame[F_IN]
    w0 = frame[F_W]
    xw0 = frame[F_WS_XW]
    o_bias = frame[F_P_BIAS]
    so = frame[F_W_SO]
    sj = frame[F_W_SJ]
    GH = G * H
    for idx in range(T * B * GH):
        o = idx % GH
        n = idx // GH
        s = n // B
        r = n % B
        if r < frame[F_ROWS + s]:
            g = o // H
            i = o % H
            mode = frame[F_INPUT_MODE + g]
            x0 = x_base + s * x_step + r * x_row
            acc = 0.0
            if mode == INPUT_DENSE:
                wrow = w0 + o * so
                for j in range(n_in):
                    acc += ti.cast(wts[wrow + j * sj], ti.f32) * ti.cast(x[x0 + j], ti.f32)
            elif mode == INPUT_IDENTITY:
                acc = ti.cast(x[x0 + i], ti.f32)
            ws[xw0 + n * GH + o] = acc + prm[o_bias + o]
    # a new sequence starts: the step kernels count processing steps from 0
    frame[F_CURSOR] = 0
