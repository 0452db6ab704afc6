"""The work one Hydra evaluation does, wherever it runs: train an organism and sample its names.

Module-level and plain: a genome dict and a seed in, names and losses out, so a process pool (or a
Dask worker) can run it by name. Nothing here knows of the engine, files it writes or terminals.
"""
import functools
import hashlib
import os
import socket
import time

from microgpt.errors import DataError
from microgpt.files import read_bytes
from microgpt.genes import trained_genes
from microgpt.train import Dataset, Names, TrainingConfig, generate, load_names, train_and_generate


@functools.lru_cache(maxsize=4)
def _dataset(path):
    """The names at path (None: the bundled ones), read and prepared once per worker process."""
    return Dataset(load_names(path))


@functools.lru_cache(maxsize=1)
def _sent_dataset(names):
    """The names sent with the work, (sha256, bytes), prepared once per worker process."""
    sha, data = names
    return Dataset(Names(data, f"names {sha[:12]}"))


def names_to_send(path, sha):
    """(sha, bytes) of the names file at path, for workers that do not have it, None for the
    bundled names, which every worker has; DataError if the file no longer has that sha256."""
    if path is None:
        return None
    data = read_bytes(path, "a file of names")
    if hashlib.sha256(data).hexdigest() != sha:
        raise DataError(f"{path}: the names changed since the run began")
    return sha, data


def voice(v, cooling):
    """(temperature, cooling) of a voice: a temperature at cooling, or a (temperature, cooling)."""
    return tuple(v) if isinstance(v, (tuple, list)) else (v, cooling)


def evaluate_genome(genome, samples, seed, data=None, temperatures=(), names=None):
    """Train one organism and sample its names: {names, val_loss, final_loss, num_params, seconds,
    started and ended (seconds since the epoch), worker (host:pid)}, and with temperatures,
    names_at: the same model's names at each of them, in order (a temperature at the genome's
    cooling, or a (temperature, cooling) pair).

    genome holds the seven genes, the temperature and the cooling; data is a path to the names
    (None: the bundled ones), or names the file's (sha256, bytes) from `names_to_send`. It trains
    exactly as `microgpt` does with that genome and --seed seed, and the names at a temperature
    are those `microgpt -t` prints (with the genome's cooling).
    """
    started = time.time()
    own = genome["temperature"] in temperatures         # then its names are sampled only once
    cfg = TrainingConfig(**trained_genes(genome), gen_samples=0 if own else samples,
                         seed=seed, input_file=data)
    dataset = _sent_dataset(names) if names is not None else _dataset(data)
    result = train_and_generate(cfg, dataset=dataset)
    out = {"names": list(result.names), "val_loss": float(result.val_loss),
           "final_loss": float(result.final_loss), "num_params": int(result.num_params),
           "seconds": float(result.seconds), "started": started,
           "worker": f"{socket.gethostname()}:{os.getpid()}"}
    if temperatures:           # each a temperature at the genome's cooling, or (temperature, cooling)
        out["names_at"] = []
        for v in temperatures:
            t, c = voice(v, cfg.cooling)
            out["names_at"].append(generate(result.model, result.tok, samples, t, seed, cooling=c))
    if own:
        out["names"] = list(out["names_at"][temperatures.index(genome["temperature"])])
    out["ended"] = time.time()
    return out
