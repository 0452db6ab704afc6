"""microgpt: a whole GPT on a scalar autograd engine, and an evolution that rewrites its genome.

Public names only; importing this is cheap (the compiled core and nothing heavy).
"""
try:
    from microgpt._core import (
        Val,
        ValMatrix,
        adam_step,
        cross_entropy,
        dot,
        linear,
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

__version__ = "0.1.0"

__all__ = [
    "Val",
    "ValMatrix",
    "adam_step",
    "cross_entropy",
    "dot",
    "linear",
    "rmsnorm",
    "softmax",
    "vadd",
    "vrelu",
    "vsum",
]
