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

# Caps keep a hostile genome from exhausting memory or running for days: at the caps a model has
# ~1.6M parameters and one step takes well under a second.
INT_GENES = {  # name: (smallest, largest)
    "n_emb": (1, 128),
    "n_ctx": (1, 64),
    "n_layer": (1, 8),
    "n_head": (1, 16),
    "n_ff_exp": (1, 8),
    "steps": (1, 100_000),
}
LR_MAX = 10.0
GENE_KEYS = (*INT_GENES, "lr")
# Genes newer than the seed, optional (a seven-gene genome takes TrainingConfig's defaults):
# the sampling temperature and its cooling, and the training seed that reproduces the genome's
# evaluation.
OPTIONAL_GENES = ("temperature", "cooling", "seed")
TEMPERATURE_MAX = 10.0
COOLING_MAX = 2.0        # above 1 the voice warms as the name goes on
SEED_MAX = 2**63 - 1
MAX_BYTES = 1 << 20      # a genome is a few hundred bytes; 1 MiB is generous


class GenomeError(MicrogptError):
    """A genome.json that cannot be used; the message names the file and the problem."""


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def json_text(x):
    """x spelled as JSON spells it, for messages: null, true, "16", [1, 2] (cut at 40 characters)."""
    try:
        text = json.dumps(x)
    except (TypeError, ValueError):
        text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def json_kind(x):
    """The JSON name of x's type: an object, an array, a string, a number, true, false, null."""
    if isinstance(x, bool) or x is None:
        return json_text(x)
    return {dict: "an object", list: "an array", str: "a string"}.get(type(x), "a number")


def check_genes(genes, where="genome"):
    """Raise GenomeError (prefixed with `where`) unless every gene present is in range.

    Used for genome.json and for command-line overrides alike, so both obey the same caps.
    """
    for key, (lo, hi) in INT_GENES.items():
        if key not in genes:
            continue
        value = genes[key]
        if not _is_int(value):
            raise GenomeError(f"{where}: {key} must be a whole number, got {json_text(value)}")
        if not lo <= value <= hi:
            raise GenomeError(f"{where}: {key} must be between {lo} and {hi}, got {value}")
    for key, cap in (("lr", LR_MAX), ("temperature", TEMPERATURE_MAX), ("cooling", COOLING_MAX)):
        value = genes.get(key, cap)
        if not _is_number(value) or not math.isfinite(value) or not 0 < value <= cap:
            raise GenomeError(f"{where}: {key} must be a number in (0, {cap}], "
                              f"got {json_text(value)}")
    if "seed" in genes and not (_is_int(genes["seed"]) and 0 <= genes["seed"] <= SEED_MAX):
        raise GenomeError(f"{where}: seed must be a whole number from 0 to 2^63-1, "
                          f"got {json_text(genes['seed'])}")
    if "n_emb" in genes and "n_head" in genes and genes["n_emb"] % genes["n_head"]:
        raise GenomeError(f"{where}: n_emb ({genes['n_emb']}) must be divisible by "
                          f"n_head ({genes['n_head']})")


def validate_genome(obj, where="genome"):
    """obj as a genome dict (a shallow copy), or GenomeError naming `where` and the field."""
    if not isinstance(obj, dict):
        raise GenomeError(f"{where}: expected a JSON object, got {json_kind(obj)}")
    missing = [k for k in GENE_KEYS if k not in obj]
    if missing:
        raise GenomeError(f"{where}: missing field {', '.join(missing)}")
    check_genes(obj, where)
    if "loss" in obj and obj["loss"] is not None and not _is_number(obj["loss"]):
        raise GenomeError(f"{where}: loss must be a number, got {json_text(obj['loss'])}")
    if "generation" in obj and not (_is_int(obj["generation"]) and obj["generation"] >= 0):
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
