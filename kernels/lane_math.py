"""The usual gate neurons (sigmoid, tanh) on a block's lanes at once (``lanes.LANES``), for the CPU's lane
kernels.

A standard cell (``F_STANDARD``) spends most of a small step in its neurons: scalar sigmoid and
tanh cost ~33 ns a unit on this project's CPU (libm's expf, a division, and a branch per tanh
that the predictor misses), 5x the vector form here. ``exp_lanes`` is Cephes' expf, 2^n times a
polynomial on |r| <= ln2/2: its largest error against float64 exp, over 500k draws, was 7.9e-8
relative (libm's expf: 6.0e-8), so results match the scalar path to float32 rounding. tanh keeps
``neurons.tanh32``'s two forms, chosen per lane.

Written around three gaps in Taichi 1.7's CPU code with whole vectors (real_matrix_scalarize
off; see lanes.py): unary minus, ``ti.abs`` and vector casts crash LLVM, so negation is
``0.0 - x``, |x| a select, and 2^n is built lane by lane (LLVM vectorises it back).
"""
import taichi as ti

from .lanes import LANES


@ti.func
def exp_lanes(x):
    xc = ti.min(ti.max(x, -87.33654), 88.72283)   # e^x stays finite and normal
    n = ti.floor(xc * 1.44269504 + 0.5)
    r = xc - n * 0.693359375 + n * 2.12194440e-4   # x - n·ln2, ln2 split so n·C1 is exact
    p = ((((((1.9875691500e-4 * r + 1.3981999507e-3) * r + 8.3334519073e-3) * r + 4.1665795894e-2) * r
            + 1.6666665459e-1) * r + 5.0000001201e-1) * (r * r) + r) + 1.0
    scale = ti.Vector([ti.bit_cast((ti.cast(n[m], ti.i32) + 127) << 23, ti.f32) for m in ti.static(range(LANES))])
    return ti.select(x == x, p * scale, x)   # noqa: PLR0124 (NaN stays NaN; the clamp would hide it)


@ti.func
def sigmoid_lanes(x):
    return 1.0 / (1.0 + exp_lanes(0.0 - x))


@ti.func
def tanh_lanes(x):
    ax = ti.select(x < 0.0, 0.0 - x, x)
    x2 = ax * ax
    near0 = ax * (1.0 + x2 * (-0.33333333333 + x2 * (0.13333333333
                  + x2 * (-0.053968253968 + x2 * 0.021869488536))))
    y = ti.select(ax < 0.3, near0, 1.0 - 2.0 / (exp_lanes(2.0 * ax) + 1.0))
    return ti.select(x < 0.0, 0.0 - y, y)


@ti.func
def load_lanes(ws: ti.template(), b, n):
    """ws[b .. b+LANES-1] as a vector; in a partial block (n < LANES) lanes from n on repeat element
    n-1, so nothing past the array is read. A full block is LANES plain loads, which LLVM merges."""
    v = ti.Vector([0.0] * LANES)
    if n == LANES:
        v = ti.Vector([ws[b + m] for m in ti.static(range(LANES))])
    else:
        v = ti.Vector([ws[b + ti.min(m, n - 1)] for m in ti.static(range(LANES))])
    return v


@ti.func
def store_lanes(ws: ti.template(), b, v, n):
    """ws[b + m] = v[m] for the first n lanes (a full block: LANES plain stores, merged by LLVM)."""
    if n == LANES:
        for m in ti.static(range(LANES)):
            ws[b + m] = v[m]
    else:
        for m in ti.static(range(LANES)):
            if m < n:
                ws[b + m] = v[m]
