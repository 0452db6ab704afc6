"""An organism (a genome with its identity and lineage) and its trials (each one evaluation), the
run's configuration, and the observers that watch a run."""
import math
from dataclasses import InitVar, dataclass, field
from typing import Optional

from microgpt._core import total
from microgpt.hydra.genes import derive_seed, repair, trains_alike

N_CHAMPIONS = 2                                     # kept each generation, sent to the Gathering
MIN_POPULATION = N_CHAMPIONS + 1                    # room for at least one mutant
NAMES_KEPT = 5                                      # names per champion in genome.json and tables


def at_voice(genome, voice):
    """genome speaking with voice, a (temperature, cooling): a new dict."""
    temperature, cooling = voice
    return dict(genome, temperature=temperature, cooling=cooling)


@dataclass(eq=False)              # trials are compared by identity
class Trial:
    """One evaluation of an organism (what Optuna calls a trial): a training seed, the voices it
    is heard at, its result and its score under every head."""
    organism: "Organism" = field(repr=False)   # whose genes it trains
    n: int                          # 0: the birth; n: the n-th re-judging
    seed: int                       # the seed this evaluation trains and samples with
    temperatures: tuple = ()        # also sample at these voices: a temperature (at its own
                                    # cooling) or a (temperature, cooling) pair
    result: Optional[dict] = None   # the worker's dict; None until evaluated or when it failed
    error: Optional[str] = None     # why the evaluation failed
    attempts: int = 0
    scores: dict = field(default_factory=dict)      # head name -> score (-inf: failed)
    scores_at: list = field(default_factory=list)   # scores at each of temperatures
    voice: Optional[tuple] = None   # heard at this (temperature, cooling): its names and scores
                                    # are one trial's at that voice (`microgpt.hydra.Heard`)

    @property
    def id(self):
        """Its organism's id, and for a re-judging /t<n+1>: 'c1g2-Weaver-3/t2'."""
        return self.organism.id if not self.n else f"{self.organism.id}/t{self.n + 1}"

    @property
    def genome(self):
        """Its organism's genome, at its voice when it was heard at one."""
        return self.organism.genome if self.voice is None else at_voice(self.organism.genome, self.voice)

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


class Judged:
    """What trials say of what they judged (an Organism, or one Heard at a voice): its fitness
    under a head is the mean over every trial that succeeded, so a lucky first sample does not
    stay on top; its names and loss are its first trial's."""

    def judged(self):
        """Every trial that succeeded, in order."""
        return [t for t in self.trials if t.result is not None]

    def fitness(self, head):
        """The mean of head's score over the trials that succeeded; -inf when none did."""
        values = [t.scores.get(head, -math.inf) for t in self.judged()]
        return total(values) / len(values) if values else -math.inf

    @property
    def birth(self):
        """Its first trial."""
        return self.trials[0]

    @property
    def names(self):
        return self.birth.names

    def shown_names(self):
        """Its first trial's first NAMES_KEPT non-empty names, to print and keep in genome.json."""
        return self.birth.shown_names()

    @property
    def val_loss(self):
        return self.birth.val_loss


