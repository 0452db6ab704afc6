"""A small API for scripting experiments: the gene space, random genomes, the heads, and one
evaluation of a genome (train it, hear it at some voices, score what it says).

    >>> import microgpt
    >>> g = microgpt.random_genome(7)                      # as Hydra's first generation draws
    >>> out = microgpt.evaluate(g, seed=1, voices=[0.8, (1.9, 0.75)])
    >>> out["scores"]["Mirror"], out["voices"][1]["scores"]["Spark"], out["val_loss"]

`evaluate` trains exactly as `microgpt -g genome.json --seed SEED` does and scores the names that
command prints; the benchmarks (benchmarks/baselines.py) are written with the same pieces.
"""
import random

from microgpt.heads import DEFAULT_HEADS, DEFAULT_SCORING, make_heads
from microgpt.hydra.genes import SPACE, extended_genome, full_genome, new_genome
from microgpt.train import TrainingConfig, load_names
from microgpt.worker import evaluate_genome

__all__ = ["SPACE", "evaluate", "get_heads", "random_genome"]


def random_genome(seed, space="seed", steps=TrainingConfig.steps):
    """A genome.json dict drawn with `random.Random(seed)`: space "seed" draws as Hydra's first
    generation does (the seed's four genes, the defaults for the rest), "extended" anywhere
    Hydra's mutants reach (what a random search draws)."""
    draw = {"seed": new_genome, "extended": extended_genome}.get(space)
    if draw is None:
        raise ValueError(f"space must be 'seed' or 'extended', got {space!r}")
    return full_genome(draw(random.Random(seed)), steps)


def get_heads(spec=DEFAULT_HEADS, scoring=DEFAULT_SCORING, data=None):
    """The heads named in spec ("weaver,mirror,spark", or with "origin"), Spark knowing the names
    at data (None: the bundled ones)."""
    return make_heads(spec, load_names(data) if "spark" in spec.lower() else [], scoring)


def evaluate(genome, seed=42, samples=200, voices=(), heads=None, data=None):
    """Train genome (a genome.json dict: the seven genes, optionally temperature and cooling)
    with seed, sample `samples` names at its own voice and at each of voices (a temperature at its
    cooling, or a (temperature, cooling) pair), and score them under heads (default:
    `get_heads()`):

    {"names", "val_loss", "final_loss", "num_params", "seconds", "scores": {head: score},
     "voices": [{"voice", "names", "scores"}]}.
    """
    heads = get_heads(data=data) if heads is None else heads
    genome = {**{g.name: g.default() for g in SPACE if g.optional}, **genome}   # a seven-gene one
    voices = tuple(tuple(v) if isinstance(v, (tuple, list)) else v for v in voices)
    out = evaluate_genome(genome, samples, seed, data, voices)
    heard = out.pop("names_at", [])

    def score(names):
        return {h.name: h.score(names, out["val_loss"]) for h in heads}

    out["scores"] = score(out["names"])
    out["voices"] = [{"voice": v, "names": names, "scores": score(names)}
                     for v, names in zip(voices, heard)]
    return out
