"""The heads' scoring rules on hand-computed names, and the --heads parser."""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgpt.heads import (
    NO_SCORE,
    Classic,
    Mirror,
    Origin,
    Spark,
    Weaver,
    make_heads,
    overlong_runs,
    repeated_halves,
)

TRAINING = ["Anna", "emma", "olivia", "bob"]


# Weaver: −1 per letter at which a vowel or consonant run is longer than 2; +1 for length 4–8.

@pytest.mark.parametrize("name, expected", [
    ("anna", 1.0),         # a n n a: runs 1,1,2,1; length 4
    ("strength", -2.0),    # s t r(-1) e n g t(-1) h(-1); length 8
    ("aaaa", -1.0),        # a a a(-1) a(-1); length 4
    ("Aaaa", -1.0),        # lower-cased first
    ("ayo", -1.0),         # y is a vowel: a y o(-1); length 3 earns nothing
    ("bob", 0.0),
    ("christopher", -1.0),  # c h r(-1) i s t o p h e r; length 11 earns nothing
    ("banana", 1.0),
    ("bananarama", 0.0),    # length 10 earns nothing
])
def test_weaver_scores_names_by_hand(name, expected):
    assert Weaver().score([name]) == expected


@pytest.mark.parametrize("name", ["ab", "a", "", "an-na", "x1y", "ann a"])
def test_weaver_skips_short_and_non_letter_names(name):
    assert Weaver().score_name(name) is None


def test_weaver_mean_scoring_averages_over_accepted_names_only():
    weaver = Weaver("mean")
    assert weaver.score(["anna", "ab", "aaaa", "a1b"]) == 0.0   # (1 + -1) / 2
    assert weaver.score(["ab", "x", ""]) == NO_SCORE
    assert weaver.score([]) == NO_SCORE


def test_overlong_runs_counts_letters_not_runs():
    assert overlong_runs("bcdfg") == 3        # letters 3, 4 and 5 of one run
    assert overlong_runs("aeiou") == 3
    assert overlong_runs("banana") == 0


# Mirror: +3 palindrome; +2 repeated halves (length ≥ 4); +0.5 ending in a, n or y.

@pytest.mark.parametrize("name, expected", [
    ("anna", 3.5),     # palindrome, ends in a; 'an' != 'na'
    ("abab", 2.0),     # halves
    ("aaaa", 5.5),     # palindrome, halves, ends in a
    ("bob", 3.0),      # palindrome, too short for halves
    ("kan", 0.5),
    ("abcabcx", 2.0),  # 'abc' == 'abc'
    ("ababa", 5.5),    # palindrome, 'ab' == 'ab', ends in a
    ("Anna", 3.5),     # case-insensitive
    ("xyzzy", 0.5),    # 'xy' != 'zz'; ends in y
    ("a-a", 3.5),      # Mirror does not ask for letters
    ("tom", 0.0),
])
def test_mirror_scores_names_by_hand(name, expected):
    assert Mirror().score([name]) == expected


def test_mirror_skips_short_names():
    assert Mirror().score_name("aa") is None
    assert Mirror("mean").score(["aa", "a", "bob", "tom"]) == 1.5
    assert Mirror("mean").score(["aa"]) == NO_SCORE
    assert Mirror().score(["aa", "a", "bob", "tom"]) == 3.0 / 4


def test_repeated_halves():
    assert repeated_halves("abab") and repeated_halves("ababz") and repeated_halves("abcabc")
    assert not repeated_halves("abba")


# Spark: −5 if in the training data, else +2; +0.5 if longer than 6.

@pytest.mark.parametrize("name, expected", [
    ("anna", -5.0),       # 'Anna' in the data: case-insensitive
    ("ANNA", -5.0),
    ("olivia", -5.0),
    ("zorbax", 2.0),      # length 6 is not longer than 6
    ("zorbaxy", 2.5),
    ("annabel", 2.5),
    ("bob", -5.0),
])
def test_spark_scores_names_by_hand(name, expected):
    assert Spark(TRAINING).score([name]) == expected


