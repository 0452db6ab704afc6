"""Hydra's heads: the objectives that judge an organism by the names it generates.

Follows the seed's Hydra release: the Weaver (flow), the Mirror (symmetry) and the Spark
(creativity) each score one name at a time. How a sample of N names adds up is the scoring:

  counted (the default): the sum of the rule's score over the *distinct* names the rule accepts,
      divided by N. A repeat of a name already counted and a name the rule rejects (too short,
      not letters) add 0 but still count in N, so a voice that says one name on repeat, or
      mumbles, cannot win a head by saying little.
  mean (the seed's): the mean of the rule's score over the names it accepts, repeats included
      (NO_SCORE when it accepts none). Kept to reproduce results from before counting.

Either way an empty sample scores NO_SCORE. The Origin (the negated held-out loss) is the
objective the seed's later versions added, and Classic is the legacy `evolve` binary's single
combined objective.

A head is any object with a `name`, an `objective` (a one-word label) and
`score(names, val_loss) -> float`, higher being better. A head that judges names one by one
subclasses `NameHead` and writes only `score_name`, so a new head is one small class.
Names are trimmed and lower-cased before they are judged.
"""
import math

from microgpt._core import total
from microgpt.errors import UsageError

NO_SCORE = -100.0            # the fitness of an empty sample (and, averaged, of one it cannot score)
VOWELS = frozenset("aeiouy")
SCORINGS = ("counted", "mean")
DEFAULT_SCORING = "counted"


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
        return bool(self.among([name])[0])

    def among(self, names):
        """Whether each of names is known, as a list of bools: one search for them all (a search
        per name would cost more in numpy's call than in the search)."""
        import numpy as np

        if not len(self.hashes):
            return [False] * len(names)
        wanted = np.fromiter((hash(n) for n in names), np.int64, count=len(names))
        at = np.minimum(np.searchsorted(self.hashes, wanted), len(self.hashes) - 1)
        return (self.hashes[at] == wanted).tolist()

    def __len__(self):
        return len(self.hashes)


class NameHead:
    """A head that scores each name by a rule (`score_name`) and adds them up by its scoring:
    "counted" (distinct accepted names, over all N) or "mean" (the seed's average)."""

    name = "Head"
    objective = "Fitness"
    colour = "#7f7f7f"              # in the report's figures

    @classmethod
    def make(cls, known, scoring):
        """This head, for a run whose training names are known (a KnownNames, or None when no
        head of the run needs them: `needs_names`), adding up names by scoring."""
        return cls(scoring)

    def __init__(self, scoring=DEFAULT_SCORING):
        if scoring not in SCORINGS:
            raise ValueError(f"unknown scoring {scoring!r} (choose from {', '.join(SCORINGS)})")
        self.scoring = scoring

    def score_name(self, name):
        """The score of one trimmed, lower-cased name, or None when the rule rejects it."""
        raise NotImplementedError

    def score_names(self, names):
        """The rule's score of each name (None where it rejects one): one call per sample, so a
        head can look its names up together (Spark)."""
        return [self.score_name(n) for n in names]

    def score(self, names, val_loss=None):
        """The sample's score by this head's scoring; NO_SCORE for an empty sample (and, for
        "mean", when the rule accepts none of the names)."""
        names = [n.strip().lower() for n in names]
        if not names:
            return NO_SCORE
        if self.scoring == "counted":                  # each distinct name once, in order
            scores = self.score_names(list(dict.fromkeys(names)))
            return total(s for s in scores if s is not None) / len(names)
        scores = [s for s in self.score_names(names) if s is not None]
        return total(scores) / len(scores) if scores else NO_SCORE

    def __repr__(self):
        return f"{type(self).__name__}({self._repr_args()})"

    def _repr_args(self):
        return "" if self.scoring == DEFAULT_SCORING else f"scoring={self.scoring!r}"


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

    Names shorter than 3 or with anything but letters are rejected.
    """

    name = "Weaver"
    objective = "Flow"
    colour = "#1f77b4"

    def score_name(self, name):
        if len(name) < 3 or not name.isalpha():
            return None
        return -overlong_runs(name) + (1.0 if 4 <= len(name) <= 8 else 0.0)


class Mirror(NameHead):
    """Symmetry: +3 for a palindrome, +2 for repeated halves (length ≥ 4), +0.5 for an ending in
    a, n or y. Names shorter than 3 are rejected."""

    name = "Mirror"
    objective = "Symmetry"
    colour = "#9467bd"

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

    Names shorter than 3 are rejected. `training_names` is the whole dataset (held-out names too),
    compared case-insensitively.
    """

    name = "Spark"
    objective = "Creativity"
    colour = "#ff7f0e"
    needs_names = True

    @classmethod
    def make(cls, known, scoring):
        return cls(known, scoring)

    def __init__(self, training_names, scoring=DEFAULT_SCORING):
        super().__init__(scoring)
        self.known = known_names(training_names)

    def score_name(self, name):
        return self.score_names([name])[0]

    def score_names(self, names):
        known = self.known.among(names)
        return [None if len(n) < 3 else (-5.0 if k else 2.0) + (0.5 if len(n) > 6 else 0.0)
                for n, k in zip(names, known)]

    def _repr_args(self):
        return ", ".join(filter(None, [f"<{len(self.known)} training names>", super()._repr_args()]))


