"""Training and sampling: the tokenizer, Adam, the training loop and name generation.

Follows the seed's `train_and_generate` (Karpathy's microGPT loop: one name per step, Adam with
bias correction, learning rate decaying linearly to zero), with three changes: the names are
shuffled with the run's seed, a fixed tenth of them is held out to measure `val_loss`, and every
random draw comes from a generator seeded from `seed`, so a run is reproducible bit for bit.

Reference: Kingma & Ba 2015 (Adam).
"""
import math
import random
import time
from array import array
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

from microgpt._core import ValMatrix, adam_step
from microgpt.model import GPT

HOLDOUT_FRACTION = 0.1   # of the names, held out for val_loss
SPLIT_SEED = 0           # the held-out slice is fixed, whatever the run's seed


def bundled_names_path():
    """Path of the makemore names shipped inside the package."""
    return Path(str(resources.files("microgpt") / "input.txt"))


def read_text(path, what):
    """The UTF-8 text of the file at path; ValueError naming the file when it cannot be read.

    what says what the file should be, for the message when path is a directory.
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not {what}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None


def load_names(path=None):
    """The dataset as a list of names: one per line, surrounding whitespace and blank lines dropped.

    path None means the bundled names. Raises ValueError (naming the file) when the file cannot
    be read, is not UTF-8 text, or holds no names.
    """
    path = Path(path) if path is not None else bundled_names_path()
    names = [line.strip() for line in read_text(path, "a file of names").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"{path}: no names in it (the dataset is empty)")
    return names


class Tokenizer:
    """Characters to token ids: the dataset's sorted characters, then one BOS token that both
    starts and ends a name (id = number of characters)."""

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.bos = len(self.chars)
        self.vocab_size = len(self.chars) + 1
        self._index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_names(cls, names):
        """The tokenizer of a dataset: its unique non-whitespace characters."""
        return cls(c for name in names for c in name if not c.isspace())

    def encode(self, name):
        """[BOS, ids of the name's characters..., BOS]; whitespace inside a name is dropped."""
        try:
            return [self.bos] + [self._index[c] for c in name if not c.isspace()] + [self.bos]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids):
        """The characters of ids, BOS tokens left out."""
        return "".join(self.chars[i] for i in ids if i != self.bos)


class Adam:
    """Adam over fixed parameters, each group updated in one compiled call (`adam_step`).

    params: Vals, or ValMatrix objects (a model's weights), whose contiguous arrays are the
    fastest to update.
    """

    def __init__(self, params, beta1=0.85, beta2=0.99, eps=1e-8):
        params = list(params)
        groups = [p for p in params if isinstance(p, ValMatrix)]
        loose = [p for p in params if not isinstance(p, ValMatrix)]
        if loose:
            groups.append(ValMatrix([loose]))
        # per group: (params, first moments, second moments), float64 zeros
        self.groups = [(W, array("d", bytes(8 * W.rows * W.cols)),
                        array("d", bytes(8 * W.rows * W.cols))) for W in groups]
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.t = 0

    def step(self, lr):
        """Apply one update with learning rate lr and zero every gradient."""
        self.t += 1
        for W, m, v in self.groups:
            adam_step(W, m, v, lr, self.beta1, self.beta2, self.eps, self.t)


@dataclass
class TrainingConfig:
    """Everything a run needs; the fields and defaults are the seed's, plus seed and temperature."""
    n_emb: int = 16
    n_ctx: int = 16
    n_layer: int = 1
    n_head: int = 4
    n_ff_exp: int = 4
    steps: int = 200
    lr: float = 0.005
    adam_beta1: float = 0.85
    adam_beta2: float = 0.99
    adam_eps: float = 1e-8
    gen_samples: int = 5
    rms_eps: float = 1e-5
    init_scale: float = 0.1
    input_file: Optional[str] = None     # None: the bundled makemore names
    seed: int = 42
    temperature: float = 1.0
    val_names: int = 100                 # held-out names averaged into val_loss


@dataclass
class TrainingResult:
    """What a run produced: sampled names, every step's loss, the held-out loss, the size."""
    names: list[str]
    final_loss: float                    # the last step's training loss (one name, as in the seed)
    losses: list[float] = field(repr=False)
    val_loss: float
    num_params: int
    seconds: float


def split_names(names):
    """(train, held_out): a fixed ~10% of the names held out, the same for every run seed."""
    order = list(names)
    random.Random(SPLIT_SEED).shuffle(order)
    n_held = int(len(order) * HOLDOUT_FRACTION) if len(order) >= 10 else 0
    if n_held == 0:                       # too few names to spare any: validate on the training set
        return order, list(order)
    return order[n_held:], order[:n_held]


class Dataset:
    """Names made ready to train on: their tokenizer and their fixed train / held-out split.

    Both are the same for every run on the same names, so build it once and hand it to each
    run (Hydra keeps one per worker process).
    """

    def __init__(self, names):
        self.names = list(names)
        self.tok = Tokenizer.from_names(self.names)
        self.train, self.held_out = split_names(self.names)


def mean_loss(model, tok, names):
    """Mean of model.loss over names (plain float); the graph of each is dropped as it goes."""
    return sum(model.loss(tok.encode(n)).data for n in names) / len(names)


def sample(model, tok, rng, temperature=1.0):
    """One generated name: from BOS, draw tokens until BOS comes back or n_ctx positions pass."""
    cache = model.new_cache()
    token, out = tok.bos, []
    for pos in range(model.n_ctx):
        logits = [v.data / temperature for v in model.forward(token, pos, cache)]
        top = max(logits)                 # subtract the max so exp cannot overflow
        weights = [math.exp(z - top) for z in logits]
        token = rng.choices(range(len(weights)), weights=weights)[0]
        if token == tok.bos:
            break
        out.append(token)
    return tok.decode(out)


def train_and_generate(cfg, progress: Optional[Callable[[int, float], None]] = None,
                       dataset: Optional[Dataset] = None):
    """Train a GPT as cfg says, then sample cfg.gen_samples names: a TrainingResult.

    progress(step, loss) is called after every step. dataset, when given, replaces reading
    cfg.input_file.
    """
    if cfg.temperature <= 0 or not math.isfinite(cfg.temperature):
        raise ValueError(f"temperature must be a positive number, got {cfg.temperature}")
    start = time.perf_counter()
    data = Dataset(load_names(cfg.input_file)) if dataset is None else dataset
    tok, train = data.tok, list(data.train)
    random.Random(f"{cfg.seed}:order").shuffle(train)

    model = GPT(tok.vocab_size, cfg.n_ctx, cfg.n_emb, cfg.n_layer, cfg.n_head, cfg.n_ff_exp,
                init_scale=cfg.init_scale, rms_eps=cfg.rms_eps, seed=cfg.seed)
    opt = Adam(model.weights.values(), cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps)
    losses = []
    for step in range(cfg.steps):
        loss = model.loss(tok.encode(train[step % len(train)]))
        loss.backward()
        opt.step(cfg.lr * (1.0 - step / cfg.steps))   # linear decay to zero
        losses.append(loss.data)
        del loss                                       # free this step's graph before the next
        if progress is not None:
            progress(step, losses[-1])

    val_loss = mean_loss(model, tok, data.held_out[:cfg.val_names])
    rng = random.Random(f"{cfg.seed}:sample")
    generated = [sample(model, tok, rng, cfg.temperature) for _ in range(cfg.gen_samples)]
    return TrainingResult(names=generated, final_loss=losses[-1] if losses else float("nan"),
                          losses=losses, val_loss=val_loss, num_params=len(model.parameters()),
                          seconds=time.perf_counter() - start)
