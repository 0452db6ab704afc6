"""microgpt: a whole GPT on a scalar autograd engine, and an evolution that rewrites its genome.

Public names only; importing this is cheap (the compiled core and nothing heavy).
"""
try:
    from microgpt._core import (
        Val,
        ValMatrix,
        Vec,
        adam_step,
        attention,
        attention_block,
        attention_seq,
        cross_entropy,
        dot,
        embed_seq,
        graph_size,
        linear,
        loss_seq,
        mlp_block,
        mlp_seq,
        rmsnorm,
        softmax,
        vadd,
        vrelu,
        vsum,
    )
except ImportError as exc:  # no pure-Python fallback ships: a missing core is a build error
    raise ImportError(
        "microgpt's compiled core (microgpt._core) is missing: install the package with "
        "`pip install .` (it needs a C compiler), do not import it from the source tree"
    ) from exc

# The one place the version is written: the build reads it (pyproject.toml), `--version` shows it,
# and genome.json, the store's winner and the creature file record it. CHANGELOG.md says what changed.
__version__ = "0.2.0"

# The Python layers load on first use, so `import microgpt` costs only the compiled core.
_LAZY = {"GPT": "microgpt.model", "TrainingConfig": "microgpt.train",
         "TrainingResult": "microgpt.train", "train_and_generate": "microgpt.train",
         # for scripting experiments (microgpt.experiment): the gene space, random genomes, the
         # heads by name, and one evaluation of a genome at some voices
         "SPACE": "microgpt.experiment", "random_genome": "microgpt.experiment",
         "get_heads": "microgpt.experiment", "evaluate": "microgpt.experiment"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'microgpt' has no attribute {name!r}")


__all__ = [
    "GPT",
    "SPACE",
    "evaluate",
    "get_heads",
    "random_genome",
    "TrainingConfig",
    "TrainingResult",
    "train_and_generate",
    "Val",
    "ValMatrix",
    "Vec",
    "adam_step",
    "attention",
    "attention_block",
    "attention_seq",
    "cross_entropy",
    "dot",
    "embed_seq",
    "graph_size",
    "linear",
    "loss_seq",
    "mlp_block",
    "mlp_seq",
    "rmsnorm",
    "softmax",
    "vadd",
    "vrelu",
    "vsum",
]
