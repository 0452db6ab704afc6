"""The engine: islands that breed by their heads, the Gathering, and `evolve`, the whole run."""
import math
import random
import time
from dataclasses import dataclass, field
from typing import Optional

from microgpt._core import total
from microgpt.genes import NEW_LR
from microgpt.hydra.evaluation import evaluate_all
from microgpt.hydra.final import (
    CONFIRM_TRIALS,
    CONFIRMED,
    FINAL_TRIALS,
    FINALISTS,
    TUNED,
    TUNING_TRIALS,
    final_judgement,
)
from microgpt.hydra.genes import (
    default_genome,
    derive_seed,
    mutate,
    new_genome,
    tuning_values,
)
from microgpt.hydra.organism import MIN_POPULATION, N_CHAMPIONS, HydraConfig, Observer, Organism
from microgpt.hydra.standing import percentile
from microgpt.hydra.voices import voices

LEAN = 2 / 3            # an island ranks on its head's percentile this much, the others' the rest
MAX_TRIALS = 2          # a survivor is re-judged on a fresh seed each generation, up to this many
PRIMORDIAL = "primordial"       # the id of the run's baseline: every gene at its default,
PRIMORDIAL_TRIALS = 3           # ... heard on this many seeds


def rank(population, head, bred=None):
    """population sorted best first under head; ties keep their order (a stable sort).

    With bred ({head name: the sorted fitnesses of every organism born so far, `field_of`}),
    an island ranks on `leaning`: its own head's percentile among them, weighed LEAN, and the
    other heads' for the rest, so each island breeds organisms good at its head without giving
    up the others."""
    if bred is None or len(bred) < 2:
        return sorted(population, key=lambda o: -o.fitness(head))
    return sorted(population, key=lambda o: -leaning(o, head, bred))


def leaning(organism, head, bred):
    """LEAN times organism's percentile under head among those bred, plus (1 - LEAN) times its mean
    percentile under the other heads: a weighted sum of scale-free objectives, one weighting per
    island (MOEA/D's decomposition: Zhang & Li 2007)."""
    shares = {h: percentile(organism.fitness(h), xs) for h, xs in bred.items()}
    others = [x for h, x in shares.items() if h != head]
    return LEAN * shares[head] + (1 - LEAN) * total(others) / len(others)


def field_of(organisms, heads):
    """{head name: the sorted finite fitnesses of organisms}: what `leaning` ranks against."""
    return {h.name: sorted(x for x in (o.fitness(h.name) for o in organisms) if math.isfinite(x))
            for h in heads}


def breed(ranked, rng, head, cycle, generation, run_seed):
    """The next population: the ranked one's champions, then mutants of them to refill it."""
    champions = ranked[:N_CHAMPIONS]
    children = []
    for index in range(len(champions), len(ranked)):
        parent = rng.choice(champions)
        children.append(Organism(mutate(parent.genome, rng), head, cycle, generation, index,
                                 derive_seed(run_seed, cycle, generation, head, index),
                                 parent=parent.id))
    return champions + children


def gather(populations, heads, bred=None):
    """The Gathering and cross-pollination: (pool of champions, {head: immigrants}, populations).

    populations are ranked. Each head takes in the other heads' champions (never its own, nor an
    organism it already holds), ranked under its own objective; they replace its worst organisms,
    but never its own champions, so with a small population the best immigrants that fit come in.
    """
    champions = {h.name: populations[h.name][:N_CHAMPIONS] for h in heads}
    pool = [o for h in heads for o in champions[h.name]]
    received, after = {}, {}
    for h in heads:
        present = {o.id for o in populations[h.name]}
        immigrants = []
        for other in heads:
            for o in champions[other.name] if other.name != h.name else ():
                if o.id not in present:
                    present.add(o.id)
                    immigrants.append(o)
        room = len(populations[h.name]) - N_CHAMPIONS
        immigrants = rank(immigrants, h.name, bred)[:room]
        natives = populations[h.name][:len(populations[h.name]) - len(immigrants)]
        received[h.name] = immigrants
        after[h.name] = rank(natives + immigrants, h.name, bred)
    return pool, received, after


