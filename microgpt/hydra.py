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
objective.

`evolve` is a plain function over genomes. Evaluations go through an injected
`concurrent.futures.Executor` (as DEAP injects `toolbox.map`): a task is a genome and a seed, a
result is names and losses, so a process pool runs them on every core. Every random draw comes
from a generator seeded from the run's seed and the organism's identity (cycle, generation, head,
index), and results are collected by identity, never by completion order: the same seed gives the
same run, and the same genome.json, for any number of workers.
"""
import argparse
import functools
import hashlib
import json
import math
import os
import random
import secrets
import signal
import sys
import time
import traceback
from bisect import bisect_left, bisect_right
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from microgpt.genome import GENE_KEYS, check_genes, save_genome
from microgpt.heads import DEFAULT_HEADS, HYDRA_HEADS, Classic, make_heads
from microgpt.train import TrainingConfig, load_names, train_and_generate

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
    """The names at path (None: the bundled ones), read once per worker process."""
    return tuple(load_names(path))


def evaluate_genome(genome, samples, seed, data=None):
    """Train one organism and sample its names: {names, val_loss, final_loss, num_params, seconds}.

    genome holds all seven genes; data is a path to the names (None: the bundled ones).
    """
    cfg = TrainingConfig(**{k: genome[k] for k in GENE_KEYS}, gen_samples=samples, seed=seed,
                         input_file=data)
    result = train_and_generate(cfg, names=list(_dataset(data)))
    return {"names": list(result.names), "val_loss": float(result.val_loss),
            "final_loss": float(result.final_loss), "num_params": int(result.num_params),
            "seconds": float(result.seconds)}


def ignore_sigint():
    """Pool initializer: Ctrl-C is the parent's to handle; it stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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


def _finite(x):
    """x, or None when it is not a finite number (JSON has no inf or NaN)."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def winner_genome(head, winner, winner_standing, evolution, mode="hydra"):
    """The genome.json dict for winner, head's champion: genes, loss, generation, evolved, and
    where it came from (bred_by differs from head when it won as an immigrant)."""
    cfg = evolution.config
    genome = full_genome(winner.genome, cfg.steps)
    genome.update({
        "loss": _finite(winner.val_loss),
        "generation": cfg.global_generation(winner),
        "evolved": True,
        "head": head,
        "bred_by": winner.head,
        "scores": {h.name: _finite(winner.fitness(h.name)) for h in evolution.heads},
        "standing": winner_standing,
        "mode": mode,
        "seed": cfg.seed,
        "organism": winner.id,
        "names": winner.shown_names(),
    })
    return genome


# The command.

DESCRIPTION = """\
microgpt-hydra: breed microgpt's hyperparameters and write the winner to genome.json.

The lifecycle:
  1. Primordial: `microgpt` trains with its defaults ("I am unformed").
  2. Evolution:  `microgpt-hydra` awakens the Hydra. Three heads, each an island of
                 organisms (genomes: n_emb, n_head, n_layer, lr), evolve in isolation:
                 every organism trains a GPT and samples names, which its head scores:
                   Weaver (flow: vowel/consonant rhythm),
                   Mirror (symmetry: palindromes, repeated halves),
                   Spark (creativity: names not in the training data),
                   and, with --heads, Origin (the held-out loss).
                 Each generation a head keeps its 2 best and refills with their mutants.
                 Between cycles comes the Gathering: every head takes in the other heads'
                 champions, which replace its worst. After the last cycle the winner is
                 the champion with the best mean percentile across the heads (its scores
                 ranked against every evaluation of the run, so no head's scale
                 dominates), and its DNA is written to genome.json.
  3. Evolved:    `microgpt` in that directory reads genome.json and becomes the evolved
                 creature ("I have become").

--classic runs the seed's legacy evolution instead: one population of 12 for 5 generations
on 1.0*flow + 1.2*symmetry + 2.0*creativity.

