"""Hydra: the evolution that breeds microGPT's hyperparameters and writes the winner to genome.json.

Follows the seed's Hydra release (v3). Each head (microgpt.heads) is an island with its own
population and objective. A cycle is:
  1. Isolation: for a few generations every head evaluates its population (train with the genome,
     sample names, score them), ranks it, keeps its 2 best and fills the rest with mutants of them;
  2. the Gathering: each head's 2 champions go to a common pool;
  3. Cross-pollination: each head takes in the *other* heads' champions, which replace its worst
     organisms and are judged by its own objective (from the names they already generated: every
     evaluation is scored under every head of the run, so nothing is retrained).
The exchange feeds the next cycle, so the last cycle ends without one: its champions are the
final ones. Each generation re-judges the surviving champions on a fresh seed, and an organism
ranks on the mean of its trials, so a lucky sample does not hold the top spot. Every evaluation
also samples its trained model at a few temperatures (VOICES): how it speaks costs no training.
Last comes the final judgement (`final_judgement`): the run's best organisms by standing (their
mean percentile under the heads among the first generation, which is random genomes) are
re-judged on fresh seeds at many temperatures, the leader's genes are tuned one at a time, and
the best few are confirmed on fresh seeds; the best confirmed is the winner (`choose_winner`):
the genome that beats random genomes, not the luckiest evaluation.
The island model is Whitley, Rana & Heckendorn 1999; the keep-two-and-mutate loop is the seed's.
`--classic` is the seed's legacy `evolve`: the same engine with one island and one combined
objective. The `microgpt-hydra` command that drives it lives in microgpt.hydra_cli.

`evolve` is a plain function over genomes. Evaluations go through an injected evaluator
(microgpt.evaluators, as DEAP injects `toolbox.map`): a task is a genome and a seed, a result is
names and losses, so a process pool runs them on every core. Observers watch the run (the
console, the store). Every random draw comes from a generator seeded from the run's seed and the
organism's identity (cycle, generation, head, index, trial), and results are collected by
identity, never by completion order: the same seed gives the same run, and the same genome.json,
for any number of workers; and a run resumed from its store's outcomes is the run it would have
been.
"""
import hashlib
import math
import random
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Optional

from microgpt.errors import MicrogptError
from microgpt.evaluators import Task
from microgpt.genome import GENE_KEYS
from microgpt.train import TrainingConfig

# The genes that evolve. A new organism gets the seed's four (n_emb, n_head, n_layer, lr) at random
# and TrainingConfig's defaults for the rest, so the first generation is random genomes as the seed
# draws them; a mutant changes any one of them. steps is the run's, the same for every organism.
GENES = ("n_emb", "n_head", "n_layer", "lr", "temperature", "cooling", "n_ctx", "n_ff_exp")
NEW_EMB, MUTANT_EMB = (16, 24, 32), (16, 24, 32, 40)
N_HEADS = (2, 4)
NEW_LAYERS, MUTANT_LAYERS = (1, 3), (1, 4)          # inclusive ranges
NEW_LR = (0.001, 0.015)                             # uniform in [lo, hi)
MUTANT_LR, LR_FACTOR = (0.0001, 0.1), (0.7, 1.3)
MUTANT_TEMPERATURE, TEMPERATURE_FACTOR = (0.1, 3.0), (0.75, 1.33)
MUTANT_COOLING, COOLING_FACTOR = (0.6, 1.0), (0.8, 1.1)
MUTANT_CTX = (4, 16)            # inclusive, drawn afresh; 16 holds the longest bundled name
MUTANT_FF = (1, 2, 3, 4)
N_CHAMPIONS = 2                                     # kept each generation, sent to the Gathering
LEAN = 2 / 3            # an island ranks on its head's percentile this much, the others' the rest
MIN_POPULATION = N_CHAMPIONS + 1                    # room for at least one mutant
NAMES_KEPT = 5                                      # names per champion in genome.json and tables
MAX_TRIALS = 2          # a survivor is re-judged on a fresh seed each generation, up to this many
VOICES = (0.7, 0.8, 0.9, 1.0)   # every evaluation also samples at these temperatures (mid-name)
MID_NAME = 3                    # the letter (from 0) at which a cooled voice is at these
# The final judgement (`final_judgement`):
FINALISTS = 6           # each head's champion, then the best by standing,
FINAL_TRIALS = 4        # ... each judged on this many fresh seeds;
TUNED = ("n_ctx", "cooling", "lr", "n_layer", "n_emb")   # then the leader's genes, one by one,
LR_TUNING = (0.5, 0.7, 1.4, 2.0)              # (lr: times these)
COOLING_TUNING = (0.7, 0.75, 0.8, 0.85, 0.9, 1.0)
TUNING_TRIALS = 3       # ... each other value on this many fresh seeds;
CONFIRMED = 4           # then the best few organisms, each at its best temperature,
CONFIRM_TRIALS = 10     # ... on this many more fresh seeds.
TEMPERATURES = (0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4)   # it hears each at these too
JUDGE_TRIALS = 3        # the fresh trials an outside judge averages (the measure took 3)