def test_spark_mean_scoring_skips_short_names():
    spark = Spark(TRAINING, scoring="mean")
    assert spark.score_name("ab") is None
    assert spark.score(["ab", "anna", "zorbaxy"]) == (-5.0 + 2.5) / 2
    assert spark.score(["", "a"]) == NO_SCORE


def test_origin_is_the_negated_held_out_loss():
    assert Origin().score(["whatever"], 2.5) == -2.5
    assert Origin().score([], 1.0) == -1.0
    assert Origin().score(["x"], math.nan) == -math.inf
    assert Origin().score(["x"], math.inf) == -math.inf


# Classic: 1.0·flow + 1.2·symmetry + 2.0·creativity per name.

@pytest.mark.parametrize("name, expected", [
    # flow 0 + 0.5; symmetry 2 (palindrome > 3) + 0.2 (ends a); creativity -5 (known)
    ("anna", 0.5 + 1.2 * 2.2 + 2.0 * -5),
    # flow 0 (length 3); palindrome but not longer than 3; ends b; new: +1
    ("bab", 2.0),
    # flow 0.5; halves 1.5; new
    ("abab", 0.5 + 1.2 * 1.5 + 2.0),
    # a a a(-1) a(-1) + 0.5; palindrome 2 + halves 1.5 + ends a 0.2; new
    ("aaaa", -1.5 + 1.2 * 3.7 + 2.0),
    # s t r(-1) e n g t(-1) h(-1) + 0.5; nothing; new
    ("strength", -2.5 + 2.0),
    # flow 0; ends in y; new
    ("kay", 1.2 * 0.2 + 2.0),
])
def test_classic_scores_names_by_hand(name, expected):
    assert Classic(TRAINING).score([name]) == pytest.approx(expected)


def test_classic_skips_short_and_non_letter_names():
    classic = Classic(TRAINING)
    assert classic.score_name("ab") is None
    assert classic.score_name("a-b-a") is None
    assert Classic(TRAINING, "mean").score(["ab", "bab"]) == 2.0
    assert Classic(TRAINING, "mean").score(["ab", "1234"]) == NO_SCORE
    assert classic.score(["ab", "bab"]) == 1.0           # counted: 2.0 over two names
    assert classic.score(["ab", "1234"]) == 0.0


# Every head is deterministic and returns a float (or NO_SCORE).

names_st = st.lists(st.text(alphabet="abcdeiouyz-A", max_size=12), max_size=8)


@given(names_st)
def test_each_head_is_deterministic(names):
    for head in make_heads("weaver,mirror,spark,origin", TRAINING) + [Classic(TRAINING)]:
        first, second = head.score(names, 2.0), head.score(list(names), 2.0)
        assert first == second
        assert isinstance(first, float)
        assert math.isfinite(first)


# make_heads: the --heads value.

def test_make_heads_default_order_and_case():
    heads = make_heads("weaver,mirror,spark", TRAINING)
    assert [h.name for h in heads] == ["Weaver", "Mirror", "Spark"]
    assert [h.objective for h in heads] == ["Flow", "Symmetry", "Creativity"]
    assert [h.name for h in make_heads(" Spark , ORIGIN", TRAINING)] == ["Spark", "Origin"]


