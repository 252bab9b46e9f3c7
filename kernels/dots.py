"""Dot products shared by the recurrence kernels.

``dot8`` keeps eight independent accumulators. On a CPU without fast-math the
compiler may not reorder a float sum, and on a GPU a loop with one accumulator
waits for each load before the next add; eight independent chains let both
machines overlap the loads (measured on the CPU: 2.4 -> ~9 GFLOP/s per core).

``tree_sum`` adds a short vector's values pairwise, as the spread and split kernels add the partial
sums of a gate row: a row of n - 1 dependent adds sat on the path of the threads that finish the
cells while their block or grid waited.
"""
import taichi as ti


@ti.func
def w32(wts: ti.template(), k):
    """Weight k as float32 (weights are stored as float16 or float32)."""
    return ti.cast(wts[k], ti.f32)


@ti.func
def dot8(w: ti.template(), w0, sj, v: ti.template(), v0, n):
    """Σ_j w[w0 + j·sj]·v[v0 + j] for j < n, float32 (w may be float16; v any array or shared array)."""
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    a4 = 0.0
    a5 = 0.0
    a6 = 0.0
    a7 = 0.0
    for jj in range(n // 8):
        j = jj * 8
        a0 += ti.cast(w[w0 + j * sj], ti.f32) * v[v0 + j]
        a1 += ti.cast(w[w0 + (j + 1) * sj], ti.f32) * v[v0 + j + 1]
        a2 += ti.cast(w[w0 + (j + 2) * sj], ti.f32) * v[v0 + j + 2]
        a3 += ti.cast(w[w0 + (j + 3) * sj], ti.f32) * v[v0 + j + 3]
        a4 += ti.cast(w[w0 + (j + 4) * sj], ti.f32) * v[v0 + j + 4]
        a5 += ti.cast(w[w0 + (j + 5) * sj], ti.f32) * v[v0 + j + 5]
        a6 += ti.cast(w[w0 + (j + 6) * sj], ti.f32) * v[v0 + j + 6]
        a7 += ti.cast(w[w0 + (j + 7) * sj], ti.f32) * v[v0 + j + 7]
    for j in range(n - n % 8, n):
        a0 += ti.cast(w[w0 + j * sj], ti.f32) * v[v0 + j]
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


def tree_order(n):
    """(into, from) pairs that add n values as a tree, in place (v[into] += v[from]; the total ends in
    v[0]): neighbours, then pairs of them, and so on, log2(n) additions deep where a row of them is n
    - 1 deep."""
    order, stride = [], 1
    while stride < n:
        order += [(k, k + stride) for k in range(0, n - stride, 2 * stride)]
        stride *= 2
    return order


@ti.func
def tree_sum(v):
    """The sum of vector v's values, added as ``tree_order`` says (v is a copy: the caller's stays)."""
    for t in ti.static(tree_order(v.n)):
        v[t[0]] += v[t[1]]
    return v[0]
