"""Every MPSCNNNeuronType, computed by the device kernel, against its float64 formula."""
import numpy as np
import pytest

import mpsrnn as m
import reference as R

# (type, a, b, c, inputs): parameters chosen to exercise each formula, including large magnitudes.
WIDE = np.concatenate([np.linspace(-30.0, 30.0, 601), np.linspace(-1.0, 1.0, 2001), [-1e4, -700.0, -100.0, -88.0, -40.0, -1e-3, -1e-7, 0.0,
                                                       1e-7, 1e-3, 40.0, 88.0, 100.0, 700.0, 1e4]])
CASES = [
    (m.NeuronType.NONE, None, None, None, WIDE),
    (m.NeuronType.RELU, None, None, None, WIDE),
    (m.NeuronType.RELU, 0.15, None, None, WIDE),
    (m.NeuronType.LINEAR, 1.5, -0.5, None, WIDE),
    (m.NeuronType.SIGMOID, None, None, None, WIDE),
    (m.NeuronType.HARD_SIGMOID, None, None, None, WIDE),
    (m.NeuronType.HARD_SIGMOID, 0.7, -0.2, None, WIDE),
    (m.NeuronType.TANH, None, None, None, WIDE),
    (m.NeuronType.TANH, 1.3, 0.7, None, WIDE),
    (m.NeuronType.ABSOLUTE, None, None, None, WIDE),
    (m.NeuronType.SOFT_PLUS, None, None, None, WIDE),
    (m.NeuronType.SOFT_PLUS, 1.2, 0.8, None, WIDE),
    (m.NeuronType.SOFT_SIGN, None, None, None, WIDE),
    (m.NeuronType.ELU, None, None, None, WIDE),
    (m.NeuronType.ELU, 0.7, None, None, WIDE),
    (m.NeuronType.RELU_N, None, None, None, WIDE),
    (m.NeuronType.RELU_N, 0.05, 6.0, None, WIDE),
    (m.NeuronType.POWER, 0.5, 2.0, 3.0, np.linspace(-30.0, 30.0, 601)),
    (m.NeuronType.POWER, 0.5, 1.0, 2.0, np.linspace(-30.0, 30.0, 601)),     # negative base, even power
    (m.NeuronType.POWER, 0.25, 9.0, 0.5, np.linspace(-30.0, 30.0, 601)),    # square root (defined for x >= -36)
    (m.NeuronType.EXPONENTIAL, None, None, None, np.linspace(-80.0, 80.0, 801)),
    (m.NeuronType.EXPONENTIAL, 0.1, 0.3, 10.0, np.linspace(-300.0, 300.0, 601)),
    (m.NeuronType.LOGARITHM, 0.5, 40.0, None, np.linspace(-79.0, 1e4, 801)),
    (m.NeuronType.LOGARITHM, 2.0, 0.5, 2.0, np.concatenate([np.geomspace(1e-6, 1e30, 300), WIDE[WIDE > -0.2]])),
    (m.NeuronType.GELU, None, None, None, np.concatenate([np.linspace(-12.0, 12.0, 481), WIDE])),
]


def _id(case):
    t, a, b, c, _ = case
    return f"{t.name}-{a}-{b}-{c}"


