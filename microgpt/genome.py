"""genome.json: the organism's DNA. Load, validate, save (atomically).

The format is the Rust seed's: `n_emb n_ctx n_layer n_head n_ff_exp steps lr` (the genes),
`loss generation evolved` (where it came from); any other key (`head`, `fitness`, `seed`, ...)
is allowed and kept. Reading never rewrites or deletes the file, good or bad.
"""
import json
import math
import os
import tempfile
from pathlib import Path

from microgpt.train import read_text

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


class GenomeError(ValueError):
    """A genome.json that cannot be used; the message names the file and the problem."""


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_genes(genes, where="genome"):
    """Raise GenomeError (prefixed with `where`) unless every gene present is in range.

    Used for genome.json and for command-line overrides alike, so both obey the same caps.
    """
    for key, (lo, hi) in INT_GENES.items():
        if key not in genes:
            continue
        value = genes[key]
        if not _is_int(value):
            raise GenomeError(f"{where}: {key} must be a whole number, got {value!r}")
        if not lo <= value <= hi:
            raise GenomeError(f"{where}: {key} must be between {lo} and {hi}, got {value}")
    if "lr" in genes:
        lr = genes["lr"]
        if not _is_number(lr) or not math.isfinite(lr) or not 0 < lr <= LR_MAX:
            raise GenomeError(f"{where}: lr must be a number in (0, {LR_MAX}], got {lr!r}")
    if "n_emb" in genes and "n_head" in genes and genes["n_emb"] % genes["n_head"]:
        raise GenomeError(f"{where}: n_emb ({genes['n_emb']}) must be divisible by "
                          f"n_head ({genes['n_head']})")


def validate_genome(obj, where="genome"):
    """obj as a genome dict (a shallow copy), or GenomeError naming `where` and the field."""
    if not isinstance(obj, dict):
        raise GenomeError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in GENE_KEYS if k not in obj]
    if missing:
        raise GenomeError(f"{where}: missing field {', '.join(missing)}")
    check_genes(obj, where)
    if "loss" in obj and obj["loss"] is not None and not _is_number(obj["loss"]):
        raise GenomeError(f"{where}: loss must be a number, got {obj['loss']!r}")
    if "generation" in obj and not (_is_int(obj["generation"]) and obj["generation"] >= 0):
        raise GenomeError(f"{where}: generation must be a whole number >= 0, "
                          f"got {obj['generation']!r}")
    if "evolved" in obj and not isinstance(obj["evolved"], bool):
        raise GenomeError(f"{where}: evolved must be true or false, got {obj['evolved']!r}")
    return dict(obj)


def load_genome(path):
    """The validated genome in the file at path (a dict); GenomeError naming the file otherwise."""
    path = Path(path)
    try:
        text = read_text(path, "a genome file")
    except ValueError as exc:
        raise GenomeError(str(exc)) from None
    if any(line.startswith(("<<<<<<<", ">>>>>>>")) for line in text.splitlines()):
        raise GenomeError(f"{path}: has unresolved merge conflict markers (<<<<<<< / >>>>>>>)")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenomeError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                          f"column {exc.colno})") from None
    except RecursionError:
        raise GenomeError(f"{path}: not valid JSON (nested too deeply)") from None
    return validate_genome(obj, str(path))


def save_genome(path, genome):
    """Write genome (validated first) to path atomically: a temp file beside it, then os.replace.

    A reader sees the old file or the new one, never half of either.
    """
    path = Path(path)
    genome = validate_genome(genome, str(path))
    # JSON has no NaN or infinity: a diverged run's loss is written as null.
    genome = {k: None if isinstance(v, float) and not math.isfinite(v) else v
              for k, v in genome.items()}
    text = json.dumps(genome, indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())     # mkstemp makes it private; a genome is not
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask():
    """The process's umask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
