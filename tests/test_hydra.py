"""Hydra: genomes and mutation, the Gathering, the engine with faults, and the command end to end.

Engine tests use a fake evaluation (tests/hydra_faults.py) so they run in milliseconds; the
command tests train for real, on tiny runs, as subprocesses in empty temporary directories (marked
slow; the parser and the help text are also checked in-process).
"""
import functools
import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from statistics import NormalDist

import hydra_faults
import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgpt import hydra, hydra_cli
from microgpt.console import WIDTH
from microgpt.evaluators import PoolEvaluator
from microgpt.genome import check_genes, load_genome, validate_genome
from microgpt.heads import Classic, Mirror, Spark, Weaver, make_heads
from microgpt.hydra import (
    HydraConfig,
    Organism,
    choose_winner,
    derive_seed,
    evolve,
    full_genome,
    gather,
    mutate,
    new_genome,
    rank,
    repair,
    standing,
)
from microgpt.train import load_names

TINY = ["--population", "4", "--generations", "1", "--cycles", "2", "--steps", "20"]
BIN = Path(sys.executable).parent


def command(name, module):
    """The console script beside this Python, or `python -m module` before it is registered."""
    script = BIN / name
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


HYDRA = command("microgpt-hydra", "microgpt.hydra")
MICROGPT = command("microgpt", "microgpt.cli")


def run_hydra(args, cwd, **kw):
    return subprocess.run(HYDRA + list(args), cwd=cwd, capture_output=True, text=True,
                          timeout=300, **kw)


# Genomes.

genome_st = st.fixed_dictionaries({
    "n_emb": st.sampled_from([16, 24, 32, 40]),
    "n_head": st.sampled_from([2, 4]),
    "n_layer": st.integers(1, 4),
    "lr": st.floats(0.0001, 0.1),
    "temperature": st.floats(0.1, 3.0),
    "cooling": st.floats(0.5, 1.0),
    "n_ctx": st.integers(4, 16),
    "n_ff_exp": st.integers(1, 4),
})


def assert_valid(genome):
    assert set(genome) == set(hydra.GENES)
    assert genome["n_emb"] in (16, 24, 32, 40)
    assert genome["n_head"] in (2, 4)
    assert 1 <= genome["n_layer"] <= 4
    assert 0.0001 <= genome["lr"] <= 0.1
    assert 0.1 <= genome["temperature"] <= 3.0
    assert 0.5 <= genome["cooling"] <= 1.0
    assert 4 <= genome["n_ctx"] <= 16 and 1 <= genome["n_ff_exp"] <= 4
    assert genome["n_emb"] % genome["n_head"] == 0
    check_genes(full_genome(genome, 300))


@given(st.integers(0, 2**63 - 1))
def test_new_genomes_come_from_the_seed_ranges(seed):
    genome = new_genome(random.Random(seed))
    assert_valid(genome)
    assert genome["n_emb"] in (16, 24, 32) and genome["n_layer"] <= 3
    assert 0.001 <= genome["lr"] < 0.015
    # the genes newer than the seed start at the defaults: the first generation is the seed's
    assert (genome["temperature"], genome["cooling"], genome["n_ctx"], genome["n_ff_exp"]) == (
        1.0, 1.0, 16, 4)


@given(genome_st, st.integers(0, 2**63 - 1))
def test_mutation_always_yields_a_valid_genome_changing_one_gene(genome, seed):
    before = dict(genome)
    child = mutate(genome, random.Random(seed))
    assert_valid(child)
    assert sum(child[k] != genome[k] for k in genome) <= 1
    assert genome == before                     # the parent is left as it was
    assert child == mutate(genome, random.Random(seed))


def test_mutation_steps_layers_by_one_and_scales_lr_temperature_and_cooling_within_bounds():
    rng = random.Random(0)
    genes = {"temperature": 1.0, "cooling": 1.0, "n_ctx": 16, "n_ff_exp": 4}
    moved, contexts = set(), set()
    for _ in range(500):
        parent = {"n_emb": 16, "n_head": 4, "n_layer": 4, "lr": 0.1, **genes, "temperature": 3.0}
        child = mutate(parent, rng)
        assert child["n_layer"] in (3, 4)
        assert 0.07 - 1e-12 <= child["lr"] <= 0.1
        assert 2.25 - 1e-12 <= child["temperature"] <= 3.0
        assert 0.8 - 1e-12 <= child["cooling"] <= 1.0      # cools, never warms past 1
        parent = {"n_emb": 16, "n_head": 4, "n_layer": 1, "lr": 0.0001, **genes, "n_ctx": 6}
        child = mutate(parent, rng)
        assert child["n_layer"] in (1, 2)
        assert 0.0001 <= child["lr"] <= 0.00013 + 1e-12
        contexts.add(child["n_ctx"])
        moved |= {k for k in parent if child[k] != parent[k]}
    assert moved == set(hydra.GENES)
    assert contexts == set(range(4, 17))           # drawn afresh, any length a name needs


def test_repair_falls_back_to_two_heads():
    assert repair({"n_emb": 18, "n_head": 4, "n_layer": 1, "lr": 0.01})["n_head"] == 2
    assert repair({"n_emb": 24, "n_head": 4, "n_layer": 1, "lr": 0.01})["n_head"] == 4


def test_full_genome_has_the_seven_genes_the_temperature_and_the_cooling():
    genome = full_genome({"n_emb": 24, "n_head": 2, "n_layer": 3, "lr": 0.01, "temperature": 0.8,
                          "cooling": 0.7, "n_ctx": 12, "n_ff_exp": 2}, 123)
    assert list(genome) == ["n_emb", "n_ctx", "n_layer", "n_head", "n_ff_exp", "steps", "lr",
                            "temperature", "cooling"]
    assert genome == {"n_emb": 24, "n_ctx": 12, "n_layer": 3, "n_head": 2, "n_ff_exp": 2,
                      "steps": 123, "lr": 0.01, "temperature": 0.8, "cooling": 0.7}


def test_derived_seeds_are_the_same_in_another_process_and_differ_by_identity():
    here = derive_seed(7, 1, 2, "Weaver", 3)
    code = "from microgpt.hydra import derive_seed; print(derive_seed(7, 1, 2, 'Weaver', 3))"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=BIN, check=True).stdout
    assert int(there) == here
    assert 0 <= here < 2**63
    assert len({derive_seed(7, c, g, h, i) for c in range(3) for g in range(3)
                for h in ("Weaver", "Mirror") for i in range(8)}) == 3 * 3 * 2 * 8


