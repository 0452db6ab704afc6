"""Hydra: the evolution that breeds microGPT's hyperparameters and writes the winner to genome.json.

Follows the seed's Hydra release (v3). Each head (microgpt.heads) is an island with its own
population and objective. A cycle is:
  1. Isolation: for a few generations every head evaluates its population (train with the genome,
     sample names, score them), ranks it, keeps its 2 best and fills the rest with mutants of them.
     A head ranks on a leaning (`leaning`): 2/3 its own score's percentile among everything the
     run has bred, 1/3 the other heads', so an island breeds organisms good at its head without
     giving up the others (a weighted decomposition, as MOEA/D's: Zhang & Li 2007);
  2. the Gathering: each head's 2 champions go to a common pool;
  3. Cross-pollination: each head takes in the *other* heads' champions, which replace its worst
     organisms and are judged by its own objective (from the names they already generated: every
     evaluation is scored under every head of the run, so nothing is retrained).
The exchange feeds the next cycle, so the last cycle ends without one: its champions are the
final ones. Each generation re-judges the surviving champions on a fresh seed, and an organism
ranks on the mean of its trials, so a lucky sample does not hold the top spot. Every evaluation
also samples its trained model at a few temperatures (VOICES): how it speaks costs no training.
Last comes the final judgement (`final_judgement`): the run's best organisms by standing (their
mean percentile under the heads among the first generation, which is random genomes, and among
everything the run bred) are re-judged on fresh seeds at many voices (temperatures and
coolings), the leader's genes are tuned one at a time from its best voice, and the best few are
confirmed on fresh seeds; the best confirmed is the winner (`choose_winner`): the genome that
beats random genomes, not the luckiest evaluation. The run's Pareto front across the heads
(`pareto_front`) is kept too.
Before all of it, the primordial creature (every gene at its default) is heard on a few seeds:
the run's baseline, which the console and the report set beside the winner.
The island model is Whitley, Rana & Heckendorn 1999; the keep-two-and-mutate loop is the seed's.
`--classic` is the seed's legacy `evolve`: the same engine with one island and one combined
objective. The `microgpt-hydra` command that drives it lives in microgpt.hydra_cli; the algorithm is told
once, for users, in docs/hydra.md.

`evolve` is a plain function over genomes. Evaluations go through an injected evaluator
(microgpt.evaluators, as DEAP injects `toolbox.map`): a task is a genome and a seed, a result is
names and losses, so a process pool runs them on every core. Observers watch the run (the
console, the store). Every random draw comes from a generator seeded from the run's seed and the
organism's identity (cycle, generation, head, index, trial), and results are collected by
identity, never by completion order: the same seed gives the same run, and the same genome.json,
for any number of workers; and a run resumed from its store's outcomes is the run it would have
been.

The package: `genes` (the genome), `organism` (an organism and its trials, the run, its observers),
`voices` (how an organism is heard), `evaluation` (the evaluator seam and scoring), `standing`
(against random genomes, and the winner), `final` (the final judgement) and `engine` (`evolve`).
"""
from microgpt.genes import (  # noqa: F401  (the gene table, as microgpt.hydra.X too)
    BY_NAME,
    COOLING_FACTOR,
    GENES,
    LR_FACTOR,
    LR_TUNING,
    MUTANT_COOLING,
    MUTANT_CTX,
    MUTANT_EMB,
    MUTANT_FF,
    MUTANT_LAYERS,
    MUTANT_LR,
    MUTANT_TEMPERATURE,
    N_HEADS,
    NEW_EMB,
    NEW_LAYERS,
    NEW_LR,
    SPACE,
    TEMPERATURE_FACTOR,
    Gene,
    log_uniform,
)
from microgpt.hydra.engine import (  # noqa: F401
    LEAN,
    MAX_TRIALS,
    PRIMORDIAL,
    PRIMORDIAL_TRIALS,
    Evolution,
    breed,
    evolve,
    expected_evaluations,
    field_of,
    final_evaluations,
    gather,
    generation_evaluations,
    leaning,
    pareto_front,
    primordial,
    rank,
    rejudgings,
)
from microgpt.hydra.evaluation import (  # noqa: F401
    _settle,
    evaluate_all,
    judge,
    score,
    training_cost,
)
from microgpt.hydra.final import (  # noqa: F401
    CONFIRM_TRIALS,
    CONFIRMED,
    FINAL_TRIALS,
    FINALISTS,
    GRID_COOLINGS,
    TUNED,
    TUNING_TRIALS,
    best_voice,
    final_judgement,
    one_of_each,
)
from microgpt.hydra.genes import (  # noqa: F401
    at_defaults,
    default_genome,
    derive_seed,
    describe,
    extended_genome,
    full_genome,
    mutate,
    new_genome,
    repair,
    tuning_values,
)
from microgpt.hydra.organism import (  # noqa: F401
    CLASSIC,
    MIN_POPULATION,
    N_CHAMPIONS,
    NAMES_KEPT,
    SIZE_CAPS,
    Heard,
    HydraConfig,
    Observer,
    Observers,
    Organism,
    Trial,
    run_generation,
)
from microgpt.hydra.standing import (  # noqa: F401
    JUDGE_TRIALS,
    choose_winner,
    expected_share,
    finite_or_none,
    in_reference_voice,
    joint_key,
    percentile,
    standing,
    standing_key,
    trial_variance,
    winner_genome,
    yardstick,
)
from microgpt.hydra.voices import (  # noqa: F401
    MID_NAME,
    TEMPERATURES,
    VOICES,
    at_temperatures,
    heard_at,
    mid_name,
    temperature_grid,
    voice_of,
    voices,
)