# The genome.

def new_genome(rng):
    """A random genome for a new organism: the seed's four genes drawn, the others the defaults."""
    lo, hi = NEW_LR
    defaults = TrainingConfig()
    genome = {"n_emb": rng.choice(NEW_EMB), "n_head": rng.choice(N_HEADS),
              "n_layer": rng.randint(*NEW_LAYERS), "lr": lo + (hi - lo) * rng.random(),
              "temperature": defaults.temperature, "cooling": defaults.cooling,
              "n_ctx": defaults.n_ctx, "n_ff_exp": defaults.n_ff_exp}
    return repair(genome)


def log_uniform(rng, bounds):
    lo, hi = bounds
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def extended_genome(rng):
    """A genome drawn uniformly over the whole space Hydra's mutants reach (what a random search
    draws, and an outside judge's second yardstick): n_emb, n_head,
    n_layer, n_ctx and n_ff_exp uniformly among their values, lr and temperature log-uniformly
    and cooling uniformly within their bounds (n_head repaired as the seed does)."""
    genome = {"n_emb": rng.choice(MUTANT_EMB), "n_head": rng.choice(N_HEADS),
              "n_layer": rng.randint(*MUTANT_LAYERS), "lr": log_uniform(rng, MUTANT_LR),
              "temperature": log_uniform(rng, MUTANT_TEMPERATURE),
              "cooling": rng.uniform(*MUTANT_COOLING), "n_ctx": rng.randint(*MUTANT_CTX),
              "n_ff_exp": rng.choice(MUTANT_FF)}
    return repair(genome)


def _clamp(x, bounds):
    lo, hi = bounds
    return min(max(x, lo), hi)


def mutate(genome, rng):
    """A copy of genome with one gene changed (possibly to the value it had), then repaired."""
    child = dict(genome)
    gene = rng.choice(GENES)
    if gene == "n_emb":
        child["n_emb"] = rng.choice(MUTANT_EMB)
    elif gene == "n_head":
        child["n_head"] = rng.choice(N_HEADS)
    elif gene == "n_layer":
        child["n_layer"] = _clamp(child["n_layer"] + rng.choice((-1, 1)), MUTANT_LAYERS)
    elif gene == "lr":
        child["lr"] = _clamp(child["lr"] * rng.uniform(*LR_FACTOR), MUTANT_LR)
    elif gene == "temperature":
        child["temperature"] = _clamp(child["temperature"] * rng.uniform(*TEMPERATURE_FACTOR),
                                      MUTANT_TEMPERATURE)
    elif gene == "cooling":
        child["cooling"] = _clamp(child["cooling"] * rng.uniform(*COOLING_FACTOR), MUTANT_COOLING)
    elif gene == "n_ctx":
        child["n_ctx"] = rng.randint(*MUTANT_CTX)
    else:
        child["n_ff_exp"] = rng.choice(MUTANT_FF)
    return repair(child)


def repair(genome):
    """genome with n_head set to 2 when it does not divide n_emb (the seed's repair)."""
    if genome["n_emb"] % genome["n_head"]:
        genome["n_head"] = 2
    return genome


def full_genome(genome, steps):
    """genome.json's genes: the seven of the seed (steps the run's), the temperature and the
    cooling."""
    full = {k: genome[k] for k in GENES}
    full["steps"] = steps
    return {k: full[k] for k in (*GENE_KEYS, "temperature", "cooling")}


def derive_seed(*identity):
    """A 63-bit seed from the run's seed and an identity; sha256, so the same in every process."""
    text = ":".join(str(part) for part in identity)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


# Organisms and the engine.

