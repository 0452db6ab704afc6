"""Tests for microgpt._core: every op against finite differences and against the reference RefVal.

Gradients are checked three ways: central finite differences for each elementary and fused op,
random expression trees evaluated on both `Val` and the pure-Python `RefVal` (hypothesis), and
algebraic identities. Deep graphs run in a subprocess so a C-stack overflow shows as a failure.
"""
import math
import operator
import pickle
import subprocess
import sys
import textwrap
from array import array
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reference import RefVal

import microgpt
from microgpt import (
    Val,
    ValMatrix,
    adam_step,
    cross_entropy,
    dot,
    graph_size,
    linear,
    rmsnorm,
    softmax,
    vadd,
    vrelu,
    vsum,
)
from microgpt._core import adam_steps


def test_imports_the_installed_package():
    source_tree = Path(__file__).resolve().parent.parent / "microgpt"
    assert Path(microgpt.__file__).resolve().parent != source_tree


# Finite differences


def numeric_grad(f, xs, h=1e-6):
    """[d f / d x_i] at the point xs by central differences; f maps a list of floats to a float."""
    grads = []
    for i in range(len(xs)):
        up, down = list(xs), list(xs)
        up[i] += h
        down[i] -= h
        grads.append((f(up) - f(down)) / (2 * h))
    return grads


def weigh(outs):
    """A scalar from a list of output Vals, with fixed unequal weights so no output hides."""
    return sum((0.3 + 0.7 * i) * y for i, y in enumerate(outs))


def check_grad(build, xs):
    """build(list of Vals) -> Val: its backward gradients must match central differences."""
    leaves = [Val(x) for x in xs]
    out = build(leaves)
    out.backward()
    want = numeric_grad(lambda p: build([Val(x) for x in p]).data, xs)
    np.testing.assert_allclose([v.grad for v in leaves], want, rtol=1e-6, atol=1e-8)


X3 = [0.7, -1.3, 0.4]
X9 = [0.5, -0.2, 0.9, 1.1, -0.6, 0.3, -0.8, 0.25, 0.45]  # x (3 values) then W (2 rows of 3)

def shared_matrix(*rows):
    """A ValMatrix over Vals another (discarded) matrix adopted first: this one cannot adopt them."""
    ValMatrix(rows)
    W = ValMatrix(rows)
    assert not W.contiguous
    return W


