"""ValMatrix adoption: a matrix of leaves keeps their numbers in contiguous arrays, and the Vals
still read and write those same numbers, whatever happens to the matrix."""
import gc

import pytest

from microgpt import Val, ValMatrix, linear, vsum


def test_adopted_vals_share_their_numbers_with_the_matrix():
    rows = [[Val(1.0), Val(2.0)], [Val(3.0), Val(4.0)]]
    W = ValMatrix(rows)
    assert W.contiguous and W.shape == (2, 2)
    assert W.datas() == [1.0, 2.0, 3.0, 4.0]
    rows[1][0].data = 30.0                       # write through the Val ...
    x = [Val(1.0), Val(1.0)]
    assert [v.data for v in linear(x, W)] == [3.0, 34.0]   # ... the matrix sees it
    W.set_datas([5.0, 6.0, 7.0, 8.0])            # write through the matrix ...
    assert rows[0][1].data == 6.0                # ... the Val sees it
    out = linear(x, W)
    vsum(out).backward()
    assert W.grads() == [1.0, 1.0, 1.0, 1.0] and rows[1][1].grad == 1.0
    assert x[0].grad == 12.0 and x[1].grad == 14.0
    W.zero_grad()
    assert rows[0][0].grad == 0.0


def test_a_val_outlives_its_matrix():
    v = Val(2.5)
    W = ValMatrix([[v]])
    v.grad = 1.5
    del W
    gc.collect()
    assert (v.data, v.grad) == (2.5, 1.5)
    v.data = 4.0
    assert v.data == 4.0


def test_shared_repeated_or_interior_vals_stay_correct_without_adoption():
    a, b = Val(2.0), Val(3.0)
    first = ValMatrix([[a, b]])
    second = ValMatrix([[b, a]])                 # already adopted by `first`
    twice = ValMatrix([[Val(1.0), Val(1.0)], [a, a]])
    c = Val(1.0)
    repeated = ValMatrix([[c, c]])               # the same Val twice in one matrix
    interior = ValMatrix([[a * 1.0, b + 0.0]])
    assert first.contiguous and not second.contiguous and not twice.contiguous
    assert not repeated.contiguous and not interior.contiguous
    x = [Val(10.0), Val(100.0)]
    loss = vsum(linear(x, first) + linear(x, second) + linear(x, repeated) + linear(x, interior))
    assert loss.data == (20 + 300) + (30 + 200) + (10 + 100) + (20 + 300)
    loss.backward()
    assert a.grad == 10.0 + 100.0 + 10.0 and b.grad == 100.0 + 10.0 + 100.0
    assert c.grad == 110.0
    a.data = 7.0
    assert first.datas() == [7.0, 3.0] and second.datas() == [3.0, 7.0]


def test_ragged_rows_are_refused():
    with pytest.raises(ValueError, match="row 1"):
        ValMatrix([[Val(1.0), Val(2.0)], [Val(3.0)]])
    with pytest.raises(ValueError, match="columns"):
        linear([Val(1.0)], ValMatrix([[Val(1.0), Val(2.0)]]))
