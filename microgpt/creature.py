"""The creature file: a trained microgpt saved whole, to speak again or train on without retraining.

Format: a numpy `.npz` archive (a zip of `.npy` arrays), read with allow_pickle=False, so loading
one runs no code, whatever is in it. It holds

- `meta`: UTF-8 JSON as a uint8 array: `format` ("microgpt-creature"), `format_version`, the
  `microgpt` version that wrote it, the `genes` (n_emb, n_ctx, n_layer, n_head, n_ff_exp, steps,
  lr, temperature, cooling: a file from before cooling cools by 1.0), the vocabulary `chars`
  (the token ids are their sorted order, then BOS), the training `seed`, `steps_done`, Adam's
  `beta1`/`beta2`/`eps`/`t`, `rms_eps`, the held-out `val_loss` and the sha256 of the names it
  trained on;
- `weight.<name>`, `adam_m.<name>`, `adam_v.<name>`: float64 arrays of shape (rows, cols), one of
  each per weight matrix of `GPT.state_dict()`.

npz over safetensors: numpy is already a dependency and `.npz` holds the JSON header and the
float64 arrays with nothing new installed; either runs no code on load.

Loading checks everything before building anything: the archive, the meta, the genes (the same
caps as genome.json), that every array is there with the shape the genes imply (read from each
array's header first, so a doctored file cannot make it allocate more), that the weights are
finite. Any failure is one CreatureError naming the file.
"""
import io
import json
import math
import zipfile
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from microgpt import __version__
from microgpt.errors import DataError, MicrogptError
from microgpt.files import read_bytes, size_text, write_atomic
from microgpt.genes import SPACE, is_number, is_whole
from microgpt.genome import GENE_KEYS, GenomeError, check_genes
from microgpt.model import GPT
from microgpt.train import Adam, Tokenizer, TrainingConfig, mean_loss, train_steps

FORMAT = "microgpt-creature"
FORMAT_VERSION = 1
MAX_BYTES = 1 << 30          # the largest model the genes allow is some 40 MiB of arrays
MAX_META = 1 << 20
GENES = (*GENE_KEYS, *(g.name for g in SPACE if g.name not in GENE_KEYS))   # the table's, all
NEWER_GENES = {g.name: g.default() for g in SPACE if g.optional}   # a file without one: its default


class CreatureError(MicrogptError):
    """A creature file that cannot be used; the message names the file and the problem."""


@dataclass
class Creature:
    """A trained model with everything needed to sample from it or train it on."""
    model: GPT
    opt: Adam
    tok: Tokenizer
    genes: dict                 # GENES: the organism it was born as (steps: its first training)
    seed: int                   # the training seed; also the default sampling seed
    steps_done: int             # training steps so far, over every stint (= Adam's t)
    val_loss: Optional[float] = None      # on the held-out names, after the last stint
    final_loss: Optional[float] = None    # the last training step's loss
    data_sha256: Optional[str] = None     # Names.sha256() of the names it trained on last


def from_training(result, cfg, data_sha256):
    """The creature a training run (train_and_generate's result, with cfg) made."""
    genes = {k: getattr(cfg, k) for k in GENES}
    return Creature(result.model, result.opt, result.tok, genes, cfg.seed, cfg.steps,
                    result.val_loss, result.final_loss, data_sha256)


def matches(creature, cfg, data_sha256):
    """Whether training as cfg says on those names would make exactly this creature."""
    return (all(creature.genes[k] == getattr(cfg, k) for k in GENE_KEYS)
            and creature.seed == cfg.seed and creature.steps_done == cfg.steps
            and creature.data_sha256 == data_sha256 and creature.model.rms_eps == cfg.rms_eps)


def creature_path(genome_path):
    """Where the creature beside a genome file lives: genome.json -> genome.npz."""
    genome_path = Path(genome_path)
    if genome_path.suffix == ".npz":
        return genome_path.with_name(genome_path.name + ".npz")
    return genome_path.with_suffix(".npz")