Every run leaves experiments/<hydra|classic>-<time>.log (what it printed) and .jsonl (every
evaluation, appended as it finishes). The same --seed gives the same genome.json for any
--workers. Ctrl-C stops at once and leaves any existing genome.json untouched."""


def _whole(lowest, highest):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not lowest <= value <= highest:
            raise argparse.ArgumentTypeError(f"must be between {lowest} and {highest}, got {value}")
        return value
    parse.__name__ = "whole number"
    return parse


def default_workers():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def build_parser():
    p = argparse.ArgumentParser(prog="microgpt-hydra", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    e = p.add_argument_group("the evolution")
    e.add_argument("--heads", metavar="LIST", help=f"comma-separated heads from {', '.join(HYDRA_HEADS)} "
                                   f"({DEFAULT_HEADS})")
    e.add_argument("--cycles", metavar="N", type=_whole(1, 10_000),
                   help="cycles of isolation, with a Gathering between them (5)")
    e.add_argument("--generations", metavar="N", type=_whole(1, 10_000), help="generations per cycle (3)")
    e.add_argument("--population", metavar="N", type=_whole(MIN_POPULATION, 10_000),
                   help="organisms per head (8; 12 with --classic)")
    e.add_argument("--classic", action="store_true",
                   help="the legacy single-objective evolution (one population of 12, 5 generations)")
    o = p.add_argument_group("each organism")
    o.add_argument("--steps", metavar="N", type=_whole(1, 100_000), default=300, help="training steps (300)")
    o.add_argument("--samples", metavar="N", type=_whole(1, 10_000), default=20,
                   help="names sampled and scored (20)")
    o.add_argument("--data", metavar="PATH", type=Path,
                   help="names to train on, one per line (default: the bundled makemore names)")
    r = p.add_argument_group("the run")
    r.add_argument("--workers", metavar="N", type=_whole(1, 4096), default=default_workers(),
                   help="worker processes (all cores: %(default)s)")
    r.add_argument("--seed", metavar="N", type=_whole(0, 2**63 - 1),
                   help="run seed; the same seed gives the same run (default: a fresh one, printed)")
    r.add_argument("--out", metavar="PATH", type=Path, default=Path("genome.json"),
                   help="where to write the winner (genome.json)")
    r.add_argument("--experiments", metavar="DIR", type=Path, default=Path("experiments"),
                   help="directory for the run's log and records (experiments)")
    r.add_argument("-q", "--quiet", action="store_true",
                   help="print only the final table, not every generation")
    r.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return p


def open_experiment(directory, prefix):
    """(log file, records file) opened new in directory: <prefix>-YYYYmmdd-HHMMSS[-n].log/.jsonl."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        stem = f"{prefix}-{stamp}" + (f"-{n}" if n > 1 else "")
        try:
            log = open(directory / f"{stem}.log", "x", encoding="utf-8")
        except FileExistsError:
            continue
        try:
            return log, open(directory / f"{stem}.jsonl", "x", encoding="utf-8")
        except BaseException:
            log.close()
            raise
    raise OSError(f"{directory}: too many runs started in the same second")


def describe(genome):
    return (f"Emb:{genome['n_emb']} Head:{genome['n_head']} Lay:{genome['n_layer']} "
            f"LR:{genome['lr']:.4f}")


def show_score(x):
    return f"{x:.2f}" if math.isfinite(x) else "failed"