@pytest.mark.parametrize("spec, message", [
    ("weaver,hydra", "unknown head 'hydra'"),
    ("", "comma-separated"),
    ("weaver,,spark", "comma-separated"),
    ("spark,Spark", "named twice"),
])
def test_make_heads_rejects_bad_values(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        make_heads(spec, TRAINING)
    assert "\n" not in str(info.value)


# Counted scoring (the default): the rule's score summed over the distinct names it accepts,
# divided by every name in the sample.

def test_counted_repeats_add_nothing_but_count():
    # Mirror: anna 3.5 once; its repeats count in N
    assert Mirror().score(["anna", "anna", "anna", "anna"]) == 3.5 / 4
    assert Mirror("mean").score(["anna", "anna", "anna", "anna"]) == 3.5
    # a voice saying one name 135 times in 200 gains nothing from the repeats
    degenerate = ["karan"] * 135 + [f"zz{i}q" for i in range(65)]
    assert Mirror().score(degenerate) == pytest.approx(0.5 / 200)


def test_counted_rejected_names_count_in_n():
    # Weaver rejects ab, x and the empty name: 1 (anna) over 4
    assert Weaver().score(["anna", "ab", "x", ""]) == 0.25
    assert Weaver().score(["ab", "x", ""]) == 0.0       # a sample with names but none accepted
    assert Mirror().score(["aa", "a"]) == 0.0


def test_counted_names_are_trimmed_and_lower_cased_before_counting():
    assert Mirror().score([" Anna", "anna ", "ANNA"]) == 3.5 / 3
    assert Spark(TRAINING).score(["Emma", "emma", "zorbaxy", "Zorbaxy"]) == (-5.0 + 2.5) / 4


def test_counted_known_names_cost_once_each():
    spark = Spark(TRAINING)
    assert spark.score(["bob", "bob", "olivia"]) == (-5.0 - 5.0) / 3


def test_an_empty_sample_scores_no_score_either_way():
    for scoring in ("counted", "mean"):
        for head in (Weaver(scoring), Mirror(scoring), Spark(TRAINING, scoring), Classic(TRAINING, scoring)):
            assert head.score([]) == NO_SCORE


def test_an_unknown_scoring_is_refused():
    with pytest.raises(ValueError, match="unknown scoring 'median'"):
        Weaver("median")


@given(st.lists(st.sampled_from(["anna", "bob", "zorbaxy", "ab", "", "kayak", "emma"]), min_size=1,
                max_size=30))
def test_counted_is_the_distinct_accepted_sum_over_n(names):
    """Counted is the sum over distinct accepted names over N; it agrees with the seed's mean
    exactly when every name is distinct and accepted."""
    for head in (Weaver(), Mirror(), Spark(TRAINING)):
        mean = type(head)("mean") if not isinstance(head, Spark) else Spark(TRAINING, "mean")
        distinct = [n for n in dict.fromkeys(names) if head.score_name(n) is not None]
        expected = sum(head.score_name(n) for n in distinct) / len(names)
        assert head.score(names) == pytest.approx(expected)
        if len(distinct) == len(names):
            assert head.score(names) == pytest.approx(mean.score(names))


def test_make_heads_passes_the_scoring_on():
    heads = make_heads("weaver,mirror,spark,origin", TRAINING, "mean")
    assert [getattr(h, "scoring", None) for h in heads] == ["mean", "mean", "mean", None]
    assert [h.scoring for h in make_heads("weaver,spark", TRAINING)] == ["counted", "counted"]


def test_known_names_looked_up_together_agree_with_one_at_a_time():
    from microgpt.heads import KnownNames

    known = KnownNames(["Olivia", " bob ", "zed"])
    asked = ["olivia", "bob", "zed", "ann", "", "zzzzzz", "olivia"]
    assert known.among(asked) == [True, True, True, False, False, False, True]
    assert [n in known for n in asked] == known.among(asked)
    assert KnownNames([]).among(["bob"]) == [False] and "bob" not in KnownNames([])
    spark = Spark(["Olivia"])
    assert spark.score_names(["olivia", "al", "maximilian"]) == [-5.0, None, 2.5]
    assert [spark.score_name(n) for n in ["olivia", "al", "maximilian"]] == [-5.0, None, 2.5]


def test_a_head_is_declared_once_in_heads(monkeypatch):
    from microgpt import heads

    class Echo(heads.NameHead):
        name, objective, colour = "Echo", "Echo", "#123456"

        def score_name(self, name):
            return 1.0

    monkeypatch.setattr(heads, "HEADS", (*heads.HEADS, Echo))
    made = heads.make_heads(["echo", "spark"], ["anna"], "counted")
    assert [type(h) for h in made] == [Echo, heads.Spark] and made[1].known.among(["anna"])[0]
    assert made[0].score(["bo", "bo", "al"]) == pytest.approx(2 / 3)
    with pytest.raises(heads.UsageError, match="unknown head 'hydra'"):
        heads.make_heads(["hydra"], [], "counted")
    assert heads.COLOURS["Weaver"] == heads.Weaver.colour
