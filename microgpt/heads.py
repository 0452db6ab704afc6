"""Hydra's heads: the objectives that judge an organism by the names it generates.

Follows the seed's Hydra release: the Weaver (flow), the Mirror (symmetry) and the Spark
(creativity) each score one name at a time, and an organism's fitness under a head is the mean
over the names that head can score (NO_SCORE when it can score none of them). The Origin (the
negated held-out loss) is the objective the seed's later versions added, and Classic is the
legacy `evolve` binary's single combined objective.

A head is any object with a `name`, an `objective` (a one-word label) and
`score(names, val_loss) -> float`, higher being better. A head that judges names one by one
subclasses `NameHead` and writes only `score_name`, so a new head is one small class.
Every comparison is case-insensitive: names are lower-cased before they are judged.
"""
import math

NO_SCORE = -100.0            # the fitness of an organism none of whose names a head can score
VOWELS = frozenset("aeiouy")


class KnownNames:
    """Whether a name (lower-cased) is in the training data, in 8 bytes per training name.

    A set of millions of strings would cost gigabytes, so this keeps a sorted array of the names'
    64-bit hashes (Python's own, consistent within the process that builds it) and searches it.
    Two different names share a hash with a chance of about one in 10^19 per comparison.
    """

    def __init__(self, names):
        import numpy as np

        self.hashes = np.fromiter((hash(n.strip().lower()) for n in names), np.int64, count=len(names))
        self.hashes.sort()

    def __contains__(self, name):
        import numpy as np

        h = hash(name)
        i = int(np.searchsorted(self.hashes, h))
        return i < len(self.hashes) and int(self.hashes[i]) == h

    def __len__(self):
        return len(self.hashes)


class NameHead:
    """A head that scores each name, skipping the ones it cannot judge, and averages."""

    name = "Head"
    objective = "Fitness"

    def score_name(self, name):
        """The score of one lower-cased name, or None to skip it."""
        raise NotImplementedError

    def score(self, names, val_loss=None):
        """Mean score over the names this head can judge; NO_SCORE when it can judge none."""
        scores = [s for s in (self.score_name(n.lower()) for n in names) if s is not None]
        return sum(scores) / len(scores) if scores else NO_SCORE

    def __repr__(self):
        return f"{type(self).__name__}()"


def overlong_runs(name):
    """How many letters of name sit in a vowel or consonant run longer than 2 (0 for 'anna')."""
    vowels = consonants = overlong = 0
    for c in name:
        if c in VOWELS:
            vowels, consonants = vowels + 1, 0
        else:
            vowels, consonants = 0, consonants + 1
        if vowels > 2 or consonants > 2:
            overlong += 1
    return overlong


def repeated_halves(name):
    """True when the first ⌊len/2⌋ letters equal the next ⌊len/2⌋ ('abab', 'ababz')."""
    half = len(name) // 2
    return name[:half] == name[half:2 * half]


class Weaver(NameHead):
    """Flow: −1 for each letter in a vowel or consonant run longer than 2, +1 for length 4–8.

    Names shorter than 3 or with anything but letters are skipped.
    """

    name = "Weaver"
    objective = "Flow"

    def score_name(self, name):
        if len(name) < 3 or not name.isalpha():
            return None
        return -overlong_runs(name) + (1.0 if 4 <= len(name) <= 8 else 0.0)


class Mirror(NameHead):
    """Symmetry: +3 for a palindrome, +2 for repeated halves (length ≥ 4), +0.5 for an ending in
    a, n or y. Names shorter than 3 are skipped."""

    name = "Mirror"
    objective = "Symmetry"

    def score_name(self, name):
        if len(name) < 3:
            return None
        score = 3.0 if name == name[::-1] else 0.0
        if len(name) >= 4 and repeated_halves(name):
            score += 2.0
        if name.endswith(("a", "n", "y")):
            score += 0.5
        return score