class Report(Observer):
    """The command's view of a run: stdout, the log, the records and a progress bar on stderr."""

    def __init__(self, cfg, heads, log, records, quiet, progress):
        self.cfg, self.heads, self.log, self.records = cfg, heads, log, records
        self.quiet, self.progress = quiet, progress
        self.width = max(len(h.name) for h in heads) + 2
        self.bar = None
        self.todo, self.done = {}, {}       # per head, this generation

    def say(self, text="", chatter=True):
        """A line for the log, and for stdout unless it is chatter and the run is quiet."""
        self.log.write(text + "\n")
        self.log.flush()
        if not (chatter and self.quiet):
            print(text, flush=True)

    def record(self, event, **fields):
        self.records.write(json.dumps({"event": event, **fields}, allow_nan=False) + "\n")
        self.records.flush()

    def note(self, text):
        """A line for the log only."""
        self.log.write(text + "\n")
        self.log.flush()

    def warn(self, text):
        """A line for the log and stderr (around the progress bar)."""
        self.note(text)
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def champion_line(self, head, organism):
        tag = f"[{head.name}]".ljust(self.width)
        born = "" if organism.head == head.name else f" (from {organism.head})"
        return (f"{tag} Champion: {describe(organism.genome)} -> "
                f"Score: {show_score(organism.fitness(head.name))} ({head.objective}){born}")

    def generation_started(self, cycle, generation, todo):
        cfg = self.cfg
        self.say(f"Cycle {cycle + 1}/{cfg.cycles} · Generation {generation + 1}/{cfg.generations}"
                 f" ({len(todo)} to evaluate)")
        self.todo = {h.name: sum(o.head == h.name for o in todo) for h in self.heads}
        self.done = dict.fromkeys(self.todo, 0)
        if self.progress:
            from tqdm import tqdm
            self.bar = tqdm(total=len(todo), unit="eval", file=sys.stderr, leave=False,
                            desc=f"cycle {cycle + 1}/{cfg.cycles} gen {generation + 1}/"
                                 f"{cfg.generations}", postfix=self.counts())

    def counts(self):
        """'Weaver 3/6  Mirror 2/6  Spark 6/6': this generation's evaluations done per head."""
        return "  ".join(f"{h} {self.done[h]}/{n}" for h, n in self.todo.items())

    def evaluated(self, organism):
        record = {
            "organism": organism.id, "head": organism.head, "cycle": organism.cycle + 1,
            "generation": organism.generation + 1, "index": organism.index, "seed": organism.seed,
            "genome": full_genome(organism.genome, self.cfg.steps),
            "scores": {h: _finite(s) for h, s in organism.scores.items()},
            "fitness": _finite(organism.fitness(organism.head)),
            "names": organism.names, "error": organism.error, "attempts": organism.attempts}
        for key in ("val_loss", "final_loss", "num_params", "seconds"):
            record[key] = _finite(organism.result.get(key)) if organism.result else None
        self.record("evaluation", **record)
        if organism.error is not None:
            self.warn(f"microgpt-hydra: {organism.id} ({describe(organism.genome)}) failed, "
                      f"scored worst: {organism.error}")
        self.done[organism.head] += 1
        if self.bar is not None:
            self.bar.set_postfix_str(self.counts(), refresh=False)
            self.bar.update(1)

    def generation(self, cycle, generation, populations):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        for h in self.heads:
            self.say("  " + self.champion_line(h, populations[h.name][0]))
        self.record("generation", cycle=cycle + 1, generation=generation + 1,
                    ranking={h: [o.id for o in pop] for h, pop in populations.items()})

    def gathering(self, cycle, pool, received):
        sizes = sorted({len(v) for v in received.values()})
        took = "/".join(str(n) for n in sizes)
        self.say(f"  >> The Gathering: {len(pool)} champions pooled; each head took in {took} "
                 f"of the others'. The organism learns from all heads.")
        self.record("gathering", cycle=cycle + 1, pool=[o.id for o in pool],
                    received={h: [o.id for o in imm] for h, imm in received.items()})

    def cycle_done(self, cycle, seconds):
        self.say(f"  Cycle {cycle + 1} took {seconds:.1f}s")
        self.say()

    def retrying(self, organisms):
        self.warn(f"microgpt-hydra: a worker process died; retrying {len(organisms)} lost "
                  f"evaluation{'s' if len(organisms) != 1 else ''} in a new pool")

    def close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class WorkerPool:
    """The command's process pool: replaced when a worker dies, its workers killed on Ctrl-C."""

    def __init__(self, workers):
        self.workers = workers
        self.executor = self._new()

    def _new(self):
        return ProcessPoolExecutor(max_workers=self.workers, initializer=ignore_sigint)

    def respawn(self, broken):
        broken.shutdown(wait=False, cancel_futures=True)
        self.executor = self._new()
        return self.executor

    def kill(self):
        """Stop at once: cancel what waits, terminate what runs."""
        processes = list((getattr(self.executor, "_processes", None) or {}).values())
        self.executor.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            p.terminate()
        for p in processes:
            p.join(timeout=5)

    def close(self):
        self.executor.shutdown(wait=True)


def _configure(args, parser):
    """(HydraConfig, heads, mode) from the flags; ValueError for bad input."""
    if args.classic and args.heads is not None:
        parser.error("--classic has its own combined objective; drop --heads")
    defaults = CLASSIC if args.classic else {}
    sizes = {k: getattr(args, k) if getattr(args, k) is not None
             else defaults.get(k, getattr(HydraConfig, k))
             for k in ("population", "generations", "cycles")}
    check_genes({"steps": args.steps}, "--steps")
    data = str(args.data.resolve()) if args.data is not None else None
    training_names = load_names(data)
    if args.classic:
        heads = [Classic(training_names)]
    else:
        heads = make_heads(args.heads if args.heads is not None else DEFAULT_HEADS, training_names)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    cfg = HydraConfig(steps=args.steps, samples=args.samples, seed=seed, data=data, **sizes)
    out = args.out
    if out.is_dir():
        raise ValueError(f"--out {out}: is a directory")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise ValueError(f"--out {out}: directory {out.parent} does not exist")
    return cfg, heads, "classic" if args.classic else "hydra"