@dataclass(eq=False)              # organisms are compared by identity
class Organism:
    """A genome with its identity and its trials: its birth evaluation, then any re-judging.

    One Organism is one evaluation (a training seed, its result, its score under every head). The
    organism itself is its birth; each re-judging on a fresh seed is another Organism for the same
    genome (`trial` 1, 2, ...; `of` the organism) kept in its `retrials`. Its fitness under a head
    is the mean over every trial that succeeded, so a lucky first sample does not stay on top.
    """
    genome: dict                    # GENES
    head: str                       # the head whose island bred it
    cycle: int                      # 0-based, like generation and index
    generation: int                 # within the cycle
    index: int                      # its place in the population that bred it
    seed: int                       # the seed this evaluation trains and samples with
    result: Optional[dict] = None   # the worker's dict; None until evaluated or when it failed
    error: Optional[str] = None     # why the evaluation failed
    attempts: int = 0
    scores: dict = field(default_factory=dict)   # head name -> score (-inf: failed)
    trial: int = 0                  # 0: the birth; n: the n-th re-judging
    of: Optional["Organism"] = None              # for a re-judging: the organism it re-judges
    retrials: list = field(default_factory=list)  # the birth's re-judgings, in order
    parent: Optional[str] = None    # the id of the champion it is a mutant of (None: new)
    temperatures: tuple = ()        # also sample at these, to tune the temperature
    scores_at: list = field(default_factory=list)   # scores at each of them
    tuned: str = ""                 # the genes the final judgement tuned: "@n_ctx=7@lr=0.01"

    @property
    def id(self):
        base = f"c{self.cycle + 1}g{self.generation + 1}-{self.head}-{self.index}"
        base += self.tuned
        return base if not self.trial else f"{base}/t{self.trial + 1}"

    @property
    def evaluated(self):
        return self.result is not None or self.error is not None

    def judged(self):
        """Every trial of this organism that succeeded: the birth, then re-judgings."""
        return [t for t in (self, *self.retrials) if t.result is not None]

    def rejudge(self, run_seed):
        """A new trial of this organism on a fresh seed (appended to its retrials)."""
        n = len(self.retrials) + 1
        t = Organism(self.genome, self.head, self.cycle, self.generation, self.index,
                     derive_seed(run_seed, "rejudge", self.id, n), trial=n, of=self,
                     tuned=self.tuned, parent=self.parent)
        self.retrials.append(t)
        return t

    def retuned(self, gene, value, run_seed):
        """This genome with gene set to value (repaired), as an organism yet to be judged (its
        trials are its re-judgings); None when that is its own genome."""
        genome = repair(dict(self.genome, **{gene: value}))
        if genome == self.genome:
            return None
        tuned = f"{self.tuned}@{gene}={value:.4g}"
        return Organism(genome, self.head, self.cycle, self.generation, self.index,
                        derive_seed(run_seed, "tune", self.id, tuned), parent=self.parent,
                        tuned=tuned)

    @property
    def names(self):
        return self.result["names"] if self.result else []

    def shown_names(self):
        """Its first NAMES_KEPT non-empty names, to print and keep in genome.json."""
        return [n for n in self.names if n][:NAMES_KEPT]

    @property
    def val_loss(self):
        return self.result["val_loss"] if self.result else math.nan

    def fitness(self, head):
        """The mean of head's score over the trials that succeeded; -inf when none did."""
        values = [t.scores.get(head, -math.inf) for t in self.judged()]
        return sum(values) / len(values) if values else -math.inf


@dataclass(frozen=True)
class HydraConfig:
    """The run: sizes, training length, names per evaluation, seed and dataset (the sizes and
    training length are the seed's defaults)."""
    population: int = 8             # organisms per head
    generations: int = 3            # per cycle
    cycles: int = 5
    steps: int = 300                # training steps per evaluation
    samples: int = 200              # names sampled per evaluation
    seed: int = 42
    data: Optional[str] = None      # path of the names; None: the bundled ones
    scoring: str = "counted"        # how the heads add up their names (microgpt.heads.SCORINGS)

    def global_generation(self, organism):
        """The 1-based generation of the run in which organism was born."""
        return organism.cycle * self.generations + organism.generation + 1


CLASSIC = {"population": 12, "generations": 5, "cycles": 1}
# A run's sizes, (smallest, largest): the flags' caps, and the store's for a run it gives back
SIZE_CAPS = {"population": (MIN_POPULATION, 10_000), "generations": (1, 10_000), "cycles": (1, 10_000),
             "steps": (1, 100_000), "samples": (1, 10_000)}


class Observer:
    """What the engine reports as it goes; the defaults do nothing."""

    def generation_started(self, cycle, generation, todo):
        """todo: the organisms about to be evaluated, every head's together."""

    def evaluated(self, organism):
        """Called as each evaluation finishes (in completion order), failures included."""

    def generation(self, cycle, generation, populations):
        """populations: {head name: organisms ranked best first under that head}."""

    def gathering(self, cycle, pool, received):
        """pool: the champions; received: {head name: the immigrants it took in}."""

    def cycle_done(self, cycle, seconds):
        """The cycle's wall time."""

    def retrying(self, organisms):
        """A worker process died; these lost evaluations run again in a new pool."""

    def final_started(self, organisms, todo, what):
        """A stage of the final judgement: organisms (what they are, in words) are re-judged by
        the evaluations todo."""


