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
final ones, and the winner is chosen among them by a scale-free rule (`choose_winner`).
The island model is Whitley, Rana & Heckendorn 1999; the keep-two-and-mutate loop is the seed's.
`--classic` is the seed's legacy `evolve`: the same engine with one island and one combined
objective. The `microgpt-hydra` command that drives it lives in microgpt.cli.

`evolve` is a plain function over genomes. Evaluations go through an injected
`concurrent.futures.Executor` (as DEAP injects `toolbox.map`): a task is a genome and a seed, a
result is names and losses, so a process pool runs them on every core. Every random draw comes
from a generator seeded from the run's seed and the organism's identity (cycle, generation, head,
index), and results are collected by identity, never by completion order: the same seed gives the
same run, and the same genome.json, for any number of workers.
"""
import functools
import hashlib
import math
import random
import sys
import time
from bisect import bisect_left, bisect_right
from concurrent.futures import BrokenExecutor, as_completed
from dataclasses import dataclass, field
from typing import Optional

from microgpt.genome import GENE_KEYS
from microgpt.train import Dataset, TrainingConfig, load_names, train_and_generate

# The genes that evolve; n_ctx and n_ff_exp keep TrainingConfig's defaults, steps is the run's.
GENES = ("n_emb", "n_head", "n_layer", "lr")
NEW_EMB, MUTANT_EMB = (16, 24, 32), (16, 24, 32, 40)
N_HEADS = (2, 4)
NEW_LAYERS, MUTANT_LAYERS = (1, 3), (1, 4)          # inclusive ranges
NEW_LR = (0.001, 0.015)                             # uniform in [lo, hi)
MUTANT_LR, LR_FACTOR = (0.0001, 0.1), (0.7, 1.3)
N_CHAMPIONS = 2                                     # kept each generation, sent to the Gathering
MIN_POPULATION = N_CHAMPIONS + 1                    # room for at least one mutant
NAMES_KEPT = 5                                      # names per champion in genome.json and tables


# The genome.

def new_genome(rng):
    """A random genome for a new organism: {n_emb, n_head, n_layer, lr}."""
    lo, hi = NEW_LR
    genome = {"n_emb": rng.choice(NEW_EMB), "n_head": rng.choice(N_HEADS),
              "n_layer": rng.randint(*NEW_LAYERS), "lr": lo + (hi - lo) * rng.random()}
    return repair(genome)


def mutate(genome, rng):
    """A copy of genome with one gene changed (possibly to the value it had), then repaired."""
    child = dict(genome)
    gene = rng.choice(GENES)
    if gene == "n_emb":
        child["n_emb"] = rng.choice(MUTANT_EMB)
    elif gene == "n_head":
        child["n_head"] = rng.choice(N_HEADS)
    elif gene == "n_layer":
        lo, hi = MUTANT_LAYERS
        child["n_layer"] = min(max(child["n_layer"] + rng.choice((-1, 1)), lo), hi)
    else:
        lo, hi = MUTANT_LR
        child["lr"] = min(max(child["lr"] * rng.uniform(*LR_FACTOR), lo), hi)
    return repair(child)


def repair(genome):
    """genome with n_head set to 2 when it does not divide n_emb (the seed's repair)."""
    if genome["n_emb"] % genome["n_head"]:
        genome["n_head"] = 2
    return genome


def full_genome(genome, steps):
    """The seven genes of genome.json: the evolved four, TrainingConfig's n_ctx and n_ff_exp, steps."""
    defaults = TrainingConfig()
    full = {"n_emb": genome["n_emb"], "n_ctx": defaults.n_ctx, "n_layer": genome["n_layer"],
            "n_head": genome["n_head"], "n_ff_exp": defaults.n_ff_exp, "steps": steps,
            "lr": genome["lr"]}
    return {k: full[k] for k in GENE_KEYS}


def derive_seed(*identity):
    """A 63-bit seed from the run's seed and an identity; sha256, so the same in every process."""
    text = ":".join(str(part) for part in identity)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


# The worker: module-level, plain values in and out.

@functools.lru_cache(maxsize=4)
def _dataset(path):
    """The names at path (None: the bundled ones), read and prepared once per worker process."""
    return Dataset(load_names(path))


def evaluate_genome(genome, samples, seed, data=None):
    """Train one organism and sample its names: {names, val_loss, final_loss, num_params, seconds}.

    genome holds all seven genes; data is a path to the names (None: the bundled ones).
    """
    cfg = TrainingConfig(**{k: genome[k] for k in GENE_KEYS}, gen_samples=samples, seed=seed,
                         input_file=data)
    result = train_and_generate(cfg, dataset=_dataset(data))
    return {"names": list(result.names), "val_loss": float(result.val_loss),
            "final_loss": float(result.final_loss), "num_params": int(result.num_params),
            "seconds": float(result.seconds)}


# Organisms and the engine.

@dataclass(eq=False)              # organisms are compared by identity
class Organism:
    """A genome with its identity and, once evaluated, its result and its score under every head."""
    genome: dict                    # n_emb, n_head, n_layer, lr
    head: str                       # the head whose island bred it
    cycle: int                      # 0-based, like generation and index
    generation: int                 # within the cycle
    index: int                      # its place in the population that bred it
    seed: int                       # the seed its evaluation trains and samples with
    result: Optional[dict] = None   # the worker's dict; None until evaluated or when it failed
    error: Optional[str] = None     # why the evaluation failed
    attempts: int = 0
    scores: dict = field(default_factory=dict)   # head name -> score (-inf: failed)

    @property
    def id(self):
        return f"c{self.cycle + 1}g{self.generation + 1}-{self.head}-{self.index}"

    @property
    def evaluated(self):
        return self.result is not None or self.error is not None

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
        return self.scores.get(head, -math.inf)


@dataclass(frozen=True)
class HydraConfig:
    """The run: sizes, training length, seed and dataset (the seed's defaults)."""
    population: int = 8             # organisms per head
    generations: int = 3            # per cycle
    cycles: int = 5
    steps: int = 300                # training steps per evaluation
    samples: int = 20               # names sampled per evaluation
    seed: int = 42
    data: Optional[str] = None      # path of the names; None: the bundled ones

    def global_generation(self, organism):
        """The 1-based generation of the run in which organism was born."""
        return organism.cycle * self.generations + organism.generation + 1


CLASSIC = {"population": 12, "generations": 5, "cycles": 1}


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


def score(organism, heads):
    """Fill organism.scores under every head; a failed or non-finite one scores -inf."""
    for head in heads:
        value = -math.inf
        if organism.result is not None:
            value = head.score(organism.names, organism.val_loss)
            value = value if math.isfinite(value) else -math.inf
        organism.scores[head.name] = value


def rank(population, head):
    """population sorted best first under head; ties keep their order (a stable sort)."""
    return sorted(population, key=lambda o: -o.fitness(head))


def breed(ranked, rng, head, cycle, generation, run_seed):
    """The next population: the ranked one's champions, then mutants of them to refill it."""
    champions = ranked[:N_CHAMPIONS]
    children = []
    for index in range(len(champions), len(ranked)):
        genome = mutate(rng.choice(champions).genome, rng)
        children.append(Organism(genome, head, cycle, generation, index,
                                 derive_seed(run_seed, cycle, generation, head, index)))
    return champions + children


def gather(populations, heads):
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
        immigrants = rank(immigrants, h.name)[:room]
        natives = populations[h.name][:len(populations[h.name]) - len(immigrants)]
        received[h.name] = immigrants
        after[h.name] = rank(natives + immigrants, h.name)
    return pool, received, after


def training_cost(organism):
    """A rough relative cost of training organism: the multiply-adds of a layer times layers.

    Submitting the costliest first keeps every worker busy to the end of a generation
    (longest-processing-time-first scheduling); results are still gathered by identity.
    """
    g = organism.genome
    return g["n_layer"] * g["n_emb"] ** 2


def _check_result(result):
    """result if it looks like evaluate_genome's dict, else ValueError."""
    if (not isinstance(result, dict) or not isinstance(result.get("names"), list)
            or not all(isinstance(n, str) for n in result["names"])
            or not isinstance(result.get("val_loss"), (int, float))):
        raise ValueError(f"evaluation returned {type(result).__name__}, not names and losses")
    return result


def evaluate_all(todo, executor, cfg, heads, observer, evaluate, respawn=None):
    """Evaluate and score todo in place through executor; the executor to use from then on.

    An evaluation that raises is scored -inf with its reason. When a worker process dies (the
    pool breaks), respawn(broken executor) gives a new one and the lost evaluations are retried
    once; without respawn, or the second time, they are scored -inf.
    """
    while todo:
        futures, lost = {}, []
        try:
            for org in sorted(todo, key=training_cost, reverse=True):   # longest first
                org.attempts += 1
                try:
                    fut = executor.submit(evaluate, full_genome(org.genome, cfg.steps), cfg.samples,
                                          org.seed, cfg.data)
                except BrokenExecutor:
                    lost.append(org)
                    continue
                futures[fut] = org
            for fut in as_completed(futures):
                org = futures[fut]
                try:
                    org.result = _check_result(fut.result())
                except BrokenExecutor:
                    lost.append(org)
                    continue
                except Exception as exc:   # the organism fails, the run goes on
                    org.error = f"{type(exc).__name__}: {exc}"
                score(org, heads)
                observer.evaluated(org)
        except BaseException:              # Ctrl-C: nothing more should start
            for fut in futures:
                fut.cancel()
            raise
        order = {id(o): i for i, o in enumerate(todo)}
        lost.sort(key=lambda o: order[id(o)])
        if lost and respawn is not None:
            executor = respawn(executor)
        # every organism of a batch is on the same attempt: the first, or its retry
        todo = lost if lost and respawn is not None and lost[0].attempts < 2 else []
        if todo:
            observer.retrying(todo)
        for org in lost if not todo else ():
            org.error = "worker process died" + (" twice" if org.attempts > 1 else "")
            score(org, heads)
            observer.evaluated(org)
    return executor


@dataclass
class Evolution:
    """What a run leaves: the final populations (ranked) and every evaluation, in identity order."""
    heads: list
    config: HydraConfig
    populations: dict
    evaluations: list

    @property
    def champions(self):
        """{head name: its best organism at the end}."""
        return {h.name: self.populations[h.name][0] for h in self.heads}


def evolve(heads, executor, cfg, *, evaluate=evaluate_genome, respawn=None, observer=None):
    """Run Hydra: cfg.cycles of isolation, each but the last followed by the Gathering: an Evolution.

    With one head it is the classic single-population evolution (there is no one to gather with).
    evaluate(genome, samples, seed, data) -> dict runs in executor; respawn replaces a broken one.
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
    evaluations = []
    for cycle in range(cfg.cycles):
        start = time.perf_counter()
        for gen in range(cfg.generations):
            if cycle or gen:
                for h in heads:
                    rng = random.Random(f"{cfg.seed}:breed:{cycle}:{gen}:{h.name}")
                    populations[h.name] = breed(populations[h.name], rng, h.name, cycle, gen,
                                                cfg.seed)
            todo = [o for h in heads for o in populations[h.name] if not o.evaluated]
            observer.generation_started(cycle, gen, todo)
            executor = evaluate_all(todo, executor, cfg, heads, observer, evaluate, respawn)
            evaluations.extend(todo)
            populations = {h.name: rank(populations[h.name], h.name) for h in heads}
            observer.generation(cycle, gen, populations)
        if len(heads) > 1 and cycle < cfg.cycles - 1:     # the last cycle's champions are final
            pool, received, populations = gather(populations, heads)
            observer.gathering(cycle, pool, received)
        observer.cycle_done(cycle, time.perf_counter() - start)
    return Evolution(list(heads), cfg, populations, evaluations)


# Choosing the winner, scale-free.

def standing(organism, evolution):
    """organism's mean percentile under the run's heads, in [0, 1].

    Under each head, its percentile is the share of every evaluation of the run that scored
    below it under that head (ties count half). Percentiles have no scale, so Flow, Symmetry,
    Creativity and the held-out loss weigh the same.
    """
    total = 0.0
    for h in evolution.heads:
        scored = sorted(o.fitness(h.name) for o in evolution.evaluations)
        x = organism.fitness(h.name)
        total += (bisect_left(scored, x) + bisect_right(scored, x)) / (2 * len(scored))
    return total / len(evolution.heads)


def choose_winner(evolution):
    """(head name, its champion, the champion's standing): the final champion with the best
    standing; ties go to the first head. ValueError when every champion failed."""
    best = None
    for head, organism in evolution.champions.items():
        if organism.result is not None:
            s = standing(organism, evolution)
            if best is None or s > best[2]:
                best = (head, organism, s)
    if best is None:
        raise ValueError("every evaluation failed; no genome to write (see the log for reasons)")
    return best


def finite_or_none(x):
    """x, or None when it is not a finite number (JSON has no inf or NaN)."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def winner_genome(head, winner, winner_standing, evolution, mode="hydra"):
    """The genome.json dict for winner, head's champion: genes, loss, generation, evolved, and
    where it came from (bred_by differs from head when it won as an immigrant)."""
    cfg = evolution.config
    genome = full_genome(winner.genome, cfg.steps)
    genome.update({
        "loss": finite_or_none(winner.val_loss),
        "generation": cfg.global_generation(winner),
        "evolved": True,
        "head": head,
        "bred_by": winner.head,
        "scores": {h.name: finite_or_none(winner.fitness(h.name)) for h in evolution.heads},
        "standing": winner_standing,
        "mode": mode,
        "seed": cfg.seed,
        "organism": winner.id,
        "names": winner.shown_names(),
    })
    return genome


if __name__ == "__main__":     # `python -m microgpt.hydra`: the command, from its module
    from microgpt.cli import hydra_main

    sys.exit(hydra_main())
