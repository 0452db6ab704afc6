"""The genes, each declared once: one `Gene` per hyperparameter that evolves, in `SPACE`.

Each gene says what genome.json and the flags may hold (its caps), its flag and help, how a new
organism draws it, how a mutant changes it, how a random search draws it over the whole space
mutants reach, which values the final judgement tries, and how it is shown. genome.json's checks,
`microgpt`'s flags and its Config line, the creature file, Hydra's draws and mutations
(microgpt.hydra.genes), the console, the store and the report all read the table, so a new gene
is one entry here (and, if it changes the model or the training, there: TrainingConfig holds its
default). The anchors: Optuna's distributions (`suggest_float("lr", 1e-4, 1e-1, log=True)`) and
DEAP's registered attributes (`toolbox.register("attr_int", random.randint, 1, 4)`).

A new organism gets the seed's four (n_emb, n_head, n_layer, lr) at random and TrainingConfig's
defaults for the rest, so the first generation is random genomes as the seed draws them; a
mutant changes any one gene. steps is the run's, the same for every organism. The table's order
is the order of the random draws: changing it changes every run. The caps keep a hostile genome
from exhausting memory or running for days: at the caps a model has ~1.6M parameters and one
step takes well under a second.
"""
import json
import math
from dataclasses import dataclass
from typing import Callable, Optional

from microgpt._core import portable_exp, portable_log
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
    lo, hi = bounds                          # the core's exp and log: the same draw on every CPU
    return portable_exp(rng.uniform(portable_log(lo), portable_log(hi)))


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
    cap: tuple = ()                 # what genome.json and the flags may hold: (lo, hi) inclusive
                                    # for a whole number, (0, hi] for a number
    flags: tuple = ()               # `microgpt`'s flags that set it ("-e", "--emb")
    help: str = ""                  # what the flag's --help says of it
    optional: bool = False          # genome.json may leave it out (newer than the seed's genes)

    def default(self):
        return getattr(TrainingConfig(), self.name)

    def check(self, value, where):
        """None when value is within the gene's caps, else what is wrong, in words, for where."""
        lo, hi = self.cap
        if self.whole:
            if not is_whole(value):
                return f"{where}: {self.name} must be a whole number, got {json_text(value)}"
            if not lo <= value <= hi:
                return f"{where}: {self.name} must be between {lo} and {hi}, got {value}"
        elif not is_number(value) or not math.isfinite(value) or not 0 < value <= hi:
            return f"{where}: {self.name} must be a number in (0, {hi:g}], got {json_text(value)}"
        return None

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
         tune=lambda genome: MUTANT_EMB, cap=(1, 128), flags=("-e", "--emb"),
         help="embedding width n_emb"),
    Gene("n_head", "Head", "n_head (attention heads)", True,
         mutate=_afresh(lambda rng: rng.choice(N_HEADS)),
         span=("choice", N_HEADS), new=lambda rng: rng.choice(N_HEADS), cap=(1, 16),
         flags=("--head",), help="attention heads n_head; divides n_emb"),
    Gene("n_layer", "Lay", "n_layer (layers)", True, mutate=_step(MUTANT_LAYERS),
         span=("int", *MUTANT_LAYERS), new=lambda rng: rng.randint(*NEW_LAYERS),
         tune=lambda genome: range(MUTANT_LAYERS[0], MUTANT_LAYERS[1] + 1), cap=(1, 8),
         flags=("-y", "--layer"), help="transformer layers n_layer"),
    Gene("lr", "LR", "lr (learning rate)", False, mutate=_scale(LR_FACTOR, MUTANT_LR),
         span=("float", *MUTANT_LR, True),
         new=lambda rng: NEW_LR[0] + (NEW_LR[1] - NEW_LR[0]) * rng.random(),
         tune=lambda genome: [_clamp(genome["lr"] * f, MUTANT_LR) for f in LR_TUNING],
         shown="{:.4f}", cap=(0, 10.0), flags=("-l", "--lr"), help="peak learning rate"),
    Gene("temperature", "T", "temperature", False,
         mutate=_scale(TEMPERATURE_FACTOR, MUTANT_TEMPERATURE),
         span=("float", *MUTANT_TEMPERATURE, True), shown="{:.2f}", voice=True, cap=(0, 10.0),
         flags=("-t", "--temperature"), optional=True,
         help="sampling temperature, up to 10; lower is safer, higher is wilder"),
    Gene("cooling", "Cool", "cooling (temperature x, by letter)", False,
         mutate=_scale(COOLING_FACTOR, MUTANT_COOLING),
         span=("float", *MUTANT_COOLING, False), shown="{:.2f}", voice=True,
         cap=(0, 2.0), flags=("--cooling",), optional=True,   # above 1 a voice warms as it goes
         help="each letter samples at the last one's temperature times this, up to 2: below 1 "
              "a name begins boldly and ends calmly"),
    Gene("n_ctx", "Ctx", "n_ctx (context)", True,
         mutate=_afresh(lambda rng: rng.randint(*MUTANT_CTX)),
         span=("int", *MUTANT_CTX), tune=lambda genome: range(MUTANT_CTX[0], MUTANT_CTX[1] + 1),
         cap=(1, 64), flags=("-c", "--ctx"), help="context length n_ctx"),
    Gene("n_ff_exp", "FF", "n_ff_exp (MLP width x)", True,
         mutate=_afresh(lambda rng: rng.choice(MUTANT_FF)),
         span=("choice", MUTANT_FF), cap=(1, 8), flags=("-f", "--ff"),
         help="MLP width multiplier n_ff_exp"),
)
BY_NAME = {g.name: g for g in SPACE}
GENES = tuple(g.name for g in SPACE)


def trained_genes(genome):
    """{name: value} of genome.json's genes that TrainingConfig takes: the steps and every gene
    of the table."""
    return {k: genome[k] for k in ("steps", *GENES)}


def is_whole(x):
    """Whether x is a whole number as JSON gives one (not a bool)."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x):
    """Whether x is a number as JSON gives one (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def json_text(x):
    """x spelled as JSON spells it, for messages: null, true, "16", [1, 2] (cut at 40 characters)."""
    try:
        text = json.dumps(x)
    except (TypeError, ValueError):
        text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."