class Observers(Observer):
    """Several observers as one: each call goes to every one, in order."""

    def __init__(self, *observers):
        self.observers = observers

    def _tell(self, method, *args):
        for o in self.observers:
            getattr(o, method)(*args)

    def generation_started(self, *args):
        self._tell("generation_started", *args)

    def evaluated(self, *args):
        self._tell("evaluated", *args)

    def generation(self, *args):
        self._tell("generation", *args)

    def gathering(self, *args):
        self._tell("gathering", *args)

    def cycle_done(self, *args):
        self._tell("cycle_done", *args)

    def retrying(self, *args):
        self._tell("retrying", *args)

    def final_started(self, *args):
        self._tell("final_started", *args)


def score(organism, heads):
    """Fill organism.scores under every head (and scores_at, at each of its temperatures); a
    failed or non-finite one scores -inf. Names at its own temperature are its names (the
    worker samples them once), so they are scored once."""
    heard = organism.result["names_at"] if organism.result is not None and organism.temperatures else []
    organism.scores_at = [judge(names, organism, heads) for names in heard]
    own = organism.genome["temperature"]
    organism.scores = (dict(organism.scores_at[organism.temperatures.index(own)])
                       if heard and own in organism.temperatures
                       else judge(organism.names, organism, heads))


def judge(names, organism, heads):
    """{head name: the score of names}; -inf when organism failed or a score is not finite."""
    scores = {}
    for head in heads:
        value = -math.inf
        if organism.result is not None:
            value = head.score(names, organism.val_loss)
            value = value if math.isfinite(value) else -math.inf
        scores[head.name] = value
    return scores


def rank(population, head, field=None):
    """population sorted best first under head; ties keep their order (a stable sort).

    With field ({head name: the sorted fitnesses of every organism born so far}), an island
    ranks on `leaning`: its own head's percentile in the field, weighed LEAN, and the other heads'
    for the rest, so each island breeds organisms good at its head without giving up the others."""
    if field is None or len(field) < 2:
        return sorted(population, key=lambda o: -o.fitness(head))
    return sorted(population, key=lambda o: -leaning(o, head, field))


def leaning(organism, head, field):
    """LEAN times organism's percentile under head among field, plus (1 - LEAN) times its mean
    percentile under the other heads: a weighted sum of scale-free objectives, one weighting per
    island (MOEA/D's decomposition: Zhang & Li 2007)."""
    shares = {h: percentile(organism.fitness(h), xs) for h, xs in field.items()}
    others = [x for h, x in shares.items() if h != head]
    return LEAN * shares[head] + (1 - LEAN) * sum(others) / len(others)


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


def gather(populations, heads, field=None):
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
        immigrants = rank(immigrants, h.name, field)[:room]
        natives = populations[h.name][:len(populations[h.name]) - len(immigrants)]
        received[h.name] = immigrants
        after[h.name] = rank(natives + immigrants, h.name, field)
    return pool, received, after


def training_cost(organism):
    """A rough relative cost of training organism: a layer's multiply-adds per token, times layers
    and positions.

    Submitting the costliest first keeps every worker busy to the end of a generation
    (longest-processing-time-first scheduling); results are still gathered by identity.
    """
    g = organism.genome
    return g["n_layer"] * g["n_emb"] ** 2 * (4 + 2 * g["n_ff_exp"]) * g["n_ctx"]


def _check_result(result, temperatures=()):
    """result if it looks like microgpt.worker.evaluate_genome's dict, else ValueError."""
    def names(x):
        return isinstance(x, list) and all(isinstance(n, str) for n in x)
    if (not isinstance(result, dict) or not names(result.get("names"))
            or not isinstance(result.get("val_loss"), (int, float))
            or (temperatures and not (isinstance(result.get("names_at"), list)
                                      and len(result["names_at"]) == len(temperatures)
                                      and all(names(x) for x in result["names_at"])))):
        raise ValueError(f"evaluation returned {type(result).__name__}, not names and losses")
    return result


def evaluate_all(todo, evaluator, cfg, heads, observer, recall=None):
    """Evaluate and score the organisms todo in place, through evaluator.

    recall: {organism id: an earlier outcome} (a resumed run's store): those are not run again.
    An evaluation that fails (it raised, or its worker died for good) scores -inf, with its
    reason. The costliest are handed over first, so every worker stays busy to the end of a
    generation (longest-processing-time-first); results are matched by identity.
    """
    pending = {}
    for org in todo:
        outcome = (recall or {}).get(org.id)
        if outcome is None:
            pending[org.id] = org
            continue
        if outcome.seed != org.seed:
            raise MicrogptError(f"the store's {org.id} was trained with another seed: not this run")
        if outcome.genome is not None and outcome.genome != full_genome(org.genome, cfg.steps):
            raise MicrogptError(f"the store's {org.id} has other genes than this microgpt breeds (an "
                             f"older version bred it); start a new run")
        if org.temperatures and outcome.result is not None and "names_at" not in outcome.result:
            raise MicrogptError(f"the store's {org.id} was made by an older microgpt, which did not "
                             f"sample at several temperatures; start a new run")
        _settle(org, outcome, heads, observer)
    tasks = [Task(o.id, full_genome(o.genome, cfg.steps), cfg.samples, o.seed,
                  o.temperatures) for o in sorted(pending.values(), key=training_cost, reverse=True)]
    for outcome in evaluator.run(tasks, lambda keys: observer.retrying([pending[k] for k in keys])):
        _settle(pending[outcome.key], outcome, heads, observer)