def _allowed_error(kind, a, b, c, x, ref):
    """float32 accuracy: 1e-5 relative, plus the error of rounding the input to float32, i.e.
    the function's sensitivity |x·f'(x)| (and |b/a|·|f'(x)| where the formula forms a·x + b)
    times a few float32 ulps. Without this, e.g. LINEAR near a root would demand more than
    float32 can carry."""
    h = 1e-6 * np.maximum(np.abs(x), 1.0)
    slope = np.abs(R.neuron(kind, x + h, a, b, c) - R.neuron(kind, x - h, a, b, c)) / (2 * h)
    slope = np.nan_to_num(slope, nan=0.0, posinf=0.0)
    affine = abs(b / a) if kind in (m.NeuronType.LINEAR, m.NeuronType.HARD_SIGMOID, m.NeuronType.POWER,
                                    m.NeuronType.EXPONENTIAL, m.NeuronType.LOGARITHM) else 0.0
    return 1e-5 * np.abs(ref) + 2.0 ** -21 * (np.abs(x) + affine) * slope + 1e-37


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_neuron_matches_float64_formula(case):
    kind, a, b, c, x = case
    neuron = m.Neuron(kind, a=a, b=b, c=c)
    x = x.astype(np.float32)
    got = neuron.apply(x).astype(np.float64)
    xd = x.astype(np.float64)
    ref = R.neuron(int(kind), xd, neuron.a, neuron.b, neuron.c)
    with np.errstate(over="ignore"):
        ref32 = ref.astype(np.float32).astype(np.float64)  # beyond float32's range the answer is ±inf
    same = (got == ref32) | (np.isnan(got) & np.isnan(ref32))
    finite = np.isfinite(ref32)
    err = np.abs(got - ref)
    ok = same | (finite & (err <= _allowed_error(kind, neuron.a, neuron.b, neuron.c, xd, ref)))
    bad = np.flatnonzero(~ok)
    assert bad.size == 0, (f"{neuron}: {bad.size} of {x.size} inputs off; first at x={x[bad[0]]!r}: "
                           f"got {got[bad[0]]!r}, float64 formula {ref[bad[0]]!r}")


def test_every_neuron_type_is_covered():
    assert {case[0] for case in CASES} | {m.NeuronType.PRELU} == set(m.NeuronType)


def test_prelu_uses_one_slope_per_channel(rng):
    slopes = rng.uniform(0.01, 0.9, 7).astype(np.float32)
    x = (rng.standard_normal((5, 7)) * 10).astype(np.float32)
    got = m.Neuron(m.NeuronType.PRELU, a=slopes).apply(x)
    ref = R.neuron(int(m.NeuronType.PRELU), x.astype(np.float64), slopes.astype(np.float64))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=0)
    assert (got[x < 0] != x[x < 0]).all()  # the negative side really is scaled


@pytest.mark.parametrize("kind, a, b, c", [
    (m.NeuronType.RELU, 0.0, 0.0, 1.0), (m.NeuronType.LINEAR, 1.0, 0.0, 1.0),
    (m.NeuronType.HARD_SIGMOID, 0.2, 0.5, 1.0), (m.NeuronType.TANH, 1.0, 1.0, 1.0),
    (m.NeuronType.SOFT_PLUS, 1.0, 1.0, 1.0), (m.NeuronType.ELU, 1.0, 0.0, 1.0),
    (m.NeuronType.RELU_N, 1.0, 6.0, 1.0), (m.NeuronType.POWER, 1.0, 0.0, 1.0),
    (m.NeuronType.EXPONENTIAL, 1.0, 0.0, -1.0), (m.NeuronType.LOGARITHM, 1.0, 0.0, -1.0),
])
def test_neuron_defaults_are_mps_defaults(kind, a, b, c):
    n = m.Neuron(kind)
    assert (n.a, n.b, n.c) == (a, b, c)


def test_neuron_accepts_names_and_raw_values():
    assert m.Neuron("tanh").type == m.NeuronType.TANH
    assert m.Neuron(3).type == m.NeuronType.SIGMOID
    assert m.Neuron(m.NeuronType.GELU) == m.Neuron("GELU")


@pytest.mark.parametrize("kwargs, match", [
    ({"type": "swish"}, "Neuron.type"),
    ({"type": 99}, "Neuron.type"),
    ({"type": m.NeuronType.PRELU}, "Neuron.a"),
    ({"type": m.NeuronType.RELU, "a": "x"}, "Neuron.a"),
    ({"type": m.NeuronType.TANH, "b": float("nan")}, "Neuron.b"),
])
def test_bad_neuron_parameters_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        m.Neuron(**kwargs)
