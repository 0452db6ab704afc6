"""The search space, declared once: one `Gene` per evolving hyperparameter, in `SPACE`.

Each gene says how a new organism draws it, how a mutant changes it, how a random search draws it
over the whole space mutants reach, which values the final judgement tries, and how it is shown.
`new_genome`, `mutate`, `extended_genome`, `tuning_values`, the console and the report all read
the table, so a new gene is one entry here (and, if it changes the model or the training, there).
The anchors: Optuna's distributions (`suggest_float("lr", 1e-4, 1e-1, log=True)`) and DEAP's
registered attributes (`toolbox.register("attr_int", random.randint, 1, 4)`).

A new organism gets the seed's four (n_emb, n_head, n_layer, lr) at random and TrainingConfig's
defaults for the rest, so the first generation is random genomes as the seed draws them; a
mutant changes any one gene. steps is the run's, the same for every organism. The table's order
is the order of the random draws: changing it changes every run.
"""
import hashlib
import math
from dataclasses import dataclass
from typing import Callable, Optional

from microgpt.genome import GENE_KEYS
from microgpt.train import TrainingConfig

NEW_EMB, MUTANT_EMB = (16, 24, 32), (16, 24, 32, 40)
N_HEADS = (2, 4)
NEW_LAYERS, MUTANT_LAYERS = (1, 3), (1, 4)          # inclusive ranges
NEW_LR = (0.001, 0.015)                             # uniform in [lo, hi)
MUTANT_LR, LR_FACTOR = (0.0001, 0.1), (0.7, 1.3)
MUTANT_TEMPERATURE, TEMPERATURE_FACTOR = (0.1, 3.0), (0.75, 1.33)
MUTANT_COOLING, COOLING_FACTOR = (0.6, 1.0), (0.8, 1.1)
MUTANT_CTX = (4, 16)            # inclusive, drawn afresh; 16 holds the longest bundled name
MUTANT_FF = (1, 2, 3, 4)
LR_TUNING = (0.5, 0.7, 1.4, 2.0)                    # the final judgement tries lr times these


def _clamp(x, bounds):
    lo, hi = bounds
    return min(max(x, lo), hi)


def log_uniform(rng, bounds):
    lo, hi = bounds
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _step(bounds):
    """A mutation that moves a whole number one up or down, within bounds."""
    return lambda rng, x: _clamp(x + rng.choice((-1, 1)), bounds)


def _scale(factor, bounds):
    """A mutation that multiplies by a uniform factor, within bounds."""
    return lambda rng, x: _clamp(x * rng.uniform(*factor), bounds)


def _afresh(draw):
    """A mutation that draws the gene again, whatever it was."""
    return lambda rng, x: draw(rng)


@dataclass(frozen=True)
class Gene:
    """One evolving hyperparameter. Draws take a `random.Random`; None means "not done"."""
    name: str                       # genome.json's key
    label: str                      # the console's short label
    about: str                      # the report's label
    whole: bool                     # a whole number (the report draws its counts, not a median)
    mutate: Callable                # (rng, value) -> a mutant's value
    span: tuple                     # where mutants reach: ("choice", values), ("int", lo, hi)
                                    # (inclusive) or ("float", lo, hi, log): `extended`
    new: Optional[Callable] = None  # rng -> a new organism's value (None: TrainingConfig's default)
    tune: Optional[Callable] = None   # genome -> the values the final judgement tries
    shown: str = "{}"               # how the console prints a value
    voice: bool = False             # it shapes only how a trained model speaks, not its training

    def default(self):
        return getattr(TrainingConfig(), self.name)

    def show(self, value):
        """'Emb:16', 'LR:0.0050': the console's label and the value as `shown`."""
        return f"{self.label}:{self.shown.format(value)}"

    def extended(self, rng):
        """A value anywhere mutants reach, drawn uniformly (log-uniformly for a "log" float):
        what a random search draws."""
        kind, *bounds = self.span
        if kind == "choice":
            return rng.choice(bounds[0])
        if kind == "int":
            return rng.randint(*bounds)
        lo, hi, log = bounds
        return log_uniform(rng, (lo, hi)) if log else rng.uniform(lo, hi)