def _settle(org, outcome, heads, observer):
    """Fill org from an Outcome (or a recalled one), score it and tell the observer."""
    org.attempts = outcome.attempts
    org.error = outcome.error
    if outcome.error is None:
        try:
            org.result = _check_result(outcome.result, org.temperatures)
        except ValueError as exc:
            org.error = str(exc)
    score(org, heads)
    observer.evaluated(org)


def expected_evaluations(population, generations, cycles, n_heads):
    """About how many evaluations a run makes: every birth, at most one re-judging of each head's
    champions per generation after the first, and the final judgement's (at most)."""
    later = cycles * generations - 1
    births = n_heads * (population + later * (population - N_CHAMPIONS))
    tuned = sum(len(tuning_values(gene, {"lr": NEW_LR[0]})) - (gene not in ("lr", "cooling"))
                for gene in TUNED)
    final = (max(FINALISTS, n_heads) * FINAL_TRIALS + tuned * TUNING_TRIALS
             + CONFIRMED * CONFIRM_TRIALS)
    return births + n_heads * N_CHAMPIONS * later + final


@dataclass
class Evolution:
    """What a run leaves: the final populations (ranked), every evaluation in identity order (births
    and re-judgings), the random first generation, what it scores (`yardstick`), against which
    standings are measured, and the finalists: the final judgement's confirmed organisms, each a
    genome at a temperature, ranked best first: the first is the winner."""
    heads: list
    config: HydraConfig
    populations: dict
    evaluations: list
    reference: list = field(default_factory=list)
    yardstick: dict = field(default_factory=dict)
    finalists: list = field(default_factory=list)

    @property
    def champions(self):
        """{head name: its best organism at the end}."""
        return {h.name: self.populations[h.name][0] for h in self.heads}

    def organisms(self):
        """Every distinct organism the run judged (births, then the final judgement's tuned
        genomes), in the order of their first evaluation."""
        return list(dict.fromkeys(t.of or t for t in self.evaluations if t.result is not None))

    def pareto_front(self):
        """`pareto_front` of the run's organisms under its heads."""
        return pareto_front(self.organisms(), [h.name for h in self.heads])


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
        if o.result is not None and o.id not in seen and len(o.judged()) < limit:
            seen.add(o.id)
            todo.append(o.rejudge(cfg.seed))
    return todo