def creature_bytes(creature):
    """The creature as the bytes of a creature file."""
    import numpy as np

    opt = creature.opt
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "microgpt": __version__,
            "genes": {k: creature.genes[k] for k in GENES}, "chars": "".join(creature.tok.chars),
            "seed": creature.seed, "steps_done": creature.steps_done,
            "adam": {"beta1": opt.beta1, "beta2": opt.beta2, "eps": opt.eps, "t": opt.t},
            "rms_eps": creature.model.rms_eps,
            "val_loss": creature.val_loss if _finite(creature.val_loss) else None,
            "final_loss": creature.final_loss if _finite(creature.final_loss) else None,
            "data_sha256": creature.data_sha256}
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)}
    weights = creature.model.weights
    for (name, W), (W2, m, v) in zip(weights.items(), opt.groups):
        assert W is W2, "the optimizer's groups follow the model's weights"
        arrays[f"weight.{name}"] = np.array(W.datas(), np.float64).reshape(W.shape)
        arrays[f"adam_m.{name}"] = np.frombuffer(m, np.float64).reshape(W.shape).copy()
        arrays[f"adam_v.{name}"] = np.frombuffer(v, np.float64).reshape(W.shape).copy()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save_creature(path, creature, flag="--save"):
    """Write the creature to path atomically: (the file written, where the old one was kept or None)."""
    return write_atomic(path, creature_bytes(creature), flag)


def load_creature(path):
    """The Creature in the file at path; CreatureError naming the file and the problem otherwise
    (DataError when it cannot be read at all)."""
    import numpy as np

    data = read_bytes(path, "a creature file", limit=MAX_BYTES)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = {n.removesuffix(".npy") for n in archive.namelist()}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise CreatureError(f"{path}: not a creature file (not an .npz archive; truncated, or "
                         f"something else)") from None
    if "meta" not in members:
        raise CreatureError(f"{path}: not a creature file (an .npz archive without microgpt's meta)")

    def read(name, shape, dtype):
        return _read_array(archive, path, name, shape, dtype)

    meta, genes = _read_meta(path, read)
    adam = meta["adam"]
    tok = Tokenizer(meta["chars"])
    model = GPT(tok.vocab_size, genes["n_ctx"], genes["n_emb"], genes["n_layer"], genes["n_head"],
                genes["n_ff_exp"], rms_eps=meta["rms_eps"], seed=0)
    expected = {f"{kind}.{name}" for kind in ("weight", "adam_m", "adam_v") for name in model.weights}
    missing, unknown = sorted(expected - members), sorted(members - expected - {"meta"})
    _check(not missing, path, f"arrays missing: {', '.join(missing[:3])}"
           f"{' ...' if len(missing) > 3 else ''} (its shapes disagree with its genes)")
    _check(not unknown, path, f"arrays that no {genes['n_layer']}-layer creature has: "
           f"{', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}")
    weights, moments = {}, []
    for name, W in model.weights.items():
        w, m, v = (read(f"{kind}.{name}", W.shape, np.float64) for kind in ("weight", "adam_m", "adam_v"))
        _check(np.isfinite(w).all() and np.isfinite(m).all() and np.isfinite(v).all()
               and (v >= 0).all(), path, f"{name}: its numbers are not finite (or a negative Adam v)")
        weights[name] = w
        moments.append((m, v))
    model.load_state_dict(weights)
    opt = Adam(model.weights.values(), adam["beta1"], adam["beta2"], adam["eps"])
    for (_, m_buf, v_buf), (m, v) in zip(opt.groups, moments):
        m_buf[:] = array("d", m.tobytes())
        v_buf[:] = array("d", v.tobytes())
    opt.t = adam["t"]
    return Creature(model, opt, tok, {k: genes[k] for k in GENES}, meta["seed"],
                    meta["steps_done"], meta.get("val_loss"), meta.get("final_loss"),
                    meta.get("data_sha256"))