SPACE = (
    Gene("n_emb", "Emb", "n_emb (embedding width)", True,
         mutate=_afresh(lambda rng: rng.choice(MUTANT_EMB)),
         span=("choice", MUTANT_EMB), new=lambda rng: rng.choice(NEW_EMB),
         tune=lambda genome: MUTANT_EMB),
    Gene("n_head", "Head", "n_head (attention heads)", True,
         mutate=_afresh(lambda rng: rng.choice(N_HEADS)),
         span=("choice", N_HEADS), new=lambda rng: rng.choice(N_HEADS)),
    Gene("n_layer", "Lay", "n_layer (layers)", True, mutate=_step(MUTANT_LAYERS),
         span=("int", *MUTANT_LAYERS), new=lambda rng: rng.randint(*NEW_LAYERS),
         tune=lambda genome: range(MUTANT_LAYERS[0], MUTANT_LAYERS[1] + 1)),
    Gene("lr", "LR", "lr (learning rate)", False, mutate=_scale(LR_FACTOR, MUTANT_LR),
         span=("float", *MUTANT_LR, True),
         new=lambda rng: NEW_LR[0] + (NEW_LR[1] - NEW_LR[0]) * rng.random(),
         tune=lambda genome: [_clamp(genome["lr"] * f, MUTANT_LR) for f in LR_TUNING],
         shown="{:.4f}"),
    Gene("temperature", "T", "temperature", False,
         mutate=_scale(TEMPERATURE_FACTOR, MUTANT_TEMPERATURE),
         span=("float", *MUTANT_TEMPERATURE, True), shown="{:.2f}", voice=True),
    Gene("cooling", "Cool", "cooling (temperature x, by letter)", False,
         mutate=_scale(COOLING_FACTOR, MUTANT_COOLING),
         span=("float", *MUTANT_COOLING, False), shown="{:.2f}", voice=True),
    Gene("n_ctx", "Ctx", "n_ctx (context)", True,
         mutate=_afresh(lambda rng: rng.randint(*MUTANT_CTX)),
         span=("int", *MUTANT_CTX), tune=lambda genome: range(MUTANT_CTX[0], MUTANT_CTX[1] + 1)),
    Gene("n_ff_exp", "FF", "n_ff_exp (MLP width x)", True,
         mutate=_afresh(lambda rng: rng.choice(MUTANT_FF)),
         span=("choice", MUTANT_FF)),
)
BY_NAME = {g.name: g for g in SPACE}
GENES = tuple(g.name for g in SPACE)


def new_genome(rng):
    """A random genome for a new organism: the genes with a `new` draw drawn (in SPACE's order),
    the others TrainingConfig's defaults."""
    genome = {g.name: g.new(rng) if g.new is not None else g.default() for g in SPACE}
    return repair(genome)


def default_genome():
    """Every gene at TrainingConfig's default: the primordial creature, `microgpt` with no
    genome.json."""
    return repair({g.name: g.default() for g in SPACE})


def extended_genome(rng):
    """A genome drawn over the whole space Hydra's mutants reach, each gene by its `extended`
    draw (what a random search draws, and an outside judge's second yardstick)."""
    return repair({g.name: g.extended(rng) for g in SPACE})


def mutate(genome, rng):
    """A copy of genome with one gene changed (possibly to the value it had), then repaired."""
    child = dict(genome)
    gene = BY_NAME[rng.choice(GENES)]
    child[gene.name] = gene.mutate(rng, child[gene.name])
    return repair(child)


def tuning_values(gene, genome):
    """The values the final judgement tries for gene (one with a `tune`) of genome."""
    return BY_NAME[gene].tune(genome)


def trains_alike(genome, other):
    """Whether two genomes train the same model: they differ at most in genes of the voice."""
    return all(genome[g.name] == other[g.name] for g in SPACE if not g.voice)


def describe(genome, changed=False):
    """The genome in one line: 'Emb:16 Head:4 Lay:1 LR:0.0050 T:1.00 Cool:1.00 Ctx:16 FF:4'.

    changed: only the genes a new organism draws (the seed's four, always shown) and the others
    that show otherwise than their default ('Emb:16 Head:4 Lay:1 LR:0.0050 Cool:0.73'): what
    evolution moved, in the seed's short look (`at_defaults` says what is left out)."""
    return " ".join(g.show(genome[g.name]) for g in SPACE
                    if not changed or g.new is not None or g.show(genome[g.name]) != g.show(g.default()))


def at_defaults():
    """'T:1.00 Cool:1.00 Ctx:16 FF:4': the genes a new organism does not draw, at their defaults
    (what `describe(genome, changed=True)` leaves out)."""
    return " ".join(g.show(g.default()) for g in SPACE if g.new is None)


def repair(genome):
    """genome with n_head set to 2 when it does not divide n_emb (the seed's repair)."""
    if genome["n_emb"] % genome["n_head"]:
        genome["n_head"] = 2
    return genome


def full_genome(genome, steps):
    """genome.json's genes: the seven of the seed (steps the run's), then the other genes."""
    full = {k: genome[k] for k in GENES}
    full["steps"] = steps
    return {k: full[k] for k in (*GENE_KEYS, *(g for g in GENES if g not in GENE_KEYS))}


def derive_seed(*identity):
    """A 63-bit seed from the run's seed and an identity; sha256, so the same in every process."""
    text = ":".join(str(part) for part in identity)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
