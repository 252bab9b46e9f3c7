"""Every MPSCNNNeuronType, evaluated inside kernels in float32.

``apply_neuron(kind, a, b, c, x)`` is a ``ti.func``: the cell kernels inline it for
every gate, with ``kind`` read from device memory, so one compiled kernel serves
every neuron (the branch is uniform across a gate, so it costs no divergence).

The formulas are MPS's (see the spec). Where the textbook form loses accuracy or
overflows in float32 we use an equivalent form that does not:

* tanh: Taylor series near 0 (the exp form cancels there), else 1 - 2/(e^2|x| + 1),
  which saturates to ±1 instead of inf/inf.
* softplus: max(y, 0) + log1p(e^-|y|), with log1p from the atanh series, exact
  to float32 rounding over [0, 1].
* ELU: expm1 by series near 0.
* GELU: 0.5·x·erfc(-x/√2), with an erfc accurate to ~1.2e-7 relative everywhere
  (Chebyshev fit; exp(-z²) split so z² is formed exactly), so the far negative
  tail keeps its relative accuracy instead of cancelling in 1 + erf.
* powers: explicit handling of zero and negative bases (integer exponents keep
  their sign, others give NaN), since GPU ``pow`` leaves negative bases undefined.

Every literal is float32 (Taichi's default float): no float64 reaches a kernel,
as Metal has none.
"""
import taichi as ti

from .layout import (
    N_ABSOLUTE,
    N_ELU,
    N_EXPONENTIAL,
    N_GELU,
    N_HARD_SIGMOID,
    N_LINEAR,
    N_LOGARITHM,
    N_POWER,
    N_PRELU,
    N_RELU,
    N_RELU_N,
    N_SIGMOID,
    N_SOFT_PLUS,
    N_SOFT_SIGN,
    N_TANH,
)


@ti.func
def tanh32(x):
    """Both forms computed and one selected, without a branch: a branch splits the gate math into
    blocks that the GPU's compiler schedules one after another, where a cell's sigmoids and tanhs
    are independent chains that can overlap (the same results, to the bit)."""
    ax = ti.abs(x)
    # x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835: truncation error < 6e-8 relative
    x2 = ax * ax
    near = ax * (1.0 + x2 * (-0.33333333333 + x2 * (0.13333333333
                 + x2 * (-0.053968253968 + x2 * 0.021869488536))))
    far = 1.0 - 2.0 / (ti.exp(2.0 * ax) + 1.0)
    y = ti.select(ax < 0.3, near, far)
    return ti.select(x < 0.0, -y, y)


@ti.func
def log1p_unit(u):
    """log(1 + u) for 0 <= u <= 1 without cancellation: 2·atanh(u / (2 + u))."""
    s = u / (2.0 + u)
    s2 = s * s
    series = 1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (
        1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0 + s2 * (1.0 / 15.0)))))))
    return 2.0 * s * series


@ti.func
def expm1_32(x):
    y = 0.0
    if ti.abs(x) < 0.5:
        # Taylor to x^9/9!: truncation error < 1e-8 relative for |x| < 0.5
        y = x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0 + x * (
            1.0 / 720.0 + x * (1.0 / 5040.0 + x * (1.0 / 40320.0 + x * (1.0 / 362880.0)))))))))
    else:
        y = ti.exp(x) - 1.0
    return y


@ti.func
def sigmoid32(x):
    return 1.0 / (1.0 + ti.exp(-x))


@ti.func
def erfc32(x):
    """Complementary error function, ~1.2e-7 relative error for all x."""
    z = ti.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    # exp(-z*z) = exp(-zh*zh) * exp(-(z-zh)(z+zh)); zh has 8 significant bits, so zh*zh is exact
    zh = ti.floor(z * 16.0) / 16.0
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    r = t * ti.exp(-zh * zh) * ti.exp(-(z - zh) * (z + zh) + poly)
    if x < 0.0:
        r = 2.0 - r
    return r


@ti.func
def pow32(base, e):
    """base ** e with C's rules for zero and negative bases."""
    y = 0.0
    if base > 0.0:
        y = ti.pow(base, e)
    elif base == 0.0:
        if e > 0.0:
            y = 0.0
        elif e == 0.0:
            y = 1.0
        else:
            y = float("inf")
    else:
        if ti.floor(e) == e:
            y = ti.pow(-base, e)
            if ti.floor(e * 0.5) * 2.0 != e:  # odd exponent keeps the sign
                y = -y
        else:
            y = float("nan")
    return y


@ti.func
def apply_neuron(kind, a, b, c, x):
    """MPS neuron ``kind`` with parameters a, b, c applied to x (PReLU: ``a`` is this channel's slope)."""
    y = x  # NONE (and any unknown kind, which the host never sends)
    if kind == N_RELU or kind == N_PRELU:
        y = x if x >= 0.0 else a * x
    elif kind == N_LINEAR:
        y = a * x + b
    elif kind == N_SIGMOID:
        y = sigmoid32(x)
    elif kind == N_HARD_SIGMOID:
        y = ti.min(ti.max(a * x + b, 0.0), 1.0)
    elif kind == N_TANH:
        y = a * tanh32(b * x)
    elif kind == N_ABSOLUTE:
        y = ti.abs(x)
    elif kind == N_SOFT_PLUS:
        v = b * x
        y = a * (ti.max(v, 0.0) + log1p_unit(ti.exp(-ti.abs(v))))
    elif kind == N_SOFT_SIGN:
        y = x / (1.0 + ti.abs(x))
    elif kind == N_ELU:
        y = x if x >= 0.0 else a * expm1_32(x)
    elif kind == N_RELU_N:
        y = ti.min(x if x >= 0.0 else a * x, b)
    elif kind == N_POWER:
        y = pow32(a * x + b, c)
    elif kind == N_EXPONENTIAL:
        v = a * x + b
        if c == -1.0:
            y = ti.exp(v)
        else:
            y = pow32(c, v)
    elif kind == N_LOGARITHM:
        v = a * x + b
        y = ti.log(v)
        if c != -1.0:
            y = y / ti.log(c)
    elif kind == N_GELU:
        y = 0.5 * x * erfc32(-0.7071067811865476 * x)
    return y


@ti.kernel
def apply_neuron_array(x: ti.types.ndarray(dtype=ti.f32, ndim=1), out: ti.types.ndarray(dtype=ti.f32, ndim=1),
                       slopes: ti.types.ndarray(dtype=ti.f32, ndim=1), kind: ti.i32, a: ti.f32, b: ti.f32,
                       c: ti.f32, channels: ti.i32):
    """out = neuron(x) elementwise; x is (n, channels) flattened, PReLU takes slope[j % channels]."""
    for j in range(x.shape[0]):
        aj = a
        if kind == N_PRELU:
            aj = slopes[j % channels]
        out[j] = apply_neuron(kind, aj, b, c, x[j])