@dataclass(eq=False)              # organisms are compared by identity
class Organism(Judged):
    """A genome with its identity and lineage, and its trials: its birth, then any re-judging
    (each one evaluation, a `Trial`; a re-judging trains the same genome on a fresh seed).
    A tuned genome's birth is a seed it is never judged on: its trials are re-judgings.
    """
    genome: dict                    # GENES
    head: str                       # the head whose island bred it
    cycle: int                      # 0-based, like generation and index
    generation: int                 # within the cycle
    index: int                      # its place in the population that bred it
    seed: InitVar[Optional[int]]    # its birth's seed (None: its trials are given it)
    parent: Optional[str] = None    # the id of the champion it is a mutant of (None: new)
    tuned: str = ""                 # the genes the final judgement tuned: "@n_ctx=7@lr=0.01"
    label: str = ""                 # an id of its own, for one no island bred ("primordial")
    trials: list = field(default_factory=list)      # its Trials: the birth, then re-judgings

    def __post_init__(self, seed):
        if seed is not None:
            self.trials.append(Trial(self, 0, seed))

    @property
    def id(self):
        base = self.label or f"c{self.cycle + 1}g{self.generation + 1}-{self.head}-{self.index}"
        return base + self.tuned

    @property
    def evaluated(self):
        return self.birth.evaluated

    def rejudge(self, run_seed):
        """A new trial of this organism on a fresh seed (appended to its trials)."""
        n = len(self.trials)
        t = Trial(self, n, derive_seed(run_seed, "rejudge", self.id, n))
        self.trials.append(t)
        return t

    def retuned(self, gene, value, run_seed, voice=None):
        """This genome with gene set to value (repaired), as an organism yet to be judged (its
        trials are its re-judgings); None when it would train as this one does (the genes that
        only shape the voice aside: its trials, heard at every voice, already say how that
        speaks). voice (a (temperature, cooling) it was heard at): start from it, whose cooling
        then shows in the id when it is another."""
        start, tuned = self.genome, self.tuned
        if voice is not None:
            start = at_voice(self.genome, voice)
            if start["cooling"] != self.genome["cooling"]:
                tuned += f"@cooling={start['cooling']:.4g}"
        genome = repair(dict(start, **{gene: value}))
        if trains_alike(genome, self.genome):
            return None
        tuned = f"{tuned}@{gene}={value:.4g}"
        return Organism(genome, self.head, self.cycle, self.generation, self.index,
                        derive_seed(run_seed, "tune", self.id, tuned), parent=self.parent,
                        tuned=tuned)


@dataclass(eq=False)
class Heard(Judged):
    """An organism heard at one voice: some of its trials' names and scores there (`Trial.voice`),
    which cost no training. Ranked like an organism; its genome is the organism's at the voice."""
    organism: Organism
    voice: tuple                    # (temperature, cooling)
    trials: list                    # Trials, each one of the organism's heard at voice

    @property
    def genome(self):
        return at_voice(self.organism.genome, self.voice)

    @property
    def id(self):
        return self.organism.id

    @property
    def head(self):
        return self.organism.head

    @property
    def cycle(self):
        return self.organism.cycle

    @property
    def generation(self):
        return self.organism.generation

    @property
    def tuned(self):
        return self.organism.tuned


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
        return run_generation(organism.cycle + 1, organism.generation + 1, self.generations)

def run_generation(cycle, generation, per_cycle):
    """The 1-based generation of the run that is the generation-th (1-based) of the cycle-th
    (1-based) cycle of per_cycle generations: the one numbering of the console, the store's
    readers and genome.json."""
    return (cycle - 1) * per_cycle + generation


CLASSIC = {"population": 12, "generations": 5, "cycles": 1}

SIZE_CAPS = {"population": (MIN_POPULATION, 10_000), "generations": (1, 10_000), "cycles": (1, 10_000),
             "steps": (1, 100_000), "samples": (1, 10_000)}


class Observer:
    """What the engine reports as it goes; the defaults do nothing."""

    def primordial_started(self, todo):
        """todo: the primordial creature's trials, the run's baseline, evaluated first."""

    def generation_started(self, cycle, generation, todo):
        """todo: the trials about to be evaluated, every head's together."""

    def evaluated(self, trial):
        """Called as each evaluation (a Trial) finishes (in completion order), failures included."""

    def generation(self, cycle, generation, populations):
        """populations: {head name: organisms ranked best first under that head}."""

    def gathering(self, cycle, pool, received):
        """pool: the champions; received: {head name: the immigrants it took in}."""

    def cycle_done(self, cycle, seconds):
        """The cycle's wall time."""

    def retrying(self, organisms):
        """A worker process died; these lost trials run again in a new pool."""

    def final_started(self, organisms, todo, what):
        """A stage of the final judgement: organisms (what they are, in words) are re-judged by
        the evaluations todo."""


class Observers(Observer):
    """Several observers as one: each of Observer's calls goes to every one, in order."""

    def __init__(self, *observers):
        self.observers = observers


def _tell_all(method):
    """Observers' `method`: the call passed to each of its observers."""
    def tell(self, *args):
        for o in self.observers:
            getattr(o, method)(*args)
    tell.__name__ = method
    return tell


for _method in [m for m in vars(Observer) if not m.startswith("_")]:   # every event, once
    setattr(Observers, _method, _tell_all(_method))
