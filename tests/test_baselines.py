"""The baselines Hydra is measured against: their budget is the run's, spent to the evaluation."""
import random

import pytest
from test_hydra import assert_valid, fast_cfg, threads

from microgpt import baselines, hydra
from microgpt.heads import make_heads


def test_the_search_budget_is_what_the_yardstick_and_the_confirmation_leave():
    fixed = baselines.REFERENCE + hydra.CONFIRMED * hydra.CONFIRM_TRIALS
    assert baselines.search_budget(478) == 478 - fixed
    assert baselines.search_budget(fixed + 1) == 1
    with pytest.raises(ValueError, match="leaves none to search with"):
        baselines.search_budget(fixed)


def test_extended_genomes_cover_the_space_mutants_reach():
    rng = random.Random(0)
    genomes = [baselines.extended_genome(rng) for _ in range(2000)]
    for g in genomes:
        assert_valid(g)
    for gene, values in (("n_emb", hydra.MUTANT_EMB), ("n_ff_exp", hydra.MUTANT_FF),
                         ("n_layer", range(1, 5)), ("n_ctx", range(4, 17))):
        assert {g[gene] for g in genomes} == set(values)
    assert min(g["lr"] for g in genomes) < 0.0002 and max(g["lr"] for g in genomes) > 0.05
    assert min(g["temperature"] for g in genomes) < 0.15 and max(g["temperature"] for g in genomes) > 2.5


def test_random_search_spends_exactly_the_budget_it_is_given():
    heads = make_heads("weaver,mirror,spark", ["anna"])
    made = []

    class Counting:
        """The fake evaluator, counting the evaluations it runs."""

        def __init__(self, inner):
            self.inner = inner

        def run(self, tasks, on_retry=None):
            made.extend(t.key for t in tasks)
            return self.inner.run(tasks, on_retry)

    with threads(2) as ex:
        budget = baselines.REFERENCE + hydra.CONFIRMED * hydra.CONFIRM_TRIALS + 17
        winner, standing, spent = baselines.random_search(heads, Counting(ex), fast_cfg(), budget)
    assert spent == budget == len(made) == len(set(made))
    assert 0.0 <= standing <= 1.0
    assert len(winner.judged()) == hydra.CONFIRM_TRIALS
    assert winner.genome["temperature"] in hydra.voices(winner.organism.genome)