OPS = {
    "add": (lambda v: v[0] + v[1], X3),
    "add_number": (lambda v: v[0] + 2.5, X3),
    "radd": (lambda v: 2.5 + v[0], X3),
    "sub": (lambda v: v[0] - v[1], X3),
    "sub_number": (lambda v: v[0] - 2.5, X3),
    "rsub": (lambda v: 2.5 - v[0], X3),
    "mul": (lambda v: v[0] * v[1], X3),
    "mul_self": (lambda v: v[0] * v[0], X3),
    "mul_number": (lambda v: v[0] * 2.5, X3),
    "rmul": (lambda v: 2.5 * v[0], X3),
    "div": (lambda v: v[0] / v[1], X3),
    "div_number": (lambda v: v[0] / 2.5, X3),
    "rdiv": (lambda v: 2.5 / v[0], X3),
    "neg": (lambda v: -v[0], X3),
    "pos": (lambda v: +v[0] * v[1], X3),
    "pow_int": (lambda v: v[0] ** 3, X3),
    "pow_negative": (lambda v: v[1] ** -2, X3),
    "pow_fraction": (lambda v: v[0] ** 1.5, X3),
    "pow_method": (lambda v: v[2].pow(0.5), X3),
    "rpow": (lambda v: 2.0 ** v[1], X3),
    "exp": (lambda v: v[1].exp(), X3),
    "log": (lambda v: v[0].log(), X3),
    "relu_positive": (lambda v: v[0].relu(), X3),
    "relu_negative": (lambda v: v[1].relu(), X3),
    "vsum": (lambda v: vsum(v), X3),
    "vsum_scale_numbers": (lambda v: vsum([v[0], 2.0, v[2], v[0]], scale=0.25), X3),
    "vsum_empty": (lambda v: vsum([]) + v[0], X3),
    "dot": (lambda v: dot(v[:2], v[1:]), X3),
    "dot_scale_numbers": (lambda v: dot([v[0], 3.0], [v[1], v[2]], scale=-1.5), X3),
    "linear_rows": (lambda v: weigh(linear(v[:3], [v[3:6], v[6:9]])), X9),
    "linear_matrix": (lambda v: weigh(linear(v[:3], ValMatrix([v[3:6], v[6:9]]))), X9),
    "linear_scale": (lambda v: weigh(linear(v[:3], ValMatrix([v[3:6], v[6:9]]), scale=0.5)), X9),
    "linear_relu_matrix": (lambda v: weigh(linear(v[:3], ValMatrix([v[3:6], v[6:9]]), relu=True)), X9),
    "linear_relu_rows": (lambda v: weigh(linear(v[:3], [v[3:6], v[6:9]], scale=2.0, relu=True)), X9),
    "linear_x_is_a_row_of_W": (lambda v: weigh(linear(v[:3], ValMatrix([v[:3], v[3:6], v[6:9]]))), X9),
    "linear_shared_matrix": (lambda v: weigh(linear(v[3:6], shared_matrix(v[:3], v[6:9]))), X9),
    "softmax": (lambda v: weigh(softmax(v)), X3),
    "softmax_one": (lambda v: softmax(v[:1])[0] * v[1], X3),
    "cross_entropy": (lambda v: cross_entropy(v, 1), X3),
    "cross_entropy_last": (lambda v: cross_entropy(v, 2), X3),
    "rmsnorm": (lambda v: weigh(rmsnorm(v)), X3),
    "rmsnorm_big_eps": (lambda v: weigh(rmsnorm(v, eps=0.5)), X3),
    "vadd": (lambda v: weigh(vadd(v[:2], [v[2], 1.5])), X3),
    "vrelu": (lambda v: weigh(vrelu(v)), X3),
    "diamond": (lambda v: v[0] * v[0] + v[0].exp() * v[1] - v[0] / v[2], X3),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_gradient_matches_finite_differences(name):
    build, xs = OPS[name]
    check_grad(build, xs)


# Graph structure


def test_reused_node_accumulates():
    a = Val(3.0)
    b = a + a
    c = b + b
    c.backward()
    assert c.data == 12.0
    assert (a.grad, b.grad, c.grad) == (4.0, 2.0, 1.0)


def test_dot_of_a_list_with_itself():
    a = [Val(1.5), Val(-2.0), Val(0.5)]
    out = dot(a, a)
    out.backward()
    assert out.data == 1.5**2 + 2.0**2 + 0.5**2
    assert [v.grad for v in a] == [3.0, -4.0, 1.0]


def test_backward_of_a_leaf_sets_its_grad():
    a = Val(2.0)
    a.backward()
    assert a.grad == 1.0


def test_graph_size_counts_interior_nodes_and_edges():
    a = Val(1.0)
    b = a + a
    assert graph_size(a) == (0, 0)
    assert graph_size(b + b) == (2, 4)
    x, W = [Val(1.0), Val(2.0)], ValMatrix([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert graph_size(vsum(linear(x, W))) == (4, 3 + 3 * 2 * 2)  # the sum, then 3 dot nodes


def test_linear_shares_x_across_outputs():
    x = [Val(1.0), Val(2.0)]
    W = ValMatrix([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    vsum(linear(x, W)).backward()
    assert [v.grad for v in x] == [9.0, 12.0]
    assert [v.grad for v in W.values()] == [1.0, 2.0] * 3


# Differential tests: the compiled Val against the reference RefVal on random expressions.
# Every op's input is mapped into its safe domain with Val-or-RefVal arithmetic, so the trees stay
# finite: log and fractional powers see a*a + c > 0, divisors are b*b + c, exponents are bounded.

N_VARS = 3


def _bounded(a):
    return 3.0 * a / (1.0 + a * a)  # in [-1.5, 1.5]


def _method(a, name):
    if isinstance(a, float):  # a constant-only subtree stays a plain float
        return max(a, 0.0) if name == "relu" else getattr(math, name)(a)
    return getattr(a, name)()


UNARY = {
    "neg": lambda a: -a,
    "relu": lambda a: _method(a, "relu"),
    "exp": lambda a: _method(_bounded(a), "exp"),
    "log": lambda a: _method(a * a + 0.25, "log"),
    "square": lambda a: a**2,
    "cube": lambda a: _bounded(a) ** 3,
    "sqrt": lambda a: (a * a + 0.25) ** 0.5,
    "rsqrt": lambda a: (a * a + 0.5) ** -1.5,
    "recip": lambda a: 1.0 / (a * a + 0.5),
    "rpow": lambda a: 2.0 ** _bounded(a),
    "rsub": lambda a: 1.5 - a,
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b * b + 0.5),
}

leaves = st.one_of(
    st.tuples(st.just("var"), st.integers(0, N_VARS - 1)),
    st.tuples(st.just("const"), st.floats(-3.0, 3.0)),
)
expressions = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.tuples(st.sampled_from(sorted(UNARY)), kids),
        st.tuples(st.sampled_from(sorted(BINARY)), kids, kids),
    ),
    max_leaves=12,
)


def evaluate(expr, env):
    """The expression tree over env (a list of Vals or RefVals); constants are plain floats."""
    op = expr[0]
    if op == "var":
        return env[expr[1]]
    if op == "const":
        return expr[1]
    if op in UNARY:
        return UNARY[op](evaluate(expr[1], env))
    return BINARY[op](evaluate(expr[1], env), evaluate(expr[2], env))


def uses_a_variable(expr):
    return expr[0] == "var" or any(isinstance(e, tuple) and uses_a_variable(e) for e in expr[1:])


def close(got, want):
    return math.isclose(got, want, rel_tol=1e-10, abs_tol=1e-12)


@settings(max_examples=300, deadline=None)
@given(expressions, st.lists(st.floats(-2.0, 2.0), min_size=N_VARS, max_size=N_VARS))
def test_val_agrees_with_reference(expr, xs):
    if not uses_a_variable(expr):
        expr = ("mul", ("var", 0), expr)  # a constant-only tree: give it something to differentiate
    vals, refs = [Val(x) for x in xs], [RefVal(x) for x in xs]
    out, ref = evaluate(expr, vals), evaluate(expr, refs)
    assume(math.isfinite(ref.data) and abs(ref.data) < 1e12)
    assert close(out.data, ref.data), (out.data, ref.data)
    out.backward()
    ref.backward()
    for v, r in zip(vals, refs):
        assert close(v.grad, r.grad), ([v.grad for v in vals], [r.grad for r in refs])


# Algebraic identities

finite = st.floats(-10.0, 10.0)
positive = st.floats(1e-3, 50.0)


def grads_of(f, *xs):
    """(value, [gradients]) of f over fresh Vals at xs."""
    vals = [Val(x) for x in xs]
    out = f(*vals)
    out.backward()
    return out.data, [v.grad for v in vals]


@given(finite, finite)
def test_add_and_mul_commute(a, b):
    assert grads_of(lambda x, y: x + y, a, b) == grads_of(lambda x, y: y + x, a, b)
    assert grads_of(lambda x, y: x * y, a, b) == grads_of(lambda x, y: y * x, a, b)


@given(finite, finite, finite)
def test_mul_distributes_over_add(a, b, c):
    left, g_left = grads_of(lambda x, y, z: x * (y + z), a, b, c)
    right, g_right = grads_of(lambda x, y, z: x * y + x * z, a, b, c)
    scale = 1.0 + abs(a) * (abs(b) + abs(c))
    assert abs(left - right) <= 1e-14 * scale
    np.testing.assert_allclose(g_left, g_right, rtol=1e-14, atol=1e-14 * scale)


@given(finite.filter(lambda a: abs(a) > 1e-6))
def test_square_then_square_root_is_abs(a):
    value, (grad,) = grads_of(lambda x: (x**2) ** 0.5, a)
    assert math.isclose(value, abs(a), rel_tol=1e-15)
    assert math.isclose(grad, math.copysign(1.0, a), rel_tol=1e-14)


@given(positive)
def test_exp_undoes_log(x):
    value, (grad,) = grads_of(lambda v: v.log().exp(), x)
    assert math.isclose(value, x, rel_tol=1e-14)
    assert math.isclose(grad, 1.0, rel_tol=1e-14)


@given(finite)
def test_log_undoes_exp(a):
    value, (grad,) = grads_of(lambda v: v.exp().log(), a)
    assert math.isclose(value, a, rel_tol=1e-14, abs_tol=1e-14)
    assert math.isclose(grad, 1.0, rel_tol=1e-14)


@given(finite.filter(lambda a: abs(a) > 1e-6))
def test_self_cancellation(a):
    assert grads_of(lambda x: x - x, a) == (0.0, [0.0])
    value, (grad,) = grads_of(lambda x: x / x, a)
    assert value == 1.0
    assert abs(grad) <= 1e-15 / abs(a)


@given(finite)
def test_identities_of_neutral_elements(a):
    for f in (lambda x: operator.neg(-x), lambda x: x + 0.0, lambda x: 0.0 + x, lambda x: x * 1.0,
              lambda x: 1.0 * x, lambda x: x / 1.0, lambda x: +x, lambda x: x.pow(1.0), lambda x: x**1):
        assert grads_of(f, a) == (a, [1.0])


@given(finite)
def test_relu_is_max_with_zero(a):
    assert grads_of(lambda x: x.relu(), a) == (max(a, 0.0), [1.0 if a > 0 else 0.0])


@given(finite, st.floats(0.1, 5.0))
def test_rpow_is_exp_of_scaled_log(a, c):
    value, (grad,) = grads_of(lambda x: c**x, a)
    assert math.isclose(value, math.exp(a * math.log(c)), rel_tol=1e-12)
    assert math.isclose(grad, value * math.log(c), rel_tol=1e-12, abs_tol=1e-300)


@given(positive, st.floats(-3.0, 3.0))
def test_pow_method_equals_operator(x, p):
    assert grads_of(lambda v: v.pow(p), x) == grads_of(lambda v: v**p, x)


# Fused ops: properties

logit_lists = st.lists(st.floats(-50.0, 50.0), min_size=1, max_size=8)


@given(logit_lists)
def test_softmax_sums_to_one(xs):
    vals = [Val(x) for x in xs]
    probs = softmax(vals)
    assert all(0.0 <= p.data <= 1.0 for p in probs)
    total = vsum(probs)
    assert math.isclose(total.data, 1.0, rel_tol=1e-12)
    total.backward()  # the sum is constant, so its gradient vanishes
    assert all(abs(v.grad) < 1e-12 for v in vals)


@given(logit_lists, st.floats(-100.0, 100.0))
def test_softmax_is_shift_invariant(xs, c):
    plain = [p.data for p in softmax([Val(x) for x in xs])]
    shifted = [p.data for p in softmax([Val(x) + c for x in xs])]
    np.testing.assert_allclose(shifted, plain, rtol=1e-9, atol=1e-12)


def test_softmax_of_huge_logits_does_not_overflow():
    probs = softmax([Val(1000.0), Val(0.0), Val(-1000.0)])
    assert [p.data for p in probs] == [1.0, 0.0, 0.0]


@given(st.lists(st.floats(-10.0, 10.0), min_size=1, max_size=8), st.sampled_from([1e-5, 1e-2, 1.0]))
def test_rmsnorm_output_mean_square(xs, eps):
    ms = sum(x * x for x in xs) / len(xs)
    assume(ms > 1e-6)
    ys = [y.data for y in rmsnorm([Val(x) for x in xs], eps)]
    assert math.isclose(sum(y * y for y in ys) / len(ys), 1.0 / (1.0 + eps / ms), rel_tol=1e-12)


@given(st.lists(st.floats(-20.0, 20.0), min_size=1, max_size=8), st.data())
def test_cross_entropy_is_minus_log_softmax(xs, data):
    target = data.draw(st.integers(0, len(xs) - 1))
    fused, g_fused = grads_of(lambda *v: cross_entropy(v, target), *xs)
    composed, g_composed = grads_of(lambda *v: -softmax(v)[target].log(), *xs)
    assert math.isclose(fused, composed, rel_tol=1e-9, abs_tol=1e-12)
    np.testing.assert_allclose(g_fused, g_composed, rtol=1e-8, atol=1e-12)


def test_linear_forms_agree():
    rng = np.random.default_rng(0)
    x0, w0 = rng.normal(size=4).tolist(), rng.normal(size=(3, 4)).tolist()
    results = []
    for form in ("matrix", "rows", "dots"):
        x, W = [Val(v) for v in x0], [[Val(v) for v in row] for row in w0]
        if form == "matrix":
            out = linear(x, ValMatrix(W), scale=0.5)
        elif form == "rows":
            out = linear(x, W, scale=0.5)
        else:
            out = [dot(row, x, scale=0.5) for row in W]
        weigh(out).backward()
        results.append(([y.data for y in out], [v.grad for v in x], [v.grad for row in W for v in row]))
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.floats(-2.0, 2.0), st.booleans(), st.data())
def test_linear_relu_is_vrelu_of_linear(n, m, scale, as_matrix, data):
    x0 = data.draw(st.lists(st.floats(-1.0, 1.0), min_size=n, max_size=n))
    w0 = data.draw(st.lists(st.floats(-1.0, 1.0), min_size=n * m, max_size=n * m))
    results = []
    for fused in (True, False):
        x, w = [Val(v) for v in x0], [Val(v) for v in w0]
        rows = [w[i * n:(i + 1) * n] for i in range(m)]
        W = ValMatrix(rows) if as_matrix else rows
        out = linear(x, W, scale, relu=True) if fused else vrelu(linear(x, W, scale))
        weigh(out).backward()
        results.append(([y.data for y in out], [v.grad for v in x + w]))
    (got, got_grads), (want, want_grads) = results
    assert got == want
    np.testing.assert_allclose(got_grads, want_grads, rtol=1e-14, atol=1e-15)


def test_valmatrix_views():
    rows = [[Val(1.0), Val(2.0)], [Val(3.0), Val(4.0)], [Val(5.0), Val(6.0)]]
    W = ValMatrix(rows)
    assert (W.shape, len(W), W.rows, W.cols) == ((3, 2), 3, 3, 2)
    assert W[1][0] is rows[1][0] and W[-1][1] is rows[2][1]
    assert W.values() == [v for row in rows for v in row]
    assert W.tolist() == rows
    with pytest.raises(IndexError):
        W[3]


# A ValMatrix of fresh leaves adopts them: their data and grad move into the matrix's arrays.


def test_valmatrix_adopts_fresh_leaves():
    rows = [[Val(1.0), Val(2.0)], [Val(3.0), Val(4.0)]]
    rows[1][0].grad = 0.5
    W = ValMatrix(rows)
    assert W.contiguous
    assert W.datas() == [1.0, 2.0, 3.0, 4.0] and W.grads() == [0.0, 0.0, 0.5, 0.0]
    rows[0][1].data = 7.0  # a Val and its matrix read and write the same numbers
    W.set_datas([5.0, 6.0, 8.0, 9.0])
    rows[1][1].grad = 2.0
    assert W.datas() == [5.0, 6.0, 8.0, 9.0] and W.grads() == [0.0, 0.0, 0.5, 2.0]
    assert [v.data for v in W.values()] == [5.0, 6.0, 8.0, 9.0]
    W.zero_grad()
    assert [v.grad for row in rows for v in row] == [0.0] * 4
    with pytest.raises(ValueError):
        W.set_datas([1.0, 2.0])


def test_valmatrix_does_not_adopt_what_it_cannot():
    a, b = Val(1.0), Val(2.0)
    repeated = ValMatrix([[a, b], [b, a]])  # a Val twice: left as it was
    assert not repeated.contiguous
    assert repeated.datas() == [1.0, 2.0, 2.0, 1.0]
    a.data = 3.0
    assert repeated.datas() == [3.0, 2.0, 2.0, 3.0]
    assert not ValMatrix([[a + b]]).contiguous  # an interior node
    first = ValMatrix([[a, b]])  # a Val another matrix adopted
    second = ValMatrix([[b, a]])
    assert first.contiguous and not second.contiguous
    second.set_datas([4.0, 5.0])
    assert first.datas() == [5.0, 4.0] and (a.data, b.data) == (5.0, 4.0)


def test_adopted_vals_outlive_their_matrix():
    v = Val(1.5)
    W = ValMatrix([[v, 2.0]])
    (x,) = linear([Val(2.0), Val(1.0)], W)
    del W  # the graph still holds the matrix's pack; v holds its storage
    x.backward()
    assert (x.data, v.grad) == (5.0, 2.0)
    del x
    v.data = 4.0
    assert repr(v) == "Val(data=4.0, grad=2.0)"


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_adopted_matrix_agrees_with_list_rows(data):
    """linear over ValMatrix (contiguous fast path) against list rows (generic path): x may alias
    weights, a matrix may repeat a Val (then it does not adopt), and matrices may die early."""
    n, m = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    init = data.draw(st.lists(st.floats(-1.0, 1.0), min_size=n * m + n, max_size=n * m + n))
    picks = st.lists(st.integers(0, len(init) - 1), min_size=n * m, max_size=n * m)
    layers = data.draw(st.lists(st.tuples(picks, st.floats(-2.0, 2.0)), min_size=1, max_size=3))
    x_picks = data.draw(st.lists(st.integers(0, len(init) - 1), min_size=n, max_size=n))
    losses = []
    for as_matrix in (True, False):
        leaves = [Val(v) for v in init]
        x = [leaves[i] for i in x_picks]
        outs = []
        for picked, scale in layers:
            rows = [[leaves[k] for k in picked[i * n:(i + 1) * n]] for i in range(m)]
            outs += linear(x, ValMatrix(rows) if as_matrix else rows, scale)
        loss = cross_entropy(outs, 0) + vsum(rmsnorm(outs))
        loss.backward()
        losses.append((loss.data, [v.grad for v in leaves]))
    (got, got_grads), (want, want_grads) = losses
    assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12)
    np.testing.assert_allclose(got_grads, want_grads, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("adopted", [True, False])
def test_adam_step_matches_numpy_adam(adopted):
    rng = np.random.default_rng(1)
    lr, beta1, beta2, eps = 0.01, 0.85, 0.99, 1e-8
    p_ref = rng.normal(size=(2, 3))
    rows = [[Val(x) for x in row] for row in p_ref.tolist()]
    W = ValMatrix(rows) if adopted else shared_matrix(*rows)
    p_ref = p_ref.ravel()
    m, v = np.zeros(6), np.zeros(6)
    m_ref, v_ref = np.zeros(6), np.zeros(6)
    for t in (1, 2, 3):
        g = rng.normal(size=6)
        for val, gi in zip(W.values(), g.tolist()):
            val.grad = gi
        adam_step(W, m, v, lr, beta1, beta2, eps, t)
        m_ref = beta1 * m_ref + (1 - beta1) * g
        v_ref = beta2 * v_ref + (1 - beta2) * g * g
        p_ref = p_ref - lr * (m_ref / (1 - beta1**t)) / (np.sqrt(v_ref / (1 - beta2**t)) + eps)
        np.testing.assert_allclose(m, m_ref, rtol=1e-14)
        np.testing.assert_allclose(v, v_ref, rtol=1e-14)
        np.testing.assert_allclose([val.data for val in W.values()], p_ref, rtol=1e-13)
        assert all(val.grad == 0.0 for val in W.values())


def test_adam_steps_is_adam_step_per_group():
    # one call over every group gives each group adam_step's numbers, to the bit
    rng = np.random.default_rng(2)
    shapes = [(2, 3), (1, 4), (3, 1)]
    runs = []
    for one_call in (False, True):
        groups = [(ValMatrix([[Val(x) for x in row] for row in rng.normal(size=s).tolist()]),
                   array("d", bytes(8 * s[0] * s[1])), array("d", bytes(8 * s[0] * s[1])))
                  for s in shapes]
        for t in (1, 2, 3):
            for W, _, _ in groups:
                for val, gi in zip(W.values(), rng.normal(size=W.rows * W.cols).tolist()):
                    val.grad = gi
            if one_call:
                adam_steps(groups, 0.01, 0.85, 0.99, 1e-8, t)
            else:
                for W, m, v in groups:
                    adam_step(W, m, v, 0.01, 0.85, 0.99, 1e-8, t)
        runs.append([(W.datas(), list(m), list(v)) for W, m, v in groups])
        rng = np.random.default_rng(2)
    assert runs[0] == runs[1]


def test_adam_steps_updates_nothing_when_a_group_is_bad():
    W = ValMatrix([[Val(1.0), Val(2.0)]])
    for val in W.values():
        val.grad = 0.5
    good = (W, array("d", [0.0, 0.0]), array("d", [0.0, 0.0]))
    with pytest.raises(ValueError, match="moments of length"):
        adam_steps([good, (ValMatrix([[Val(3.0)]]), array("d"), array("d"))], 0.1, 0.9, 0.99, 1e-8, 1)
    assert W.datas() == [1.0, 2.0] and W.grads() == [0.5, 0.5] and list(good[1]) == [0.0, 0.0]


# Bad inputs raise clean Python exceptions

u, w = Val(1.0), Val(2.0)
BAD_INPUTS = {
    "linear_matrix_shape": (ValueError, lambda: linear([u, w], ValMatrix([[u, w, u]]))),
    "linear_rows_shape": (ValueError, lambda: linear([u, w], [[u, w], [u]])),
    "dot_lengths": (ValueError, lambda: dot([u, w], [u])),
    "vadd_lengths": (ValueError, lambda: vadd([u, w], [u])),
    "valmatrix_ragged": (ValueError, lambda: ValMatrix([[u, w], [u]])),
    "cross_entropy_target_high": (IndexError, lambda: cross_entropy([u, w], 2)),
    "cross_entropy_target_negative": (IndexError, lambda: cross_entropy([u, w], -1)),
    "softmax_empty": (ValueError, lambda: softmax([])),
    "rmsnorm_empty": (ValueError, lambda: rmsnorm([])),
    "add_str": (TypeError, lambda: u + "str"),
    "radd_str": (TypeError, lambda: "str" + u),
    "mul_none": (TypeError, lambda: u * None),
    "pow_val_exponent": (TypeError, lambda: u**w),
    "vsum_of_str": (TypeError, lambda: vsum([u, "str"])),
    "linear_of_str": (TypeError, lambda: linear([u], [["str"]])),
    "val_of_str": (TypeError, lambda: Val("str")),
    "adam_moment_length": (ValueError, lambda: adam_step(ValMatrix([[u, w]]), np.zeros(1), np.zeros(2),
                                                         0.1, 0.9, 0.99, 1e-8, 1)),
    "adam_t_zero": (ValueError, lambda: adam_step(ValMatrix([[u]]), np.zeros(1), np.zeros(1),
                                                  0.1, 0.9, 0.99, 1e-8, 0)),
    "adam_shared_moments": (ValueError, lambda: adam_step(ValMatrix([[Val(1.0), Val(2.0)]]),
                                                          *[np.zeros(2)] * 2, 0.1, 0.9, 0.99, 1e-8, 1)),
    "adam_steps_moment_type": (TypeError, lambda: adam_steps(
        [(ValMatrix([[u]]), array("f", [0.0]), array("d", [0.0]))], 0.1, 0.9, 0.99, 1e-8, 1)),
    "adam_steps_moment_length": (ValueError, lambda: adam_steps(
        [(ValMatrix([[u, w]]), array("d", [0.0]), array("d", [0.0] * 2))], 0.1, 0.9, 0.99, 1e-8, 1)),
    "adam_steps_t_zero": (ValueError, lambda: adam_steps([], 0.1, 0.9, 0.99, 1e-8, 0)),
    "adam_steps_none": (TypeError, lambda: adam_steps([(None, array("d", [0.0]), array("d", [0.0]))],
                                                      0.1, 0.9, 0.99, 1e-8, 1)),
    "adam_steps_none_moment": (TypeError, lambda: adam_steps([(ValMatrix([[u]]), None, array("d", [0.0]))],
                                                             0.1, 0.9, 0.99, 1e-8, 1)),
    "adam_step_none": (TypeError, lambda: adam_step(None, np.zeros(1), np.zeros(1), 0.1, 0.9, 0.99, 1e-8, 1)),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_raises(name):
    error, call = BAD_INPUTS[name]
    with pytest.raises(error):
        call()


def test_val_cannot_be_pickled():
    with pytest.raises((TypeError, pickle.PicklingError)):
        pickle.dumps(Val(1.0))
    with pytest.raises((TypeError, pickle.PicklingError)):
        pickle.dumps(ValMatrix([[Val(1.0)]]))


def test_repr_shows_data_and_grad():
    v = Val(1.5)
    v.grad = 0.25
    assert repr(v) == "Val(data=1.5, grad=0.25)"


def test_float_conversion():
    assert float(Val(2.5)) == 2.5


# Deep graphs: built, back-propagated and freed without recursion (in a subprocess: a C-stack
# overflow would kill the interpreter, which then shows here as a failed return code).


def run_script(script, tmp_path):
    """The script's stdout; run from an empty directory so `microgpt` is the installed package."""
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


DEEP_CHAIN = """
from microgpt import Val
x = Val(1.0)
y = x
for _ in range(1_000_000):
    y = y * 1.0000001 + 0.0          # two nodes per step
y.backward()
print(repr(x.grad), repr(y.data))
del y                                # frees two million nodes, newest first
z = x
for _ in range(1_000_000):
    z = z - 0.0                      # freed without a backward pass first
del z
print("freed")
"""


def test_million_node_chain(tmp_path):
    grad, data, freed = run_script(DEEP_CHAIN, tmp_path).split()
    assert math.isclose(float(grad), 1.0000001**1_000_000, rel_tol=1e-9)
    assert math.isclose(float(data), 1.0000001**1_000_000, rel_tol=1e-9)
    assert freed == "freed"


DEEP_FUSED_CHAIN = """
from microgpt import Val, ValMatrix, cross_entropy, dot, linear, rmsnorm, softmax, vsum
x = Val(1.0)
y = x
M = ValMatrix([[1.0]])
for _ in range(100_000):             # 300k fused nodes, each holding its parent in a shared pack
    y = vsum([y, 0.5], 1.0)
    y = dot([y], [1.00001])
    y = linear([y], M)[0]
y.backward()
print(repr(x.grad))
del y, M
y = x
for _ in range(30_000):              # the shared-factor nodes of softmax, rmsnorm, cross_entropy
    y = softmax([y, 0.0])[0]
    y = rmsnorm([y, 1.0])[0]
    y = cross_entropy([y, 0.0], 1)
x.grad = 0.0
y.backward()
print(repr(x.grad))
del y
print("freed")
"""


def test_deep_fused_chain(tmp_path):
    grad, fused_grad, freed = run_script(DEEP_FUSED_CHAIN, tmp_path).split()
    assert math.isclose(float(grad), 1.00001**100_000, rel_tol=1e-9)
    assert math.isfinite(float(fused_grad))
    assert freed == "freed"


def test_derivatives_at_the_edges_of_the_doubles():
    tiny = Val(1e-160)
    (tiny / tiny).backward()               # d(x/x)/dx = 0, not an underflowed 1/x^2
    assert tiny.grad == 0.0
    z = Val(0.0)
    (z ** 0).backward()                    # x^0 is flat, even at 0
    assert z.grad == 0.0
    w = Val(2.0)
    (0.0 ** w).backward()                  # 0^a is flat in a > 0
    assert w.grad == 0.0


def test_a_freed_deep_graph_gives_its_memory_back(tmp_path):
    code = textwrap.dedent("""
        from microgpt import Val
        def rss_mb():
            return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
        x = Val(1.0)
        y = x
        for _ in range(1_000_000):
            y = y * 1.0 + 0.0
        peak = rss_mb()
        del y
        print(peak, rss_mb())
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    peak, after = map(float, res.stdout.split())
    assert after < peak / 3, (peak, after)