# Ranking and the Gathering, on organisms with made-up scores.

HEADS3 = [Weaver(), Mirror(), Spark([])]


GENOME = {"n_emb": 16, "n_head": 2, "n_layer": 1, "lr": 0.01, "temperature": 1.0, "cooling": 1.0,
          "n_ctx": 16, "n_ff_exp": 4}


def organism(head, index, **scores):
    o = Organism(dict(GENOME), head, 0, 0, index, index)
    o.birth.result = {"names": [], "val_loss": 1.0}
    o.birth.scores = {h.name: scores.get(h.name, 0.0) for h in HEADS3}
    return o


def trial_of(o, **scores):
    """o re-judged (a trial on seed 0), with made-up scores."""
    t = hydra.Trial(o, len(o.trials), 0, result={"names": [], "val_loss": 1.0},
                    scores={h.name: scores.get(h.name, 0.0) for h in HEADS3})
    o.trials.append(t)
    return t


def island(head, fitnesses):
    pop = [organism(head, i, **{head: f}) for i, f in enumerate(fitnesses)]
    return rank(pop, head)


def test_rank_is_best_first_and_stable():
    pop = [organism("Weaver", i, Weaver=f) for i, f in enumerate([1.0, 3.0, 1.0, -math.inf, 3.0])]
    assert [o.index for o in rank(pop, "Weaver")] == [1, 4, 0, 2, 3]


def test_gathering_never_returns_a_heads_own_champions_and_replaces_the_worst():
    populations = {h.name: island(h.name, [8, 7, 6, 5, 4, 3, 2, 1]) for h in HEADS3}
    before = {name: list(pop) for name, pop in populations.items()}
    pool, received, after = gather(populations, HEADS3)
    assert [o.id for o in pool] == [o.id for h in HEADS3 for o in before[h.name][:2]]
    for h in HEADS3:
        own = {o.id for o in before[h.name][:2]}
        immigrants = received[h.name]
        assert len(immigrants) == 4
        assert not own & {o.id for o in immigrants}
        assert {o.head for o in immigrants} == {x.name for x in HEADS3} - {h.name}
        # the four worst natives (fitness 4, 3, 2, 1) made room; the rest stay
        survivors = [o for o in after[h.name] if o.head == h.name]
        assert sorted(o.fitness(h.name) for o in survivors) == [5, 6, 7, 8]
        assert len(after[h.name]) == 8
        assert after[h.name] == rank(after[h.name], h.name)


def test_immigrants_are_judged_by_the_receiving_head():
    populations = {h.name: island(h.name, [8, 7, 6, 5]) for h in HEADS3}
    # Mirror's champions score 100 under Weaver: they should lead Weaver's island after the exchange
    for o in populations["Mirror"][:2]:
        o.birth.scores["Weaver"] = 100.0
    _, received, after = gather(populations, HEADS3)
    assert [o.head for o in after["Weaver"][:2]] == ["Mirror", "Mirror"]
    # a population of 4 has room for 2 immigrants: the best 2 under Weaver, never its champions
    assert len(received["Weaver"]) == 2
    assert [o.fitness("Weaver") for o in after["Weaver"]][2:] == [8, 7]


def test_gathering_takes_no_organism_twice():
    populations = {h.name: island(h.name, [8, 7, 6, 5, 4, 3]) for h in HEADS3}
    shared = populations["Mirror"][0]
    populations["Spark"] = rank([shared] + populations["Spark"][1:], "Spark")
    populations["Weaver"] = rank(populations["Weaver"][:-1] + [shared], "Weaver")
    _, received, _ = gather(populations, HEADS3)
    for h in HEADS3:
        ids = [o.id for o in received[h.name]]
        assert len(ids) == len(set(ids))
    assert shared.id not in {o.id for o in received["Weaver"]}   # it already lives there


# The engine, with the fake evaluation.

@contextmanager
def threads(workers, evaluate=hydra_faults.fake_evaluate, retries=1):
    """An evaluator over a thread pool (the fake evaluation by default)."""
    evaluator = PoolEvaluator(evaluate, lambda: ThreadPoolExecutor(workers), retries)
    try:
        yield evaluator
    finally:
        evaluator.close()


def processes(workers, evaluate, retries=1):
    return PoolEvaluator(evaluate, lambda: ProcessPoolExecutor(workers), retries)


def fast_cfg(**kw):
    base = {"population": 4, "generations": 2, "cycles": 2, "steps": 5, "samples": 6, "seed": 3}
    return HydraConfig(**{**base, **kw})


def test_evolve_evaluates_new_organisms_and_rejudges_champions():
    heads = make_heads("weaver,mirror,spark", ["anna"])
    with threads(2) as ex:
        evo = evolve(heads, ex, fast_cfg())
    # 4 per head in the first generation, then 2 mutants per head in each of the other three
    births = [t for t in evo.evaluations if t.n == 0]
    assert len(births) == 3 * (4 + 3 * 2)
    assert len({o.id for o in evo.evaluations}) == len(evo.evaluations)
    field = hydra.field_of([t.organism for t in births], heads)
    for h in heads:
        pop = evo.populations[h.name]
        assert len(pop) == 4 and pop == rank(pop, h.name, field)
        assert all(o.evaluated and set(o.birth.scores) == {"Weaver", "Mirror", "Spark"} for o in pop)
        assert all(o.birth.seed == derive_seed(3, o.cycle, o.generation, o.head, o.index) for o in pop)
    # a re-judging is the same genome on a fresh seed; fitness is the mean over the trials
    rejudged = [t.organism for t in births if len(t.organism.trials) > 1]
    assert rejudged
    for o in rejudged:
        trials = o.judged()
        assert all(t.genome is o.genome and t.organism is o for t in trials[1:])
        assert len({t.seed for t in trials}) == len(trials)
        for h in heads:
            assert o.fitness(h.name) == pytest.approx(sum(t.scores[h.name] for t in trials) / len(trials))
    # every evaluation also sampled at the voices; the final judgement's were heard at the grid
    assert all(o.temperatures == hydra.voices(o.genome) for o in evo.evaluations[:len(births)])
    assert all(len(o.result["names_at"]) == len(o.temperatures) for o in evo.evaluations)