def evolve(heads, evaluator, cfg, *, observer=None, recall=None):
    """Run Hydra: cfg.cycles of isolation, each but the last followed by the Gathering, then the
    final judgement of the run's best organisms: an Evolution.

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
    populations = {}
    for h in heads:
        rng = random.Random(f"{cfg.seed}:new:{h.name}")
        populations[h.name] = [Organism(new_genome(rng), h.name, 0, 0, i,
                                        derive_seed(cfg.seed, 0, 0, h.name, i))
                               for i in range(cfg.population)]
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
            fresh = [o for h in heads for o in populations[h.name] if not o.evaluated]
            todo = fresh + rejudgings((o for h in heads for o in populations[h.name]), cfg)
            for o in todo:
                o.temperatures = voices(o.genome)
            observer.generation_started(cycle, gen, todo)
            evaluate_all(todo, evaluator, cfg, heads, observer, recall)
            evaluations.extend(todo)
            field = field_of([o for o in evaluations if o.trial == 0], heads)
            populations = {h.name: rank(populations[h.name], h.name, field) for h in heads}
            observer.generation(cycle, gen, populations)
        if len(heads) > 1 and cycle < cfg.cycles - 1:     # the last cycle's champions are final
            pool, received, populations = gather(populations, heads, field)
            observer.gathering(cycle, pool, received)
        observer.cycle_done(cycle, time.perf_counter() - start)

    # The final judgement (`final_judgement`): the run's best organisms re-judged on fresh seeds
    # and at several temperatures, the leader's genes tuned one at a time, the best few confirmed.
    finalists, stick = final_judgement(populations, evaluations, reference, heads, evaluator,
                                       cfg, observer, recall)
    field = field_of([o for o in evaluations if o.trial == 0], heads)
    populations = {h.name: rank(populations[h.name], h.name, field) for h in heads}   # new trials
    return Evolution(list(heads), cfg, populations, evaluations, reference, stick, finalists)


def final_judgement(populations, evaluations, reference, heads, evaluator, cfg, observer, recall):
    """(the confirmed organisms ranked best first, the yardstick that ranks them): the first is
    the winner. In three stages, every trial on a fresh seed:

    1. The finalists: each head's champion, then the run's best births by standing at their best
       voice, FINALISTS in all, each judged FINAL_TRIALS times, heard at every temperature of
       `temperature_grid` (training is the same, only how it speaks changes).
    2. Tuning: the leader (the organism of the best organism-at-a-temperature so far) is trained
       again with each other value of a gene (`tuning_values`), TUNING_TRIALS times each, one
       gene of TUNED after another, the leader chosen again before each.
    3. Confirmation: the CONFIRMED best organisms of both stages, each at its best temperature
       (`one_of_each`: else one organism heard well at several temperatures fills the places,
       and its luck in the stages before decides), are judged CONFIRM_TRIALS times more at it and
       ranked on those trials alone: the stages before picked them among many, so their own
       trials flatter them; fresh ones do not.
    The evaluations made are appended to evaluations.
    """
    def judge_all(todo, say, organisms):
        if todo:
            observer.final_started(organisms, todo, say)
            evaluate_all(todo, evaluator, cfg, heads, observer, recall)
            evaluations.extend(todo)

    def trials_of(organisms, n, temperatures=None):
        trials = {o: [o.rejudge(cfg.seed) for _ in range(n)] for o in organisms}
        for o, ts in trials.items():
            for t in ts:
                t.temperatures = temperatures or temperature_grid(o.genome)
        return trials

    def heard(trials):
        return [v for o, ts in trials.items() for v in at_temperatures(o, heads, ts)]

    births = [o for o in evaluations if o.trial == 0 and o.result is not None]
    everyone = [o for o in evaluations if o.trial == 0]     # failed births too, below everything
    tuned = []

    def rejudged():                 # every organism judged more than once so far
        return [o for o in births if o.retrials] + tuned

    def sticks():
        """The yardsticks the stages rank by (`joint_key`): the random first generation, and
        every organism the run bred, among which the organisms that beat every random genome
        stay apart."""
        return yardstick(reference, heads, rejudged()), yardstick(everyone, heads, rejudged())

    stick = sticks()
    finalists = []
    for o in ([populations[h.name][0] for h in heads]
              + sorted(births, key=lambda o: best_voice(o, heads, stick), reverse=True)):
        if o.result is not None and o not in finalists and len(finalists) < max(FINALISTS, len(heads)):
            finalists.append(o)
    final = trials_of(finalists, FINAL_TRIALS)
    judge_all([t for ts in final.values() for t in ts],
              "each head's champion, then the best by standing", finalists)
    stick = sticks()
    candidates = sorted(heard(final), key=lambda v: joint_key(v, stick), reverse=True)
    if not candidates:                      # every final trial failed
        return finalists, stick[0]
    for gene in TUNED:
        leader = candidates[0].of
        others = [o for o in (leader.retuned(gene, v, cfg.seed)
                              for v in tuning_values(gene, leader.genome)) if o is not None]
        tuning = trials_of(others, TUNING_TRIALS)
        judge_all([t for ts in tuning.values() for t in ts],
                  f"the leader, {leader.id}, with other values of {gene}", others)
        tuned += others
        candidates += heard(tuning)
        candidates.sort(key=lambda v: joint_key(v, stick), reverse=True)
    chosen = one_of_each(candidates, CONFIRMED)
    confirm = {v: trials_of([v.of], CONFIRM_TRIALS, (v.genome["temperature"],))[v.of]
               for v in chosen}
    judge_all([t for ts in confirm.values() for t in ts],
              "the best organisms, each at its best temperature, on fresh seeds", [v.of for v in chosen])
    confirmed = [at_temperatures(v.of, heads, confirm[v]) for v in chosen]
    confirmed = [c[0] for c in confirmed if c]
    stick = sticks()
    ranked = sorted(confirmed or candidates, key=lambda v: joint_key(v, stick), reverse=True)
    return ranked, stick[0]


def one_of_each(variants, n):
    """The first n of variants (organisms heard at a temperature, ranked) that are of different
    organisms: each organism at its best temperature."""
    chosen = []
    for v in variants:
        if len(chosen) < n and all(v.of is not c.of for c in chosen):
            chosen.append(v)
    return chosen


def tuning_values(gene, genome):
    """The values the final judgement tries for gene (one of TUNED) of genome: every context
    length and depth and width a mutant can have; a few coolings; the learning rate from half
    to twice."""
    if gene == "n_ctx":
        return range(MUTANT_CTX[0], MUTANT_CTX[1] + 1)
    if gene == "n_layer":
        return range(MUTANT_LAYERS[0], MUTANT_LAYERS[1] + 1)
    if gene == "n_emb":
        return MUTANT_EMB
    if gene == "cooling":
        return COOLING_TUNING
    return [_clamp(genome["lr"] * f, MUTANT_LR) for f in LR_TUNING]


def best_voice(organism, heads, sticks):
    """organism's joint_key at the temperature where it stands best."""
    return max((joint_key(v, sticks) for v in at_temperatures(organism, heads)),
               default=joint_key(organism, sticks))