def _read_array(archive, path, name, shape, dtype):
    """The array `name` of the archive, its header checked against shape (None: any length of
    one dimension, at most MAX_META) and dtype before it is read."""
    import numpy as np

    try:
        with archive.open(f"{name}.npy") as f:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            got_shape, fortran, got_dtype = header(f)
            if got_dtype != np.dtype(dtype) or fortran or (
                    got_shape != shape if shape is not None else len(got_shape) != 1):
                raise CreatureError(f"{path}: {name} has dtype {got_dtype} and shape {got_shape};"
                                 f" the genes need {np.dtype(dtype)} and {shape or '(n,)'}")
            if shape is None and got_shape[0] > MAX_META:
                raise CreatureError(f"{path}: {name} is too large ({size_text(got_shape[0])})")
        with archive.open(f"{name}.npy") as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except CreatureError:
        raise
    except ValueError as exc:                   # numpy's word for a bad header or array
        raise CreatureError(f"{path}: {name} is damaged ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise CreatureError(f"{path}: {name} is damaged ({exc}); the file is corrupt") from None


def _read_meta(path, read):
    """(the meta dict, its genes with any newer gene's default), every value checked; read: an
    array of the archive by name (`_read_array`)."""
    import numpy as np

    try:
        meta = json.loads(read("meta", None, np.uint8).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CreatureError(f"{path}: not a creature file (its meta is not JSON)") from None
    except RecursionError:
        raise CreatureError(f"{path}: not a creature file (its meta is JSON nested too deeply)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CreatureError(f"{path}: not a creature file (its meta does not say {FORMAT})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CreatureError(f"{path}: a creature file in format {version!r} (written by microgpt "
                         f"{meta.get('microgpt', '?')}); this microgpt {__version__} reads format "
                         f"{FORMAT_VERSION} only")
    genes, adam, chars = meta.get("genes"), meta.get("adam"), meta.get("chars")
    _check(isinstance(genes, dict) and all(k in genes for k in GENES if k not in NEWER_GENES),
           path, f"genes missing (it needs {', '.join(k for k in GENES if k not in NEWER_GENES)})")
    genes = {**NEWER_GENES, **genes}
    try:
        check_genes(genes, f"{path}: genes")
    except GenomeError as exc:
        raise CreatureError(str(exc)) from None
    _check(isinstance(chars, str) and chars and len(set(chars)) == len(chars)
           and chars == "".join(sorted(chars)) and not any(c.isspace() for c in chars), path,
           "chars must be the vocabulary's distinct characters, sorted, without whitespace")
    _check(isinstance(adam, dict) and all(_finite(adam.get(k)) for k in ("beta1", "beta2", "eps"))
           and 0 <= adam["beta1"] < 1 and 0 <= adam["beta2"] < 1 and adam["eps"] > 0, path,
           "adam needs beta1 and beta2 in [0, 1) and eps > 0")
    for key in ("seed", "steps_done"):
        _check(is_whole(meta.get(key)) and 0 <= meta[key] < 2**63, path,
               f"{key} must be a whole number >= 0")
    _check(is_whole(adam.get("t")) and adam["t"] == meta["steps_done"], path,
           "adam.t must equal steps_done")
    _check(_finite(meta.get("rms_eps")) and meta["rms_eps"] > 0, path, "rms_eps must be > 0")
    for key in ("val_loss", "final_loss"):
        _check(meta.get(key) is None or _finite(meta[key]), path, f"{key} must be a number or null")
    sha = meta.get("data_sha256")
    _check(sha is None or isinstance(sha, str), path, "data_sha256 must be a string or null")
    return meta, genes


def continue_training(creature, dataset, steps, lr, progress=None):
    """Train the creature `steps` more steps on dataset's training names: the losses.

    The learning rate restarts at lr and falls linearly to 0 over the new steps (the first stint's
    schedule ended at 0); Adam's moments and step count carry on. The names are drawn as a run's
    are, seeded by the creature's seed and the steps already done, so a continuation does not
    repeat the first stint's names. Then val_loss is measured on dataset's held-out names.
    DataError when the names use characters the creature's vocabulary lacks.
    """
    check_letters(creature, dataset)
    names = dataset.training_order(steps, f"{creature.seed}+{creature.steps_done}")
    losses = train_steps(creature.model, creature.opt, creature.tok, names, lr, progress)
    creature.steps_done += steps
    creature.final_loss, creature.data_sha256 = losses[-1], dataset.names.sha256()
    held_out = dataset.held_out_names(TrainingConfig.val_names)
    creature.val_loss = mean_loss(creature.model, creature.tok, held_out)
    return losses


def check_letters(creature, dataset):
    """DataError when dataset's names use characters the creature's vocabulary lacks."""
    unknown = sorted(set(dataset.tok.chars) - set(creature.tok.chars))
    if unknown:
        raise DataError(f"the names use {len(unknown)} character(s) the creature never learned "
                        f"({', '.join(map(repr, unknown[:5]))}); it can only train on names "
                        f"written with its own")


def _check(ok, path, problem):
    if not ok:
        raise CreatureError(f"{path}: {problem}")


def _finite(x):
    return is_number(x) and math.isfinite(x)
