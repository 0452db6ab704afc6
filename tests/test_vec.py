"""Vec, the vector node: each op's values and gradients against the same op built from scalar
Vals (themselves checked against a pure-Python reference), views, leaves, errors, deep graphs."""
import math
import random

import pytest

from microgpt import Val, ValMatrix, cross_entropy, linear, rmsnorm, softmax, vadd, vsum
from microgpt._core import Vec, attention


def rand(rng, n, scale=1.0):
    return [rng.uniform(-scale, scale) for _ in range(n)]


def matrix(rng, rows, cols, scale=1.0):
    return ValMatrix([[Val(x) for x in rand(rng, cols, scale)] for _ in range(rows)])


def close(a, b, tol=1e-12):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x == pytest.approx(y, rel=tol, abs=tol)


def scalar_attention(q, keys, values, heads, scale):
    """The same attention built from scalar Vals: per head, softmax of scaled dots, then the
    weighted sum of the values."""
    n = len(q)
    hd = n // heads
    out = []
    for h in range(heads):
        lo = h * hd
        att = softmax([vsum([a * b for a, b in zip(q[lo:lo + hd], k[lo:lo + hd])], scale)
                       for k in keys])
        for d in range(hd):
            out.append(vsum([a * v[lo + d] for a, v in zip(att, values)]))
    return out


def weights_of(rng, n):
    """n random weights for a scalar loss sum_i w_i y_i, so every output gets its own gradient."""
    return rand(rng, n)


@pytest.mark.parametrize("relu", [False, True])
def test_linear_matches_scalar_linear(relu):
    rng = random.Random(1)
    W1, W2 = matrix(rng, 7, 5), None
    W2 = ValMatrix([[Val(v.data) for v in row] for row in W1.tolist()])
    xs = rand(rng, 5)
    x_vec, x_vals = Vec(xs), [Val(v) for v in xs]
    y_vec, y_vals = linear(x_vec, W1, 0.7, relu=relu), linear(x_vals, W2, 0.7, relu=relu)
    close(y_vec.data, [v.data for v in y_vals])
    c = weights_of(rng, 7)
    vsum([y_vec[i] * c[i] for i in range(7)]).backward()
    vsum([y_vals[i] * c[i] for i in range(7)]).backward()
    close(W1.grads(), W2.grads())
    close(x_vec.grad, [v.grad for v in x_vals])
    if relu:
        assert 0.0 in y_vec.data and any(v > 0 for v in y_vec.data)   # both sides were exercised


def test_rmsnorm_vadd_and_cross_entropy_match_scalars():
    rng = random.Random(2)
    a, b = rand(rng, 6, 2.0), rand(rng, 6, 2.0)
    va, vb = Vec(a), Vec(b)
    sa, sb = [Val(x) for x in a], [Val(x) for x in b]
    y_vec = rmsnorm(vadd(va, vb), 1e-5)
    y_vals = rmsnorm(vadd(sa, sb), 1e-5)
    close(y_vec.data, [v.data for v in y_vals])
    loss_vec, loss_vals = cross_entropy(y_vec, 3), cross_entropy(y_vals, 3)
    assert loss_vec.data == pytest.approx(loss_vals.data, rel=1e-14)
    loss_vec.backward()
    loss_vals.backward()
    close(va.grad, [v.grad for v in sa])
    close(vb.grad, [v.grad for v in sb])