def joint_key(organism, sticks):
    """(mean standing over the yardsticks, the worst margin among them): `standing_key` against
    each of several yardsticks at once."""
    keys = [standing_key(organism, stick) for stick in sticks]
    return sum(k[0] for k in keys) / len(keys), min(k[1] for k in keys)


def voices(genome):
    """The temperatures every evaluation also samples at, to find the organism's best voice: its
    own, and VOICES at mid-name (`mid_name`)."""
    return heard_at(genome["temperature"], mid_name(VOICES, genome["cooling"]))


def temperature_grid(genome):
    """The temperatures the final judgement hears an organism at: its own, and TEMPERATURES at
    mid-name (`mid_name`)."""
    return heard_at(genome["temperature"], mid_name(TEMPERATURES, genome["cooling"]))


def mid_name(temperatures, cooling):
    """The temperatures at which a name's MID_NAME-th letter (from 0) samples at these: each
    divided by cooling**MID_NAME (rounded to 4 digits), the same ones for a voice that does not
    cool. A cooled voice is heard where it stands best, bold at first and calm by the end,
    without sampling the flat voice's temperatures, which are too cold for it."""
    return tuple(float(f"{t / cooling ** MID_NAME:.4g}") for t in temperatures)


def heard_at(t, temperatures):
    """temperatures and t, sorted; without t when it is within 2% of one of them (0.9 and
    0.9000000001 would sample near enough the same names twice)."""
    if any(abs(t - x) <= 0.02 * x for x in temperatures):
        return tuple(temperatures)
    return tuple(sorted({t, *temperatures}))


def at_temperatures(finalist, heads, trials=None):
    """finalist as heard at each temperature its trials sampled at (trials: these of its trials,
    default all): one organism per temperature, its genome with that temperature, whose trials
    are those trials' names at it (their training, seed and losses unchanged)."""
    trials = [t for t in (finalist.judged() if trials is None else trials)
              if t.temperatures and t.result is not None]
    if not trials:
        return []
    trials = [t for t in trials if t.temperatures == trials[0].temperatures]
    variants = []
    for k, temperature in enumerate(trials[0].temperatures):
        heard = []
        for t in trials:
            v = Organism(dict(finalist.genome, temperature=temperature), finalist.head,
                         finalist.cycle, finalist.generation, finalist.index, t.seed,
                         result=dict(t.result, names=t.result["names_at"][k]),
                         scores=t.scores_at[k], trial=t.trial, of=finalist,
                         parent=finalist.parent, tuned=finalist.tuned)
            heard.append(v)
        heard[0].retrials = heard[1:]
        variants.append(heard[0])
    return variants


# Choosing the winner, against random genomes.

def yardstick(reference, heads, rejudged=()):
    """{head name: (the random genomes' scores, sorted, their mean, their spread, the noise)}.

    The reference is the run's first generation: random genomes from the new-organism
    distribution, each judged once. One trial spreads their scores wider than the genomes
    themselves differ: each carries the trial-to-trial noise (another seed, other names), which
    an outside judge averaging many trials does not see. That noise is measured on the rejudged
    organisms as they sound in the random genomes' voice (`in_reference_voice`: the pooled
    variance between their trials; every evaluation samples as many names; a cooled voice can
    scatter far more, and is not what the random genomes speak) and taken out by drawing each
    score toward the mean, keeping at least half the spread; the noise (a standard deviation) is
    kept to judge how surely an organism beats them (`standing_key`). A random genome that failed
    counts too, below everything.
    """
    stick = {}
    for h in heads:
        xs = [x for x in (o.fitness(h.name) for o in reference) if math.isfinite(x)]
        mean = sum(xs) / len(xs) if xs else 0.0
        var = sum((x - mean) ** 2 for x in xs) / len(xs) if xs else 0.0
        squares = dof = 0.0
        for o in rejudged:
            trials = [x for x in in_reference_voice(o, h.name) if math.isfinite(x)]
            if len(trials) > 1:
                m = sum(trials) / len(trials)
                squares += sum((x - m) ** 2 for x in trials)
                dof += len(trials) - 1
        noise = squares / dof if dof else 0.0
        keep = math.sqrt(max(1 - noise / var, 0.25)) if var else 1.0
        scores = [-math.inf] * (len(reference) - len(xs)) + sorted(mean + (x - mean) * keep for x in xs)
        stick[h.name] = (scores, mean, math.sqrt(var) * keep or 1.0, math.sqrt(noise))
    return stick