def test_the_final_judgement_tunes_the_leader_and_confirms_the_best_on_fresh_seeds():
    heads = make_heads("weaver,mirror,spark", ["anna"])
    stages = []

    class Spy(hydra.Observer):
        def final_started(self, organisms, todo, what):
            stages.append((what, organisms, todo))

    with threads(2) as ex:
        evo = evolve(heads, ex, fast_cfg(), observer=Spy())
    (first, finalists, todo), *tuning, (last, chosen, confirm) = stages
    assert len(finalists) == hydra.FINALISTS and len(todo) == hydra.FINALISTS * hydra.FINAL_TRIALS
    # the finalists are heard on a grid of temperatures and coolings (only sampling changes)
    assert all(t.temperatures == hydra.temperature_grid(t.genome, hydra.GRID_COOLINGS) for t in todo)
    assert all({c for v in t.temperatures if isinstance(v, tuple) for c in v[1:]}
               == set(hydra.GRID_COOLINGS) - {t.genome["cooling"]} for t in todo)
    # one stage per tuned gene: the leader, from its best voice, with each other value it can
    # take, one gene changed
    assert [what.split()[-1] for what, _, _ in tuning] == list(hydra.TUNED)
    for (_, others, todo), gene in zip(tuning, hydra.TUNED):
        first = others[0].genome
        assert all(o.tuned.endswith(f"@{gene}={o.genome[gene]:.4g}") for o in others)
        assert len({o.genome[gene] for o in others}) == len(others)
        assert len(todo) == len(others) * hydra.TUNING_TRIALS
        assert all(o.genome[k] == first[k] for o in others for k in hydra.GENES
                   if k not in (gene, "n_head"))
    # the confirmed: the best few organisms, at one temperature each, ranked on their fresh
    # trials alone
    assert len(confirm) == hydra.CONFIRMED * hydra.CONFIRM_TRIALS
    assert all(len(t.temperatures) == 1 for t in confirm)
    assert len({id(t.organism) for t in confirm}) == len(chosen) == hydra.CONFIRMED
    winner = choose_winner(evo)[1]
    assert {t.seed for t in winner.judged()} <= {t.seed for t in confirm if t.organism is winner.organism}
    assert len(winner.judged()) == hydra.CONFIRM_TRIALS
    heard = hydra.temperature_grid(winner.organism.genome, hydra.GRID_COOLINGS)
    assert (winner.genome["temperature"] in heard
            or (winner.genome["temperature"], winner.genome["cooling"]) in heard)
    assert len({o.id for o in evo.evaluations}) == len(evo.evaluations)


def test_the_confirmed_are_different_organisms_each_at_its_best_temperature():
    a, b, c = (organism("Weaver", i) for i in range(3))
    heard = [hydra.Heard(o, (t, 1.0), []) for o, t in ((a, 0.8), (a, 0.9), (b, 1.0), (a, 1.1), (c, 0.7))]
    assert hydra.one_of_each(heard, 2) == [heard[0], heard[2]]
    assert hydra.one_of_each(heard, 4) == [heard[0], heard[2], heard[4]]


def test_the_gathering_comes_between_cycles():
    heads = make_heads("weaver,mirror,spark", ["anna"])
    events = []

    class Spy(hydra.Observer):
        def gathering(self, cycle, pool, received):
            events.append((cycle, len(pool), {h: len(imm) for h, imm in received.items()}))

    with threads(2) as ex:
        evolve(heads, ex, fast_cfg(cycles=3, population=8), observer=Spy())
    assert [e[0] for e in events] == [0, 1]       # none after the last cycle
    # each head takes in the other heads' champions it does not already hold (a balanced organism
    # can be the champion of several islands, so some heads take in fewer)
    assert all(e[1] == 6 and set(e[2].values()) <= {0, 1, 2, 3, 4} for e in events)
    assert any(set(e[2].values()) - {0} for e in events)


def test_the_primordial_creature_is_heard_first_and_changes_nothing_else(monkeypatch):
    from microgpt.hydra import engine

    heads = make_heads("weaver,mirror,spark", ["anna"])
    seen = []

    def watching(genome, *args, **kw):
        seen.append(genome)
        return hydra_faults.fake_evaluate(genome, *args, **kw)

    def run():
        with threads(2, watching) as ex:
            evo = evolve(heads, ex, fast_cfg())
        winner = choose_winner(evo)[1]
        return evo, ([(o.id, o.genome, o.seed, o.scores) for o in evo.evaluations],
                     winner.id, winner.genome, evo.yardstick, [o.id for o in evo.front])

    evo, outcome = run()
    first = evo.primordial
    trials = first.judged()
    assert [t.id for t in trials] == ["primordial", "primordial/t2", "primordial/t3"]
    assert len({t.seed for t in trials}) == hydra.PRIMORDIAL_TRIALS == 3
    defaults = hydra.full_genome(hydra.default_genome(), fast_cfg().steps)
    assert all(t.genome == hydra.default_genome() and t.organism.head == "" for t in trials)
    assert seen[:3] == [defaults] * 3 and defaults not in seen[3:]     # heard first, and only then
    assert all(set(t.scores) == {"Weaver", "Mirror", "Spark"} for t in trials)
    assert not {id(t) for t in trials} & {id(o) for o in evo.evaluations + evo.reference + evo.finalists}
    assert len(evo.made()) == len(evo.evaluations) + 3
    # without it, the run is the same run
    monkeypatch.setattr(engine, "primordial", lambda run_seed: [])
    without, other = run()
    assert without.primordial is None and other == outcome


def test_evolve_is_deterministic_for_any_executor():
    heads = make_heads("weaver,mirror,spark,origin", ["anna"])
    runs = []
    for workers in (1, 3):
        with threads(workers) as ex:
            evo = evolve(heads, ex, fast_cfg())
        runs.append(([(o.id, o.genome, o.scores) for o in evo.evaluations],
                     {h: [o.id for o in pop] for h, pop in evo.populations.items()},
                     choose_winner(evo)[1].id, choose_winner(evo)[1].genome))
    assert runs[0] == runs[1]


def test_classic_is_one_island_without_a_gathering():
    heads = [Classic(["anna"])]
    events = []

    class Spy(hydra.Observer):
        def gathering(self, cycle, pool, received):
            events.append("gathering")

        def generation(self, cycle, generation, populations):
            events.append(tuple(populations))

    with threads(2) as ex:
        evo = evolve(heads, ex, HydraConfig(population=5, generations=3, cycles=1, steps=5,
                                            samples=4, seed=1), observer=Spy())
    assert events == [("Classic",)] * 3
    assert len([t for t in evo.evaluations if t.n == 0]) == 5 + 3 * 2