def primordial(run_seed):
    """The primordial creature's trials: every gene at its default (what `microgpt` is with no
    genome.json), on PRIMORDIAL_TRIALS seeds of its own. The run's baseline, for the console and
    the report: never bred, ranked, gathered or chosen, and no island's (its head is "")."""
    first = Organism(default_genome(), "", 0, 0, 0, derive_seed(run_seed, PRIMORDIAL),
                     label=PRIMORDIAL)
    return [first.birth] + [first.rejudge(run_seed) for _ in range(PRIMORDIAL_TRIALS - 1)]


def first_generation(heads, cfg):
    """{head name: cfg.population new organisms of random genomes (`new_genome`)}."""
    populations = {}
    for h in heads:
        rng = random.Random(f"{cfg.seed}:new:{h.name}")
        populations[h.name] = [Organism(new_genome(rng), h.name, 0, 0, i,
                                        derive_seed(cfg.seed, 0, 0, h.name, i))
                               for i in range(cfg.population)]
    return populations


def generation_evaluations(population, n_heads):
    """At most how many evaluations a generation makes: every organism of every head (the first
    generation's births; later, each head's mutants and the re-judging of its N_CHAMPIONS)."""
    return population * n_heads


def final_evaluations(n_heads):
    """At most how many evaluations the final judgement makes: its finalists' trials, the
    leader's tuned genomes' (every value of each TUNED gene but the leader's own, all of lr's)
    and the confirmed organisms'."""
    tuned = sum(len(tuning_values(gene, {"lr": NEW_LR[0]})) - (gene != "lr")
                for gene in TUNED)
    return (max(FINALISTS, n_heads) * FINAL_TRIALS + tuned * TUNING_TRIALS
            + CONFIRMED * CONFIRM_TRIALS)


def expected_evaluations(population, generations, cycles, n_heads):
    """About how many evaluations a run makes, at most: the primordial creature's, every
    generation's (`generation_evaluations`), then the final judgement's (`final_evaluations`)."""
    return (PRIMORDIAL_TRIALS + cycles * generations * generation_evaluations(population, n_heads)
            + final_evaluations(n_heads))


@dataclass
class Evolution:
    """What a run leaves: the final populations (ranked), every evaluation (a Trial: births and
    re-judgings) in the order they were made, the random first generation, what it scores
    (`yardstick`), against which standings are measured, the finalists: the final judgement's
    confirmed organisms, each heard at a voice (`Heard`), ranked best first: the first is the
    winner; the run's Pareto front across its heads (`pareto_front` of `organisms()`); and the
    primordial creature (with its trials), which is in none of the others."""
    heads: list
    config: HydraConfig
    populations: dict
    evaluations: list
    reference: list = field(default_factory=list)
    yardstick: dict = field(default_factory=dict)
    finalists: list = field(default_factory=list)
    front: list = field(default_factory=list)
    primordial: Optional[Organism] = None

    @property
    def champions(self):
        """{head name: its best organism at the end}."""
        return {h.name: self.populations[h.name][0] for h in self.heads}

    def made(self):
        """Every evaluation the run made: the primordial creature's trials, then `evaluations`."""
        first = self.primordial.trials if self.primordial else []
        return first + self.evaluations

    def organisms(self):
        """Every distinct organism the run judged (births, then the final judgement's tuned
        genomes), in the order of their first evaluation."""
        return list(dict.fromkeys(t.organism for t in self.evaluations if t.result is not None))


