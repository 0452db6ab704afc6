"""The alternatives Hydra is measured against, given every advantage the engine has.

An evolution engine earns its keep only if it beats the obvious alternative at the same cost
(Optuna's benchmarks run every sampler on the same budget and seeds). The cost here is training:
a Hydra run's store records every evaluation, each a training of the run's steps
(`Store.training_steps`). A baseline gets the same number of trainings and the same machinery:

  - the same yardstick: REFERENCE random genomes of the seed's distribution (`new_genome`, as
    Hydra's first generation is), judged once each, against which standings are measured;
  - the same hearing: every trained model also sampled at Hydra's voices (`voices`), free;
  - the same confirmation: its CONFIRMED best organisms, each at its best temperature, judged
    CONFIRM_TRIALS times more on fresh seeds, the best of them by standing the winner.

What is left for the search itself, `search_budget` evaluations, is spent as the baseline
chooses: `random_search` draws genomes uniformly over the whole space Hydra's mutants reach
(`microgpt.hydra.extended_genome`); benchmarks/baselines.py adds Optuna's multi-objective TPE. Neither is
used by `microgpt-hydra`; they are here so that benchmarks and tests share one definition.
"""
import random

from microgpt.errors import UsageError
from microgpt.hydra import (
    CONFIRM_TRIALS,
    CONFIRMED,
    Observer,
    Organism,
    at_temperatures,
    derive_seed,
    evaluate_all,
    extended_genome,
    joint_key,
    new_genome,
    one_of_each,
    standing_key,
    voices,
    yardstick,
)

REFERENCE = 24          # random genomes of the seed's distribution: the yardstick (Hydra: 3 x 8)


def search_budget(evaluations):
    """The evaluations a baseline may spend searching, out of a run's evaluations: what is left
    after the yardstick's REFERENCE and the confirmation's CONFIRMED x CONFIRM_TRIALS.
    UsageError when the run was too small to leave any."""
    left = evaluations - REFERENCE - CONFIRMED * CONFIRM_TRIALS
    if left < 1:
        raise UsageError(f"a budget of {evaluations} evaluations leaves none to search with "
                         f"(the yardstick takes {REFERENCE}, confirming {CONFIRMED * CONFIRM_TRIALS})")
    return left


def organism(genome, label, index, run_seed):
    """An organism of a baseline's (its `head` is the baseline's label), heard at Hydra's voices."""
    o = Organism(genome, label, 0, 0, index, derive_seed(run_seed, label, index))
    o.birth.temperatures = voices(genome)
    return o


def reference(heads, evaluator, cfg, label):
    """The yardstick's REFERENCE random genomes of the seed's distribution, evaluated."""
    rng = random.Random(f"{cfg.seed}:{label}:reference")
    ref = [organism(new_genome(rng), f"{label}-reference", i, cfg.seed) for i in range(REFERENCE)]
    evaluate_all([o.birth for o in ref], evaluator, cfg, heads, Observer())
    return ref


def confirm(searched, ref, heads, evaluator, cfg):
    """(the confirmed organisms heard at their best temperature, ranked best first; the yardstick):
    every organism searched (and the reference) ranked by standing at its best voice, the
    CONFIRMED best of different organisms judged CONFIRM_TRIALS times more at that voice, and
    ranked on those fresh trials alone, as Hydra's final judgement does."""
    sticks = yardstick(ref, heads), yardstick([*ref, *searched], heads)   # as Hydra ranks
    heard = [v for o in (*ref, *searched) for v in at_temperatures(o, heads)]
    heard.sort(key=lambda v: joint_key(v, sticks), reverse=True)
    chosen = one_of_each(heard, CONFIRMED)
    trials = {}
    for v in chosen:
        trials[v] = [v.organism.rejudge(cfg.seed) for _ in range(CONFIRM_TRIALS)]
        for t in trials[v]:
            t.temperatures = (v.genome["temperature"],)
    evaluate_all([t for ts in trials.values() for t in ts], evaluator, cfg, heads, Observer())
    confirmed = [c[0] for c in (at_temperatures(v.organism, heads, trials[v]) for v in chosen) if c]
    ranked = sorted(confirmed or heard, key=lambda v: joint_key(v, sticks), reverse=True)
    return ranked, sticks[0]


def random_search(heads, evaluator, cfg, evaluations):
    """(the winner, heard at its best temperature; its standing; the evaluations made): random
    search over `extended_genome` with `evaluations` in all, yardstick and confirmation included."""
    ref = reference(heads, evaluator, cfg, "random")
    rng = random.Random(f"{cfg.seed}:random-search")
    searched = [organism(extended_genome(rng), "random", i, cfg.seed)
                for i in range(search_budget(evaluations))]
    evaluate_all([o.birth for o in searched], evaluator, cfg, heads, Observer())
    ranked, stick = confirm(searched, ref, heads, evaluator, cfg)
    made = len(ref) + len(searched) + CONFIRMED * CONFIRM_TRIALS
    return ranked[0], standing_key(ranked[0], stick)[0], made