def test_an_evaluation_that_raises_scores_worst_and_the_run_completes():
    heads = make_heads("weaver,mirror,spark", ["anna"])
    victim = derive_seed(3, 0, 0, "Mirror", 0)
    evaluate = functools.partial(hydra_faults.raise_for, victim=victim)
    with threads(2, evaluate) as ex:
        evo = evolve(heads, ex, fast_cfg())
    failed = [o for o in evo.evaluations if o.error is not None]
    assert [o.id for o in failed] == ["c1g1-Mirror-0"]
    first, _, trace = failed[0].error.partition("\n")
    assert first == "RuntimeError: the organism could not be born"
    assert trace.startswith("Traceback") and "raise_for" in trace     # the store keeps it
    assert all(s == -math.inf for s in failed[0].scores.values())
    assert failed[0].organism not in evo.populations["Mirror"][:2]
    assert choose_winner(evo)[1].birth.error is None


def test_when_everything_fails_there_is_no_winner():
    heads = make_heads("weaver,spark", ["anna"])
    with threads(2, functools.partial(hydra_faults.raise_for, victim=None)) as ex:
        evo = evolve(heads, ex, fast_cfg(cycles=1, generations=1))
    with pytest.raises(ValueError, match="every evaluation failed"):
        choose_winner(evo)


def test_a_worker_that_dies_once_is_replaced_and_its_evaluations_retried(tmp_path):
    heads = make_heads("weaver,mirror,spark", ["anna"])
    cfg = fast_cfg()
    victim = derive_seed(3, 0, 1, "Spark", 2)       # a mutant of the second generation
    evaluate = functools.partial(hydra_faults.exit_for, victim=victim,
                                 marker=str(tmp_path / "died"))
    pool = processes(2, evaluate)
    first = pool.executor
    try:
        evo = evolve(heads, pool, cfg)
    finally:
        pool.close()
    assert (tmp_path / "died").exists() and pool.executor is not first      # replaced
    assert all(o.error is None for o in evo.evaluations)
    assert next(o for o in evo.evaluations if o.seed == victim).attempts == 2
    # the same run as one where nothing died
    with threads(2) as ex:
        calm = evolve(heads, ex, cfg)
    assert [(o.id, o.scores) for o in evo.evaluations] == [(o.id, o.scores) for o in calm.evaluations]


def test_a_worker_that_always_dies_is_scored_worst_after_one_retry():
    heads = make_heads("weaver,mirror", ["anna"])
    victim = derive_seed(3, 0, 0, "Weaver", 1)
    evaluate = functools.partial(hydra_faults.exit_for, victim=victim)
    pool = processes(2, evaluate)
    try:
        evo = evolve(heads, pool, fast_cfg(population=3))
    finally:
        pool.close()
    dead = next(o for o in evo.evaluations if o.seed == victim)
    assert dead.error == "worker process died twice" and dead.attempts == 2
    assert dead.scores["Weaver"] == dead.organism.fitness("Weaver") == -math.inf
    assert choose_winner(evo)[1].birth.error is None


def test_without_retries_lost_evaluations_score_worst():
    heads = make_heads("weaver", ["anna"])
    victim = derive_seed(3, 0, 0, "Weaver", 0)
    pool = processes(1, functools.partial(hydra_faults.exit_for, victim=victim), retries=0)
    try:
        evo = evolve(heads, pool, fast_cfg(cycles=1, generations=1))
    finally:
        pool.close()
    # Evaluations that finished before the worker died keep their result; every one in flight
    # or queued when the pool broke is lost, the victim's included, and scored worst.
    lost = [o for o in evo.evaluations if o.error is not None]
    assert any(o.seed == victim for o in lost)
    assert all(o.error == "worker process died" and o.scores["Weaver"] == -math.inf for o in lost)
    assert all(o.result is not None for o in evo.evaluations if o.error is None)


# The winner: a scale-free standing among random genomes.

def test_standing_is_the_mean_percentile_among_the_random_genomes():
    heads = HEADS3[:2]
    reference = [organism("Weaver", i, Weaver=w, Mirror=m)
                 for i, (w, m) in enumerate([(1, 40), (2, 30), (3, 20), (4, 10)])]
    stick = hydra.yardstick(reference, heads)        # no organism judged twice: no noise known
    assert stick["Weaver"] == ([1, 2, 3, 4], 2.5, pytest.approx(math.sqrt(1.25)), 0.0)
    # under Weaver the 4th is best: (3 below + half of itself) / 4 = 0.875; under Mirror 0.125
    assert standing(reference[3], stick) == pytest.approx((0.875 + 0.125) / 2)
    beyond = organism("Weaver", 9, Weaver=5.0, Mirror=25.0)
    assert standing(beyond, stick) == pytest.approx((1.0 + 0.5) / 2)
    failed = organism("Weaver", 10)
    failed.result, failed.scores = None, {"Weaver": -math.inf, "Mirror": -math.inf}
    assert standing(failed, stick) == 0.0
    # equal standings: the one whose weakest head is strongest comes first
    far = organism("Weaver", 11, Weaver=5.0, Mirror=28.0)        # the same percentiles
    assert hydra.standing_key(beyond, stick) < hydra.standing_key(far, stick)
    balanced = organism("Weaver", 12, Weaver=4.5, Mirror=35.0)     # (1.0 + 0.75) / 2 too
    lopsided = organism("Weaver", 13, Weaver=1.5, Mirror=100.0)    # (0.25 + 1.0) / 2
    assert standing(balanced, stick) > standing(lopsided, stick)


