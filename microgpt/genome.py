"""genome.json: the organism's DNA. Load, validate, save (atomically).

The format is the Rust seed's: `n_emb n_ctx n_layer n_head n_ff_exp steps lr` (the genes),
`loss generation evolved` (where it came from); newer, optional genes: `temperature` (sampling,
default 1.0), `cooling` (each letter samples at the last one's temperature times it, default 1.0)
and `seed` (the training seed that reproduces the genome's evaluation); any other
key (`head`, `scores`, `names`, ...) is allowed and kept. Reading never rewrites or deletes the
file, good or bad; only a regular file of at most 1 MiB is read. Writing goes through
microgpt.files (atomic, symlinks written through, the replaced genome kept beside it under a
dated name).
"""
import json
import math
from pathlib import Path

from microgpt.errors import DataError, MicrogptError
from microgpt.files import decode_text, parse_json, read_bytes, write_atomic
from microgpt.genes import SPACE, is_number, is_whole, json_text

# The seed's seven genes, in genome.json's order (the Rust seed's format); the others of the gene
# table (microgpt.genes) are newer and optional: a seven-gene genome takes TrainingConfig's
# defaults. steps is the run's training length, capped here; the genes' caps are the table's.
GENE_KEYS = ("n_emb", "n_ctx", "n_layer", "n_head", "n_ff_exp", "steps", "lr")
STEPS_CAP = (1, 100_000)
OPTIONAL_GENES = (*(g.name for g in SPACE if g.optional), "seed")   # and the training seed that
                                                                    # reproduces its evaluation
SEED_MAX = 2**63 - 1
MAX_BYTES = 1 << 20      # a genome is a few hundred bytes; 1 MiB is generous


class GenomeError(MicrogptError):
    """A genome.json that cannot be used; the message names the file and the problem."""


def json_kind(x):
    """The JSON name of x's type: an object, an array, a string, a number, true, false, null."""
    if isinstance(x, bool) or x is None:
        return json_text(x)
    return {dict: "an object", list: "an array", str: "a string"}.get(type(x), "a number")


def check_genes(genes, where="genome"):
    """Raise GenomeError (prefixed with `where`) unless every gene present is in range.

    Used for genome.json and for command-line overrides alike, so both obey the same caps.
    """
    for gene in SPACE:
        if gene.name in genes:
            problem = gene.check(genes[gene.name], where)
            if problem:
                raise GenomeError(problem)
    if "steps" in genes:
        lo, hi = STEPS_CAP
        if not is_whole(genes["steps"]):
            raise GenomeError(f"{where}: steps must be a whole number, got {json_text(genes['steps'])}")
        if not lo <= genes["steps"] <= hi:
            raise GenomeError(f"{where}: steps must be between {lo} and {hi}, got {genes['steps']}")
    if "seed" in genes and not (is_whole(genes["seed"]) and 0 <= genes["seed"] <= SEED_MAX):
        raise GenomeError(f"{where}: seed must be a whole number from 0 to 2^63-1, "
                          f"got {json_text(genes['seed'])}")
    if "n_emb" in genes and "n_head" in genes and genes["n_emb"] % genes["n_head"]:
        raise GenomeError(f"{where}: n_emb ({genes['n_emb']}) must be divisible by "
                          f"n_head ({genes['n_head']})")


def validate_genome(obj, where="genome"):
    """obj as a genome dict (a shallow copy), or GenomeError naming `where` and the field."""
    if not isinstance(obj, dict):
        raise GenomeError(f"{where}: expected a JSON object, got {json_kind(obj)}")
    check_genes(obj, where)                 # a bad value is named before a missing field
    missing = [k for k in GENE_KEYS if k not in obj]
    if missing:
        raise GenomeError(f"{where}: missing field {', '.join(missing)}")
    if "loss" in obj and obj["loss"] is not None and not is_number(obj["loss"]):
        raise GenomeError(f"{where}: loss must be a number, got {json_text(obj['loss'])}")
    if "generation" in obj and not (is_whole(obj["generation"]) and obj["generation"] >= 0):
        raise GenomeError(f"{where}: generation must be a whole number >= 0, "
                          f"got {json_text(obj['generation'])}")
    if "evolved" in obj and not isinstance(obj["evolved"], bool):
        raise GenomeError(f"{where}: evolved must be true or false, got {json_text(obj['evolved'])}")
    return dict(obj)


def load_genome(path):
    """The validated genome in the file at path (a dict); GenomeError naming the file otherwise."""
    path = Path(path)
    try:
        text = decode_text(read_bytes(path, "a genome file", limit=MAX_BYTES), path)
    except DataError as exc:
        raise GenomeError(str(exc)) from None
    if any(line.startswith(("<<<<<<<", ">>>>>>>")) for line in text.splitlines()):
        raise GenomeError(f"{path}: has unresolved merge conflict markers (<<<<<<< / >>>>>>>)")
    try:
        obj = parse_json(text, path)
    except DataError as exc:
        raise GenomeError(str(exc)) from None
    return validate_genome(obj, str(path))


def genome_bytes(genome, where="genome"):
    """genome (validated first) as the UTF-8 text of genome.json; a diverged loss becomes null."""
    genome = validate_genome(genome, where)
    # JSON has no NaN or infinity: a diverged run's loss is written as null.
    genome = {k: None if isinstance(v, float) and not math.isfinite(v) else v
              for k, v in genome.items()}
    return (json.dumps(genome, indent=2, allow_nan=False) + "\n").encode("utf-8")


def save_genome(path, genome, flag=None):
    """Write genome to path atomically: (the file written, where the genome it replaced was kept,
    or None). UsageError (GenomeError for the genome itself) before anything is written."""
    return write_atomic(path, genome_bytes(genome, str(path)), flag)
