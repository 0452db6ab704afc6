"""Sums of floats added left to right, so that a run gives the same numbers on every Python.

From Python 3.12 the built-in `sum` compensates the rounding of a float sum (Neumaier's method),
so the same floats can sum to another last bit on 3.12 than on 3.11 and 3.9, and a near tie in
the evolution can then go the other way. Every sum that reaches a result (a loss, a score, a
standing) is `total` here: plain additions in order, which is what `sum` did before 3.12.
"""


def total(xs):
    """The floats of xs added one after another from 0.0, left to right."""
    s = 0.0
    for x in xs:
        s += x
    return s