def test_the_noise_is_measured_in_the_random_genomes_voice():
    heads = HEADS3[:1]
    reference = [organism("Weaver", i, Weaver=w) for i, w in enumerate([1.0, 2.0, 3.0, 4.0])]

    def twice(index, first, second, **genes):
        o = organism("Weaver", index, Weaver=first)
        o.genome = dict(o.genome, **genes)
        trial_of(o, Weaver=second)
        return o

    steady = twice(7, 0.0, 1.0)                        # temperature 1, no cooling: variance 0.5
    wild = twice(8, -10.0, 10.0, cooling=0.7)          # a cooled voice: not how they speak
    assert hydra.yardstick(reference, heads, [steady, wild])["Weaver"][3] == pytest.approx(
        math.sqrt(0.5))
    assert hydra.in_reference_voice(wild, "Weaver") == []
    # an organism heard at several temperatures counts with its scores at temperature 1
    cold = twice(9, 5.0, 5.0, temperature=0.5)
    for t, x in zip(cold.judged(), (0.0, 2.0)):
        t.temperatures, t.scores_at = (0.5, 1.0), [{"Weaver": 5.0}, {"Weaver": x}]
    assert hydra.in_reference_voice(cold, "Weaver") == [0.0, 2.0]
    assert hydra.yardstick(reference, heads, [cold])["Weaver"][3] == pytest.approx(math.sqrt(2.0))


def test_the_yardstick_takes_out_the_noise_and_standing_counts_the_judges_noise():
    heads = HEADS3[:1]
    reference = [organism("Weaver", i, Weaver=w) for i, w in enumerate([1.0, 2.0, 3.0, 4.0])]
    twice = organism("Weaver", 7, Weaver=0.0)
    trial_of(twice, Weaver=1.0)                        # two trials a point apart: variance 0.5
    scores, mean, spread, noise = hydra.yardstick(reference, heads, [twice])["Weaver"]
    keep = math.sqrt(1 - 0.5 / 1.25)
    assert scores == pytest.approx([2.5 + (x - 2.5) * keep for x in (1, 2, 3, 4)])
    assert noise == pytest.approx(math.sqrt(0.5)) and spread == pytest.approx(math.sqrt(1.25) * keep)
    stick = {"Weaver": (scores, mean, spread, noise)}
    # judged once, 4.2 is known to +-0.71 and a judge averaging 3 trials of it and of a random
    # genome adds its own scatter: the chance it beats each of the four, averaged
    once = organism("Weaver", 8, Weaver=4.2)
    error = math.sqrt(0.5 / 1 + (0.5 + 0.5) / hydra.JUDGE_TRIALS)
    chance = [NormalDist(4.2, error).cdf(x) for x in scores]
    assert standing(once, stick) == pytest.approx(sum(1 - c for c in chance) / 4)
    assert 0.75 < standing(once, stick) < 1.0
    assert standing(twice, stick) < standing(once, stick)
    # the same mean seen on more trials is surer; an unsteady genome is a gamble
    steady = organism("Weaver", 9, Weaver=4.2)
    for _ in range(7):
        trial_of(steady, Weaver=4.2)
    unsteady = organism("Weaver", 10, Weaver=1.2)
    for w in [7.2, 1.2, 7.2, 1.2, 7.2, 1.2, 7.2]:
        trial_of(unsteady, Weaver=w)
    assert unsteady.fitness("Weaver") == pytest.approx(4.2)
    assert standing(steady, stick) > standing(once, stick) > standing(unsteady, stick)


def test_winner_genome_reproduces_its_first_confirming_trial():
    heads = make_heads("weaver,mirror,spark", ["anna"])
    with threads(2) as ex:
        evo = evolve(heads, ex, fast_cfg())
    head, winner, s = choose_winner(evo)
    assert head == winner.head and s == pytest.approx(standing(winner, evo.yardstick))
    assert all(standing(winner, evo.yardstick) >= standing(o, evo.yardstick) for o in evo.finalists)
    genome = hydra.winner_genome(winner, s, evo)
    validate_genome(genome)
    assert genome["evolved"] is True and genome["run_seed"] == 3
    # what `microgpt` with this genome and no --seed trains and samples: the same evaluation
    again = hydra_faults.fake_evaluate(full_genome(winner.genome, 5), 200, genome["seed"])
    assert genome["loss"] == again["val_loss"]
    assert genome["names"] == [n for n in again["names"] if n][:5]
    assert genome["temperature"] == winner.genome["temperature"]
    assert genome["generation"] == winner.cycle * 2 + winner.generation + 1
    assert set(genome["scores"]) == {"Weaver", "Mirror", "Spark"}
    assert genome["trials"] == hydra.CONFIRM_TRIALS
    assert "seconds" not in json.dumps(genome)


# The command, end to end (real training, tiny runs).