def in_reference_voice(organism, head):
    """head's score of each of organism's trials heard as a new organism speaks (temperature 1
    and no cooling, TrainingConfig's defaults): [] when its cooling is another, or its trials did
    not sample at temperature 1."""
    voice = TrainingConfig()
    if organism.genome["cooling"] != voice.cooling:
        return []
    scores = []
    for t in organism.judged():
        if voice.temperature in t.temperatures:
            scores.append(t.scores_at[t.temperatures.index(voice.temperature)][head])
        elif t.genome["temperature"] == voice.temperature:
            scores.append(t.scores[head])
    return scores


def percentile(x, scores):
    """The share of the sorted scores below x (ties count half), in [0, 1]."""
    return (bisect_left(scores, x) + bisect_right(scores, x)) / (2 * len(scores)) if scores else 0.5


def standing_key(organism, stick):
    """(standing, worst margin): the margin, its weakest head's score in spreads from the random
    genomes' mean (within +-3), breaks ties: of organisms that beat the same share of random
    genomes, the one whose weakest head is strongest.

    Under each head the share is the chance that the organism beats each random genome when an
    outside judge measures both, averaging JUDGE_TRIALS fresh trials of each: its true score is
    the mean of its trials give or take their standard error, and the judge's measurements of
    it and of the random genome scatter by their trial-to-trial spread. So an organism seen on
    few trials is counted neither better nor worse than it was seen, and one whose trials
    scatter widely (an unsteady genome) is counted as the gamble it is.
    """
    shares, margins = [], []
    trials = organism.judged()
    for name, (scores, mean, spread, noise) in stick.items():
        x = organism.fitness(name)
        own = trial_variance(trials, name, noise)
        error = math.sqrt(own / max(len(trials), 1) + (own + noise ** 2) / JUDGE_TRIALS)
        shares.append(expected_share(x, error, scores))
        margins.append(min(max((x - mean) / spread, -3.0), 3.0) if math.isfinite(x) else -math.inf)
    return sum(shares) / len(shares), min(margins)


def trial_variance(trials, head, noise):
    """The variance of head's score from trial to trial: over these trials, or noise squared
    (the spread measured over many organisms) when that is larger."""
    xs = [t.scores[head] for t in trials if math.isfinite(t.scores[head])]
    m = sum(xs) / len(xs) if xs else 0.0
    own = sum((x - m) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0
    return max(own, noise ** 2)


def expected_share(x, error, scores):
    """The expected share of scores below x when x is measured with this standard error: the
    percentile when the error is 0."""
    if not error or not math.isfinite(x) or not scores:
        return percentile(x, scores)
    return sum(0.5 * math.erfc((s - x) / (error * math.sqrt(2))) for s in scores) / len(scores)


def standing(organism, stick):
    """organism's mean percentile under the heads among the run's random genomes, in [0, 1].

    Under each head, its percentile is the share of the random genomes (their scores from
    `yardstick`) that scored below it, ties counting half. Percentiles have no scale, so Flow,
    Symmetry, Creativity and the held-out loss weigh the same, and 0.5 is what a typical random
    genome stands at: it is what an outside judge measures against random genomes.
    """
    return standing_key(organism, stick)[0]


def choose_winner(evolution):
    """(the island that bred it, the winner, its standing): the first finalist, the organism of the
    run with the best standing among random genomes on its confirming trials.
    MicrogptError when every evaluation failed."""
    if not evolution.finalists or evolution.finalists[0].result is None:
        raise MicrogptError("every evaluation failed; no genome to write (see the log for reasons)")
    winner = evolution.finalists[0]
    return winner.head, winner, standing(winner, evolution.yardstick)


def finite_or_none(x):
    """x, or None when it is not a finite number (JSON has no inf or NaN)."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def winner_genome(winner, winner_standing, evolution, mode="hydra"):
    """The genome.json dict for the winner: its genes, and what reproduces its first evaluation
    (`microgpt` with this genome trains with `seed` and gets `loss`, sampling `names` first),
    with its mean scores over its trials and its standing among the random genomes."""
    cfg = evolution.config
    genome = full_genome(winner.genome, cfg.steps)
    genome.update({
        "loss": finite_or_none(winner.val_loss),
        "generation": cfg.global_generation(winner),
        "evolved": True,
        "seed": winner.seed,
        "names": winner.shown_names(),
        "head": winner.head,
        "scores": {h.name: finite_or_none(winner.fitness(h.name)) for h in evolution.heads},
        "trials": len(winner.judged()),
        "standing": winner_standing,
        "mode": mode,
        "run_seed": cfg.seed,
        "organism": winner.id,
    })
    return genome