class Origin:
    """Likelihood: the negated held-out loss (higher is better); −inf when the loss is not finite."""

    name = "Origin"
    objective = "Likelihood"
    colour = "#2ca02c"

    @classmethod
    def make(cls, known, scoring):
        return cls()

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
    letters are rejected. (The score of the weighted sum is the weighted sum of the three scores,
    since all three reject the same names.)
    """

    name = "Classic"
    objective = "Combined"
    colour = "#8c564b"
    WEIGHTS = (1.0, 1.2, 2.0)    # flow, symmetry, creativity

    def __init__(self, training_names, scoring=DEFAULT_SCORING):
        super().__init__(scoring)
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

    def _repr_args(self):
        return ", ".join(filter(None, [f"<{len(self.known)} training names>", super()._repr_args()]))


def known_names(training_names):
    """training_names as a KnownNames (built once and shared when it already is one)."""
    return training_names if isinstance(training_names, KnownNames) else KnownNames(training_names)


HEADS = (Weaver, Mirror, Spark, Origin)       # Hydra's heads: a new head is its class, added here
HYDRA_HEADS = tuple(h.name.lower() for h in HEADS)
DEFAULT_HEADS = "weaver,mirror,spark"
COLOURS = {h.name: h.colour for h in (*HEADS, Classic)}


def parse_heads(spec):
    """The head names in spec ('weaver,mirror,spark', any case), lower-cased, in order.

    UsageError with a one-line reason for an empty list, an unknown or a repeated name.
    """
    wanted = [w.strip().lower() for w in spec.split(",")]
    if not spec.strip() or any(not w for w in wanted):
        raise UsageError(f"expected a comma-separated list of heads "
                         f"({', '.join(HYDRA_HEADS)}), got {spec!r}")
    for i, w in enumerate(wanted):
        if w not in HYDRA_HEADS:
            raise UsageError(f"unknown head {w!r} (choose from {', '.join(HYDRA_HEADS)})")
        if w in wanted[:i]:
            raise UsageError(f"{w!r} is named twice")
    return wanted


def make_heads(spec, training_names, scoring=DEFAULT_SCORING):
    """The heads named in spec (a string for parse_heads, or its list) as objects, the name heads
    adding up their names by scoring ("counted" or "mean")."""
    wanted = parse_heads(spec) if isinstance(spec, str) else spec
    by_name = {h.name.lower(): h for h in HEADS}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise UsageError(f"unknown head {unknown[0]!r} (choose from {', '.join(HYDRA_HEADS)})")
    classes = [by_name[w] for w in wanted]
    known = (known_names(training_names)
             if any(getattr(h, "needs_names", False) for h in classes) else None)
    return [h.make(known, scoring) for h in classes]