@pytest.mark.slow
def test_tiny_run_writes_a_genome_that_microgpt_runs_as_evolved(tmp_path):
    proc = run_hydra(TINY + ["--seed", "5", "--samples", "8"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Hydra Evolution" in proc.stdout and "The Gathering" in proc.stdout
    assert "Hydra Ascended" in proc.stdout
    assert_fits(proc.stdout)
    assert proc.stdout.count("The organism learns from all heads.") == 1
    genome = load_genome(tmp_path / "genome.json")
    assert genome["evolved"] is True and genome["steps"] == 20 and genome["run_seed"] == 5
    assert genome["head"] in ("Weaver", "Mirror", "Spark")
    assert 1 <= genome["generation"] <= 2
    assert math.isfinite(genome["loss"])

    logs = sorted(p.name for p in (tmp_path / "experiments").iterdir())
    assert logs[0].startswith("hydra-") and logs[0].endswith(".log")
    assert logs[1:] == ["microgpt.db", "microgpt.db-runs.lock"]     # the store, its run locks
    assert "Hydra Ascended" in (tmp_path / "experiments" / logs[0]).read_text()
    runs, evaluations = stored(tmp_path)
    assert [r["status"] for r in runs] == ["completed"] and runs[0]["seed"] == 5
    assert json.loads(runs[0]["winner_genome"]) == genome
    births = [r for r in evaluations if r["trial"] == 1 and r["stage"] != "primordial"]
    assert len(births) == 3 * 4 + 3 * 2
    first = [r["organism"] for r in evaluations if r["stage"] == "primordial"]
    assert sorted(first) == ["primordial", "primordial/t2", "primordial/t3"]
    assert {"genome", "head", "cycle", "generation", "scores", "names", "val_loss", "final_loss",
            "seconds", "parent", "attempts", "error"} <= set(evaluations[0])

    creature = subprocess.run(MICROGPT + ["--samples", "3"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
    assert creature.returncode == 0, creature.stderr
    assert "Evolved" in creature.stdout


def assert_fits(stdout):
    """Every line of a run's stdout within the console's width."""
    wide = [line for line in stdout.splitlines() if len(line) > WIDTH]
    assert not wide, wide


def stored(directory, store="experiments/microgpt.db"):
    """(runs, evaluations) in the store under directory, as dicts, in id and organism order."""
    db = sqlite3.connect(directory / store)
    db.row_factory = sqlite3.Row
    try:
        runs = [dict(r) for r in db.execute("SELECT * FROM runs ORDER BY id")]
        evaluations = [dict(r) for r in db.execute("SELECT * FROM evaluations ORDER BY run_id, organism")]
    finally:
        db.close()
    return runs, evaluations


def _deterministic_view(directory):
    """The store's evaluations without what depends on the clock or the process: how long each
    took, when, and which worker ran it."""
    _, evaluations = stored(directory)
    for r in evaluations:
        del r["seconds"], r["finished"], r["started"], r["ended"], r["worker"]
    return evaluations


@pytest.mark.slow
def test_same_seed_same_genome_for_one_and_two_workers(tmp_path):
    outputs = []
    for workers in ("1", "2"):
        cwd = tmp_path / workers
        cwd.mkdir()
        proc = run_hydra(TINY + ["--seed", "11", "--samples", "8", "--workers", workers], cwd)
        assert proc.returncode == 0, proc.stderr
        outputs.append(((cwd / "genome.json").read_bytes(), _deterministic_view(cwd)))
    assert outputs[0][0] == outputs[1][0]
    assert outputs[0][1] == outputs[1][1]


@pytest.mark.slow
def test_classic_mode_writes_a_genome_too(tmp_path):
    proc = run_hydra(["--classic", "--population", "3", "--generations", "2", "--steps", "20",
                      "--samples", "8", "--seed", "2", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Cycle" not in proc.stdout and "Evolution Complete" in proc.stdout
    genome = load_genome(tmp_path / "genome.json")
    assert genome["head"] == "Classic" and genome["mode"] == "classic"
    assert list(genome["scores"]) == ["Classic"]


@pytest.mark.slow
def test_a_crashing_evaluation_in_the_command_leaves_a_completed_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    victim = derive_seed(4, 0, 0, "Weaver", 0)
    argv = TINY + ["--seed", "4", "--samples", "5", "--workers", "2"]
    args = hydra_cli.build_hydra_parser().parse_args(argv)
    evaluate = functools.partial(hydra_faults.exit_for, victim=victim, real=True,
                                 marker=str(tmp_path / "died"))
    assert hydra_cli.run_hydra(args, hydra_cli.build_hydra_parser(), argv, evaluate=evaluate) == 0
    assert (tmp_path / "died").exists()
    load_genome(tmp_path / "genome.json")

    victim = derive_seed(4, 1, 0, "Spark", 3)
    evaluate = functools.partial(hydra_faults.raise_for, victim=victim)
    assert hydra_cli.run_hydra(args, hydra_cli.build_hydra_parser(), argv, evaluate=evaluate) == 0
    err = capsys.readouterr().err
    assert "c2g1-Spark-3" in err and "Traceback" not in err      # the console: one line
    _, evaluations = stored(tmp_path)
    failed = [r["error"] for r in evaluations if r["error"] is not None
              and r["error"].startswith("RuntimeError: the organism could not be born\n")]
    assert failed and "Traceback" in failed[0] and "raise_for" in failed[0]   # the store: all of it


@pytest.mark.parametrize("args, message", [
    (["--data", "nope.txt"], "nope.txt: no such file"),
    (["--out", "missing/dir/genome.json"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_1(tmp_path, args, message):
    proc = run_hydra(TINY + args, tmp_path)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "genome.json").exists()


BAD_FLAGS = [["--population", "2"], ["--workers", "0"], ["--cycles", "x"],
             ["--classic", "--heads", "spark"], ["--steps", "0"], ["--heads", "weaver,gorgon"],
             ["--heads", ""], ["--heads", "weaver,Weaver"], ["--seed", "-1"]]


@pytest.mark.parametrize("args", BAD_FLAGS)
def test_bad_flags_are_usage_errors_in_process(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        hydra_cli.main(args)
    assert stop.value.code == 2 and "usage: microgpt-hydra" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("args", BAD_FLAGS)
def test_bad_flags_are_usage_errors(tmp_path, args):
    proc = run_hydra(args, tmp_path)
    assert proc.returncode == 2
    assert "usage: microgpt-hydra" in proc.stderr


HELP_WORDS = ("Primordial", "Evolution", "Evolved", "genome.json", "--classic", "Gathering",
              "docs/hydra.md", "--scoring", "counted")


def test_help_text_tells_the_lifecycle():
    text = hydra_cli.build_hydra_parser().format_help()
    assert all(word in text for word in HELP_WORDS)


@pytest.mark.slow
def test_help_tells_the_lifecycle(tmp_path):
    proc = run_hydra(["--help"], tmp_path)
    assert proc.returncode == 0
    for word in HELP_WORDS:
        assert word in proc.stdout


def _wait_for_evaluations(directory, count, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if (directory / "experiments/microgpt.db").exists():
            try:
                if len(stored(directory)[1]) >= count:
                    return
            except sqlite3.OperationalError:       # not made yet
                pass
        time.sleep(0.05)
    raise AssertionError("no evaluations recorded")


def test_ctrl_c_leaves_the_old_genome_and_the_log_and_exits_130(tmp_path):
    old = '{"n_emb": 16, "n_ctx": 16, "n_layer": 1, "n_head": 4, "n_ff_exp": 4, "steps": 5, "lr": 0.01}\n'
    (tmp_path / "genome.json").write_text(old)
    proc = subprocess.Popen(HYDRA + ["--seed", "1", "--workers", "2", "--steps", "300"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_evaluations(tmp_path, 1, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)      # workers are killed, not waited for
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert (tmp_path / "genome.json").read_text() == old
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    log = next((tmp_path / "experiments").glob("*.log")).read_text()
    assert "Interrupted" in log


def _workers(pid):
    """The pool's worker processes: pid's children running pid's own command line (fork)."""
    def cmdline(p):
        return Path(f"/proc/{p}/cmdline").read_bytes()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if cmdline(c) == cmdline(pid)]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to find workers")
def test_a_worker_killed_from_outside_is_replaced_and_the_run_completes(tmp_path):
    proc = subprocess.Popen(HYDRA + ["--seed", "9", "--workers", "2", "--population", "4",
                                     "--generations", "2", "--cycles", "2", "--steps", "200"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_evaluations(tmp_path, 1, proc)
        workers = _workers(proc.pid)
        assert workers
        os.kill(workers[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    genome = load_genome(tmp_path / "genome.json")
    assert genome["evolved"] is True
    assert any(r["attempts"] == 2 for r in stored(tmp_path)[1])


@pytest.mark.slow
def test_default_sized_generation_with_origin(tmp_path):
    proc = run_hydra(["--heads", "weaver,mirror,spark,origin", "--cycles", "1", "--generations", "2",
                      "--seed", "3", "--workers", "2"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    genome = load_genome(tmp_path / "genome.json")
    assert set(genome["scores"]) == {"Weaver", "Mirror", "Spark", "Origin"}
    assert genome["steps"] == 300
    assert_fits(proc.stdout)            # the default sizes, with the widest heads' names


def test_training_names_for_spark_are_the_whole_dataset():
    names = load_names()
    spark = make_heads("spark", names)[0]
    assert spark.score([names[0].lower()]) == -5.0


def test_a_stored_evaluation_without_names_at_its_temperatures_is_refused():
    # an older microgpt's store: its evaluations sampled at one temperature only
    from microgpt.evaluators import Outcome
    from microgpt.store import Recall

    heads = HEADS3[:1]
    o = Organism(dict(GENOME), "Weaver", 0, 0, 0, 17).birth
    o.temperatures = hydra.voices(GENOME)
    old = Outcome(o.id, {"names": ["anna"], "val_loss": 2.0}, None, 1, 17)
    with pytest.raises(ValueError, match="older microgpt"):
        hydra.evaluate_all([o], None, fast_cfg(), heads, hydra.Observer(), Recall({o.id: old}))


def test_a_stored_evaluation_of_other_genes_is_refused():
    # a store an older microgpt wrote: its mutants (and genomes) are not the ones this one breeds
    from microgpt.evaluators import Outcome
    from microgpt.store import Recall

    heads = HEADS3[:1]
    cfg = fast_cfg()
    o = Organism(dict(GENOME), "Weaver", 0, 0, 0, 17).birth
    older = {k: v for k, v in hydra.full_genome(o.genome, cfg.steps).items() if k != "cooling"}
    result = {"names": ["anna"], "val_loss": 2.0}
    with pytest.raises(ValueError, match="other genes"):
        hydra.evaluate_all([o], None, cfg, heads, hydra.Observer(),
                           Recall({o.id: Outcome(o.id, result, None, 1, 17, older)}))
    same = Outcome(o.id, result, None, 1, 17, hydra.full_genome(o.genome, cfg.steps))

    class Idle:                                        # nothing is left to evaluate
        def run(self, tasks, retrying):
            assert tasks == []
            return []

    hydra.evaluate_all([o], Idle(), cfg, heads, hydra.Observer(), Recall({o.id: same}))
    assert o.names == ["anna"]


def test_an_organism_is_heard_at_its_own_temperature_unless_one_of_the_grid_is_as_near():
    def genome(t, cooling=1.0):
        return dict(GENOME, temperature=t, cooling=cooling)

    assert hydra.temperature_grid(genome(0.75)) == tuple(sorted({0.75, *hydra.TEMPERATURES}))
    assert hydra.temperature_grid(genome(0.9000000001)) == hydra.TEMPERATURES   # not 0.9 twice
    assert hydra.voices(genome(2.3)) == (*hydra.VOICES, 2.3)
    assert hydra.voices(genome(1.0)) == hydra.VOICES


def test_a_cooled_voice_is_heard_where_its_middle_letters_are_at_the_grid():
    cooled = dict(GENOME, temperature=1.0, cooling=0.8)
    heard = hydra.voices(cooled)
    mid = [t * 0.8 ** hydra.MID_NAME for t in heard if t != 1.0]
    assert mid == pytest.approx(hydra.VOICES, rel=1e-3) and 1.0 in heard
    grid = hydra.temperature_grid(cooled)
    assert len(grid) == len(hydra.TEMPERATURES) + 1 and max(grid) == pytest.approx(1.4 / 0.512, 1e-3)
    assert all(check_genes({"temperature": t}) is None for t in hydra.temperature_grid(
        dict(cooled, cooling=hydra.MUTANT_COOLING[0])))   # the coldest cooling stays in the caps


# The Pareto front across the heads.

def scored(name, scores, index):
    o = Organism({}, "Weaver", 0, 0, index, index)
    o.birth.result, o.birth.scores = {"names": [], "val_loss": 1.0}, scores
    return o


def test_the_pareto_front_keeps_exactly_the_organisms_no_other_beats_on_every_head():
    a = scored("a", {"W": 1.0, "M": 0.0}, 0)
    b = scored("b", {"W": 0.0, "M": 1.0}, 1)
    c = scored("c", {"W": 0.5, "M": 0.5}, 2)
    d = scored("d", {"W": 0.4, "M": 0.4}, 3)       # beaten by c on both
    e = scored("e", {"W": 1.0, "M": 0.0}, 4)       # the same as a: neither beats the other
    failed = Organism({}, "Weaver", 0, 0, 5, 5)    # never evaluated: left out
    assert hydra.pareto_front([a, b, c, d, e, failed], ["W", "M"]) == [a, b, c, e]
    assert hydra.pareto_front([d, c], ["W"]) == [c]


def test_a_run_keeps_its_pareto_front_and_the_front_is_non_dominated():
    heads = make_heads("weaver,mirror,spark", ["anna"])
    with threads(2) as ex:
        evo = evolve(heads, ex, fast_cfg())
    front = evo.front
    names = [h.name for h in heads]
    everyone = evo.organisms()
    assert front and set(front) <= set(everyone)
    for o in everyone:
        beaten = any(all(p.fitness(h) >= o.fitness(h) for h in names)
                     and any(p.fitness(h) > o.fitness(h) for h in names) for p in everyone)
        assert (o in front) == (not beaten)


def test_a_genome_tuned_from_a_voice_that_cools_otherwise_keeps_that_voice_and_says_so():
    o = organism("Weaver", 0)
    o.genome = dict(o.genome, temperature=1.0, cooling=1.0, n_ctx=16)
    heard = hydra.Heard(o, (1.9, 0.8), [])
    tuned = o.retuned("n_ctx", 7, 3, heard.voice)
    assert tuned.genome == dict(o.genome, temperature=1.9, cooling=0.8, n_ctx=7)
    assert tuned.tuned == "@cooling=0.8@n_ctx=7"
    same = hydra.Heard(o, (0.8, 1.0), [])
    assert o.retuned("n_ctx", 7, 3, same.voice).tuned == "@n_ctx=7"
    assert hydra.voice_of(heard) == (1.9, 0.8) and hydra.voice_of(same) == 0.8
    # its own value from another voice trains the model it already has: nothing to retrain
    assert o.retuned("n_ctx", 16, 3, heard.voice) is None and o.retuned("n_ctx", 16, 3, same.voice) is None


def test_the_worker_hears_a_voice_at_its_own_cooling_or_at_the_one_it_names():
    from microgpt.worker import voice

    assert voice(0.9, 0.75) == (0.9, 0.75)
    assert voice((1.8, 0.8), 0.75) == (1.8, 0.8)


# The search space is declared once.

def test_a_gene_added_to_the_table_is_drawn_mutated_shown_and_written(monkeypatch):
    from microgpt.genes import Gene
    from microgpt.hydra import genes

    extra = Gene("dropout", "Drop", "dropout (share of units)", False,
                 mutate=lambda rng, x: min(max(x + rng.uniform(-0.1, 0.1), 0.0), 0.5),
                 span=("float", 0.0, 0.5, False),
                 new=lambda rng: 0.0, tune=lambda genome: (0.0, 0.1, 0.2), shown="{:.2f}")
    space = (*genes.SPACE, extra)
    monkeypatch.setattr(genes, "SPACE", space)
    monkeypatch.setattr(genes, "BY_NAME", {g.name: g for g in space})
    monkeypatch.setattr(genes, "GENES", tuple(g.name for g in space))
    rng = random.Random(1)
    assert genes.new_genome(rng)["dropout"] == 0.0
    assert 0.0 <= genes.extended_genome(rng)["dropout"] <= 0.5
    mutants = [genes.mutate(dict(genes.new_genome(rng)), rng) for _ in range(200)]
    assert any(m["dropout"] != 0.0 for m in mutants)
    assert genes.describe(dict(genes.new_genome(rng), dropout=0.25)).endswith("Drop:0.25")
    assert genes.tuning_values("dropout", {}) == (0.0, 0.1, 0.2)
    assert genes.full_genome(dict(genes.new_genome(rng), dropout=0.1), 300)["dropout"] == 0.1


ADD_A_GENE = """
import io, random, sys
from microgpt import genes, train
train.TrainingConfig.dropout = 0.0          # the trainer's part of adding a gene
extra = genes.Gene("dropout", "Drop", "dropout (share of units)", False,
                   mutate=lambda rng, x: min(max(x + rng.uniform(-0.1, 0.1), 0.0), 0.5),
                   span=("float", 0.0, 0.5, False), new=lambda rng: 0.0, shown="{:.2f}",
                   cap=(0, 0.5), flags=("--dropout",), help="the share of units dropped",
                   optional=True)
genes.SPACE = (*genes.SPACE, extra)
genes.BY_NAME = {g.name: g for g in genes.SPACE}
genes.GENES = tuple(g.name for g in genes.SPACE)
from microgpt import cli, creature, genome
from microgpt.genome import GenomeError, check_genes
args = cli.build_parser().parse_args(["--dropout", "0.25", "--emb", "8"])
cfg = train.TrainingConfig()
assert cli._apply_flags(args, cfg, None, None) == ["n_emb=8", "dropout=0.25"], "flag"
out = io.StringIO()
cli._print_config(cfg, out)
assert "Drop:0.25 Steps:" in out.getvalue(), out.getvalue()
try:
    check_genes({"dropout": 0.9})
    raise SystemExit("not checked")
except GenomeError as exc:
    assert "dropout must be a number in (0, 0.5]" in str(exc), exc
assert "dropout" in creature.GENES and "dropout" in genome.OPTIONAL_GENES
assert "--dropout" in cli.build_parser().format_help()
print("ok")
"""


def test_a_gene_added_to_the_table_is_a_flag_checked_printed_and_saved(tmp_path):
    # in a fresh process (the table is read when the modules load), away from the source tree
    proc = subprocess.run([sys.executable, "-c", ADD_A_GENE], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr


def test_the_table_draws_as_the_seed_does():
    # the first generation is the seed's four genes at random and the defaults for the rest
    from microgpt.hydra import genes

    drawn = [g.name for g in genes.SPACE if g.new is not None]
    assert drawn == ["n_emb", "n_head", "n_layer", "lr"]
    assert [g.name for g in genes.SPACE if g.tune is not None] == ["n_emb", "n_layer", "lr", "n_ctx"]
    assert set(hydra.TUNED) <= {g.name for g in genes.SPACE if g.tune is not None}


def test_a_short_genome_shows_the_seeds_four_and_the_genes_moved_off_their_defaults():
    from microgpt.hydra import genes

    genome = genes.new_genome(random.Random(2))
    full = genes.describe(genome)
    assert genes.describe(genome, changed=True) == " ".join(full.split()[:4])      # the seed's look
    assert genes.at_defaults() == " ".join(full.split()[4:]) == "T:1.00 Cool:1.00 Ctx:16 FF:4"
    moved = dict(genome, cooling=0.73, n_ff_exp=2, temperature=1.001)   # 1.001 shows as 1.00
    assert genes.describe(moved, changed=True) == " ".join(full.split()[:4]) + " Cool:0.73 FF:2"


def test_the_evaluations_a_run_makes_are_counted_in_advance_at_most():
    # a generation evaluates at most every organism of every head; the final judgement at most
    # 6 x 4 finalists' trials, 22 tuned genomes x 3, 4 confirmed x 10 (docs/hydra.md's table);
    # the primordial creature is heard first, on 3 seeds
    assert hydra.generation_evaluations(8, 3) == 24
    assert hydra.final_evaluations(3) == 24 + 22 * 3 + 40 == 130
    assert hydra.expected_evaluations(8, 3, 5, 3) == 3 + 15 * 24 + 130
    heads = make_heads("weaver,mirror,spark", ["anna"])
    with threads(2) as ex:
        evo = evolve(heads, ex, fast_cfg())
    cfg = fast_cfg()
    assert len(evo.evaluations) <= hydra.expected_evaluations(cfg.population, cfg.generations,
                                                              cfg.cycles, len(heads))