class Spark(NameHead):
    """Creativity: −5 for a name already in the training data, else +2; +0.5 if longer than 6.

    Names shorter than 3 are skipped. `training_names` is the whole dataset (held-out names too),
    compared case-insensitively.
    """

    name = "Spark"
    objective = "Creativity"

    def __init__(self, training_names):
        self.known = known_names(training_names)

    def score_name(self, name):
        if len(name) < 3:
            return None
        score = -5.0 if name in self.known else 2.0
        if len(name) > 6:
            score += 0.5
        return score

    def __repr__(self):
        return f"Spark(<{len(self.known)} training names>)"


class Origin:
    """Likelihood: the negated held-out loss (higher is better); −inf when the loss is not finite."""

    name = "Origin"
    objective = "Likelihood"

    def score(self, names, val_loss=None):
        if val_loss is None or not math.isfinite(val_loss):
            return -math.inf
        return -float(val_loss)

    def __repr__(self):
        return "Origin()"


class Classic(NameHead):
    """The legacy `evolve` objective: 1.0·flow + 1.2·symmetry + 2.0·creativity, per name.

    flow: −1 per letter in a run longer than 2, +0.5 for length 4–8; symmetry: +2 for a palindrome
    longer than 3, +1.5 for repeated halves (length ≥ 4), +0.2 for an ending in a, n or y;
    creativity: −5 if in the training data, else +1. Names shorter than 3 or with anything but
    letters are skipped. (The mean of the weighted sum is the weighted sum of the three means,
    since all three skip the same names.)
    """

    name = "Classic"
    objective = "Combined"
    WEIGHTS = (1.0, 1.2, 2.0)    # flow, symmetry, creativity

    def __init__(self, training_names):
        self.known = known_names(training_names)

    def score_name(self, name):
        if len(name) < 3 or not name.isalpha():
            return None
        flow = -overlong_runs(name) + (0.5 if 4 <= len(name) <= 8 else 0.0)
        symmetry = 2.0 if len(name) > 3 and name == name[::-1] else 0.0
        if len(name) >= 4 and repeated_halves(name):
            symmetry += 1.5
        if name.endswith(("a", "n", "y")):
            symmetry += 0.2
        creativity = -5.0 if name in self.known else 1.0
        w_flow, w_symmetry, w_creativity = self.WEIGHTS
        return w_flow * flow + w_symmetry * symmetry + w_creativity * creativity

    def __repr__(self):
        return f"Classic(<{len(self.known)} training names>)"


def known_names(training_names):
    """training_names as a KnownNames (built once and shared when it already is one)."""
    return training_names if isinstance(training_names, KnownNames) else KnownNames(training_names)


HYDRA_HEADS = ("weaver", "mirror", "spark", "origin")
DEFAULT_HEADS = "weaver,mirror,spark"


def parse_heads(spec):
    """The head names in spec ('weaver,mirror,spark', any case), lower-cased, in order.

    ValueError with a one-line reason for an empty list, an unknown or a repeated name.
    """
    wanted = [w.strip().lower() for w in spec.split(",")]
    if not spec.strip() or any(not w for w in wanted):
        raise ValueError(f"expected a comma-separated list of heads "
                         f"({', '.join(HYDRA_HEADS)}), got {spec!r}")
    for i, w in enumerate(wanted):
        if w not in HYDRA_HEADS:
            raise ValueError(f"unknown head {w!r} (choose from {', '.join(HYDRA_HEADS)})")
        if w in wanted[:i]:
            raise ValueError(f"{w!r} is named twice")
    return wanted


def make_heads(spec, training_names):
    """The heads named in spec (a string for parse_heads, or its list) as objects."""
    wanted = parse_heads(spec) if isinstance(spec, str) else spec
    known = known_names(training_names) if "spark" in wanted else None
    return [Spark(known) if w == "spark" else {"weaver": Weaver, "mirror": Mirror, "origin": Origin}[w]()
            for w in wanted]