def pareto_front(organisms, heads):
    """The organisms that no other beats on every head: none has a fitness (the mean over its
    trials) at least as high under each of heads and higher under one. Organisms whose trials
    all failed are left out; the order is kept."""
    points = [(o, tuple(o.fitness(h) for h in heads)) for o in organisms if o.judged()]

    def dominates(a, b):
        return all(x >= y for x, y in zip(a, b)) and a != b

    return [o for o, p in points if not any(dominates(q, p) for _, q in points)]


def rejudgings(organisms, cfg, limit=MAX_TRIALS):
    """New trials on fresh seeds for each distinct evaluated organism judged fewer than limit times."""
    seen, todo = set(), []
    for o in organisms:
        if o.birth.result is not None and o.id not in seen and len(o.judged()) < limit:
            seen.add(o.id)
            todo.append(o.rejudge(cfg.seed))
    return todo


def evolve(heads, evaluator, cfg, *, observer=None, recall=None):
    """Run Hydra: the primordial creature heard first (the baseline), cfg.cycles of isolation,
    each but the last followed by the Gathering, then the final judgement of the run's best
    organisms: an Evolution.

    Every generation after the first re-judges each surviving champion on a fresh seed (up to
    MAX_TRIALS), and ranks on the mean of its trials. With one head it is the classic
    single-population evolution (there is no one to gather with). The evaluator runs the
    evaluations (microgpt.evaluators); recall holds the outcomes a resumed run already has.
    """
    names = [h.name for h in heads]
    if not heads or len(set(names)) != len(names):
        raise ValueError(f"evolve: heads must be non-empty and distinct, got {names}")
    if cfg.population < MIN_POPULATION:
        raise ValueError(f"evolve: population must be at least {MIN_POPULATION}")
    observer = observer or Observer()
    baseline = primordial(cfg.seed)
    observer.primordial_started(baseline)
    evaluate_all(baseline, evaluator, cfg, heads, observer, recall)
    populations = first_generation(heads, cfg)
    # random genomes, as drawn: what every standing is measured against
    reference = [o for h in heads for o in populations[h.name]]
    evaluations = []
    for cycle in range(cfg.cycles):
        start = time.perf_counter()
        for gen in range(cfg.generations):
            if cycle or gen:
                for h in heads:
                    rng = random.Random(f"{cfg.seed}:breed:{cycle}:{gen}:{h.name}")
                    populations[h.name] = breed(populations[h.name], rng, h.name, cycle, gen,
                                                cfg.seed)
            fresh = [o.birth for h in heads for o in populations[h.name] if not o.evaluated]
            todo = fresh + rejudgings((o for h in heads for o in populations[h.name]), cfg)
            for t in todo:
                t.temperatures = voices(t.genome)
            observer.generation_started(cycle, gen, todo)
            evaluate_all(todo, evaluator, cfg, heads, observer, recall)
            evaluations.extend(todo)
            bred = field_of([t.organism for t in evaluations if t.n == 0], heads)
            populations = {h.name: rank(populations[h.name], h.name, bred) for h in heads}
            observer.generation(cycle, gen, populations)
        if len(heads) > 1 and cycle < cfg.cycles - 1:     # the last cycle's champions are final
            pool, received, populations = gather(populations, heads, bred)
            observer.gathering(cycle, pool, received)
        observer.cycle_done(cycle, time.perf_counter() - start)

    # The final judgement (`final_judgement`): the run's best organisms re-judged on fresh seeds
    # and at several temperatures, the leader's genes tuned one at a time, the best few confirmed.
    finalists, stick = final_judgement(populations, evaluations, reference, heads, evaluator,
                                       cfg, observer, recall)
    bred = field_of([t.organism for t in evaluations if t.n == 0], heads)
    populations = {h.name: rank(populations[h.name], h.name, bred) for h in heads}   # new trials
    evolution = Evolution(list(heads), cfg, populations, evaluations, reference, stick, finalists,
                          primordial=baseline[0].organism if baseline else None)
    evolution.front = pareto_front(evolution.organisms(), [h.name for h in heads])
    return evolution
