"""The genome's genes: how a new organism draws them, how a mutant changes one, and the genes a
run writes to genome.json.

A new organism gets the seed's four (n_emb, n_head, n_layer, lr) at random and TrainingConfig's
defaults for the rest, so the first generation is random genomes as the seed draws them; a
mutant changes any one of them. steps is the run's, the same for every organism.
`extended_genome` draws from the whole space mutants reach: what a random search draws.
"""
import hashlib
import math

from microgpt.genome import GENE_KEYS
from microgpt.train import TrainingConfig

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