@pytest.mark.parametrize("heads, steps", [(1, 1), (2, 3), (4, 5)])
def test_attention_matches_scalar_attention(heads, steps):
    rng = random.Random(heads * 10 + steps)
    n = 8
    q, ks, vs = rand(rng, n, 2.0), [rand(rng, n, 2.0) for _ in range(steps)], \
        [rand(rng, n) for _ in range(steps)]
    qv, kv, vv = Vec(q), [Vec(k) for k in ks], [Vec(v) for v in vs]
    qs, kss, vss = [Val(x) for x in q], [[Val(x) for x in k] for k in ks], \
        [[Val(x) for x in v] for v in vs]
    scale = 1 / math.sqrt(n // heads)
    out_vec = attention(qv, kv, vv, heads)
    out_vals = scalar_attention(qs, kss, vss, heads, scale)
    close(out_vec.data, [v.data for v in out_vals])
    c = weights_of(rng, n)
    vsum([out_vec[i] * c[i] for i in range(n)]).backward()
    vsum([out_vals[i] * c[i] for i in range(n)]).backward()
    close(qv.grad, [v.grad for v in qs])
    for a, b in zip(kv + vv, kss + vss):
        close(a.grad, [v.grad for v in b])


def test_a_row_is_a_view_whose_gradient_lands_in_the_matrix():
    W = ValMatrix([[Val(1.0), Val(2.0)], [Val(3.0), Val(4.0)]])
    r = W.row(1)
    assert r.data == [3.0, 4.0] and len(r) == 2
    (r[0] * 5.0 + r[1]).backward()
    assert W.grads() == [0.0, 0.0, 5.0, 1.0]
    assert W[1][0].grad == 5.0                       # the Vals read the same arrays
    W[1][1].data = 7.0
    assert r.data == [3.0, 7.0]
    del W                                            # the view keeps the arrays alive
    assert r.data == [3.0, 7.0]


def test_gradients_accumulate_and_a_shared_parent_gets_both_shares():
    x = Vec([1.0, -2.0])
    y = vadd(x, x)
    y[0].backward()
    assert x.grad == [2.0, 0.0]                      # both shares of the shared parent
    y[0].backward()                                  # as with Vals, interior grads accumulate
    assert y.grad == [2.0, 0.0] and x.grad == [6.0, 0.0]
    assert y[-1].data == -4.0


def test_errors_are_clear():
    W = matrix(random.Random(0), 3, 4)
    with pytest.raises(ValueError, match="columns"):
        linear(Vec([1.0, 2.0]), W)
    with pytest.raises(TypeError, match="ValMatrix"):
        linear(Vec([1.0] * 4), [[1.0] * 4] * 3)
    with pytest.raises(ValueError, match="differ"):
        vadd(Vec([1.0]), Vec([1.0, 2.0]))
    with pytest.raises(ValueError, match="heads"):
        attention(Vec([1.0] * 6), [Vec([1.0] * 6)], [Vec([1.0] * 6)], 4)
    with pytest.raises(ValueError, match="keys"):
        attention(Vec([1.0] * 4), [], [], 2)
    with pytest.raises(TypeError, match="Vec"):
        attention(Vec([1.0] * 4), [[1.0] * 4], [Vec([1.0] * 4)], 2)
    with pytest.raises(IndexError):
        Vec([1.0])[1]
    with pytest.raises(IndexError):
        cross_entropy(Vec([1.0, 2.0]), 2)
    inner = ValMatrix([[Val(1.0) + 1.0]])
    with pytest.raises(TypeError, match="weights"):
        inner.row(0)
    with pytest.raises(ValueError, match="empty"):
        rmsnorm(Vec([]))


def test_a_deep_chain_of_vecs_is_walked_and_freed_without_recursion():
    x = Vec([1.0, 2.0])
    y = x
    for _ in range(200_000):
        y = vadd(y, Vec([0.0, 0.0]))
    loss = y[1] * 1.0
    loss.backward()
    assert x.grad == [0.0, 1.0]
    del loss, y                                      # 200,000 nested releases, no C recursion
    assert x.data == [1.0, 2.0]


def test_linear_of_a_row_of_its_own_matrix_matches_scalars():
    rng = random.Random(5)
    W1 = matrix(rng, 4, 4)
    W2 = ValMatrix([[Val(v.data) for v in row] for row in W1.tolist()])
    y_vec = linear(W1.row(2), W1, 0.5, relu=True)        # x's data and grad live in W's arrays
    y_vals = linear(W2[2], W2, 0.5, relu=True)
    close(y_vec.data, [v.data for v in y_vals])
    c = weights_of(rng, 4)
    vsum([y_vec[i] * c[i] for i in range(4)]).backward()
    vsum([y_vals[i] * c[i] for i in range(4)]).backward()
    close(W1.grads(), W2.grads())