def banner(cfg, heads, mode, workers):
    rule = "━" * 66
    if mode == "classic":
        title = (f"Classic Evolution — one population of {cfg.population}, "
                 f"{cfg.generations} generations, 1.0·flow + 1.2·symmetry + 2.0·creativity")
    else:
        title = (f"Hydra Evolution — {len(heads)} Heads, {cfg.cycles} Cycles × {cfg.generations} "
                 f"Generations, {cfg.population} organisms per head")
    return [title, f"  {cfg.steps} steps and {cfg.samples} names per organism, seed {cfg.seed}, "
                   f"{workers} worker{'s' if workers != 1 else ''}", rule]


def ascend(evolution, report, mode, out):
    """Print the final table, choose the winner and write it to out: the genome written."""
    head, winner, winner_standing = choose_winner(evolution)
    report.say("━" * 66, chatter=False)
    report.say("Hydra Ascended" if mode == "hydra" else "Evolution Complete", chatter=False)
    for h in evolution.heads:
        champion = evolution.champions[h.name]
        report.say("  " + report.champion_line(h, champion), chatter=False)
        report.say(" " * (report.width + 3) + ", ".join(champion.shown_names()), chatter=False)
    genome = winner_genome(head, winner, winner_standing, evolution, mode)
    loss = "unknown" if genome["loss"] is None else f"{genome['loss']:.4f}"
    how = "" if len(evolution.heads) == 1 else (
        f", mean standing {winner_standing:.2f} across {', '.join(h.name for h in evolution.heads)}")
    bred = "" if winner.head == head else f", bred by {winner.head}"
    report.say(f"Winner: [{head}] {describe(winner.genome)}, born in generation "
               f"{genome['generation']}{bred} (val_loss {loss}{how})", chatter=False)
    save_genome(out, genome)
    return genome


def _run(args, parser, argv, evaluate=evaluate_genome):
    """The command after parsing: 0, or 130 on Ctrl-C; bad input raises ValueError or OSError."""
    cfg, heads, mode = _configure(args, parser)
    log, records = open_experiment(args.experiments, mode)
    report = Report(cfg, heads, log, records, args.quiet,
                    progress=sys.stderr.isatty() and not args.quiet)
    started, pool, genome = time.perf_counter(), None, None
    try:
        report.note(f"$ microgpt-hydra {' '.join(argv)}\nstarted {time.strftime('%Y-%m-%d %H:%M:%S')}")
        report.record("run", mode=mode, heads=[h.name for h in heads], population=cfg.population,
                      generations=cfg.generations, cycles=cfg.cycles, steps=cfg.steps,
                      samples=cfg.samples, seed=cfg.seed, data=cfg.data, workers=args.workers,
                      out=str(args.out))
        for line in banner(cfg, heads, mode, args.workers):
            report.say(line)
        pool = WorkerPool(args.workers)
        evolution = evolve(heads, pool.executor, cfg, evaluate=evaluate, respawn=pool.respawn,
                           observer=report)
        pool.close()
        genome = ascend(evolution, report, mode, args.out)
        failed = sum(o.error is not None for o in evolution.evaluations)
        report.say(f"Wrote {args.out} after {len(evolution.evaluations)} evaluations "
                   f"({failed} failed) in {time.perf_counter() - started:.1f}s. "
                   f"Run `microgpt` to meet the evolved creature.", chatter=False)
        report.say(f"Log: {log.name}", chatter=False)
        report.record("end", status="completed", winner=genome["organism"], out=str(args.out),
                      seconds=time.perf_counter() - started)
        return 0
    except KeyboardInterrupt:
        if pool is not None:
            pool.kill()
        report.close_bar()
        outcome = f"{args.out} untouched" if genome is None else f"{args.out} was written"
        report.note(f"Interrupted after {time.perf_counter() - started:.1f}s; {outcome}.")
        report.record("end", status="interrupted", seconds=time.perf_counter() - started)
        print(f"microgpt-hydra: interrupted; {outcome} (log: {log.name})", file=sys.stderr)
        return 130
    except Exception as exc:             # recorded, then reported by main
        report.close_bar()
        report.note(f"Failed: {exc}")
        report.record("end", status="failed", reason=str(exc))
        raise
    finally:
        if pool is not None:            # after close() there is nothing left to kill
            pool.kill()
        report.close_bar()
        log.close()
        records.close()


def main(argv=None):
    """Run the Hydra; the exit status: 0 done, 1 bad input or failure, 2 bad flags, 130 Ctrl-C,
    141 stdout closed."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args, parser, argv)
    except KeyboardInterrupt:
        print("microgpt-hydra: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                # stdout closed early (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ValueError, OSError) as exc:   # GenomeError, dataset and file errors
        if args.debug:
            traceback.print_exc()
        print(f"microgpt-hydra: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    from microgpt.hydra import main as hydra_main  # the importable module, so workers find it

    sys.exit(hydra_main())
