"""Training and sampling: the tokenizer, Adam, the training loop and name generation.

Follows the seed's `train_and_generate` (Karpathy's microGPT loop: one name per step, Adam with
bias correction, learning rate decaying linearly to zero), with three changes: the names are
shuffled with the run's seed, a fixed tenth of them is held out to measure `val_loss`, and every
random draw comes from a generator seeded from `seed`, so a run is reproducible bit for bit.

Reference: Kingma & Ba 2015 (Adam).
"""
import codecs
import math
import random
import sys
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

from microgpt._core import ValMatrix, Vec, adam_steps, draw_index, powi, total
from microgpt.errors import DataError
from microgpt.files import read_bytes, read_stdin
from microgpt.model import GPT


def bundled_names_path():
    """Path of the makemore names shipped inside the package."""
    return Path(str(resources.files("microgpt") / "input.txt"))


class Names(Sequence):
    """A file's names, one per line, stored compactly: its bytes and where each name lies.

    A names file can hold millions of lines. A Python string per name costs some 60 bytes, so here
    the bytes are kept once, each name is a (start, end) pair of offsets, and a name becomes a
    string only when it is read.
    Whitespace is no part of a name (the tokenizer drops it): ASCII whitespace is removed up front,
    so a line is a name exactly when something is left of it. `chars` is the set of characters the
    names use. DataError when the bytes are not UTF-8.
    """

    def __init__(self, data, where="names"):
        data = bytes(data).removeprefix(BOM).translate(None, ASCII_SPACE)
        self.chars = _characters(data, where)
        self.data = data
        self.starts, self.ends = _line_spans(data)

    @classmethod
    def from_list(cls, names):
        """Names holding the given strings (a line each)."""
        return cls("\n".join(names).encode("utf-8"))

    def __len__(self):
        return len(self.starts)

    def sha256(self):
        """The sha256 (hex) of the names as read (whitespace dropped): it tells datasets apart."""
        import hashlib

        return hashlib.sha256(self.data).hexdigest()

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.data[self.starts[i]:self.ends[i]].decode("utf-8").strip()

    def __iter__(self):
        for lo in range(0, len(self), 1 << 16):       # offsets as Python ints, a block at a time
            hi = lo + (1 << 16)
            for s, e in zip(self.starts[lo:hi].tolist(), self.ends[lo:hi].tolist()):
                yield self.data[s:e].decode("utf-8").strip()


def _line_spans(data):
    """(starts, ends): the offsets of data's non-empty lines, as arrays.

    A small file (the bundled names) is scanned in Python into array("I")s; a big one by numpy a
    block at a time (no temporary array outgrows a block). Importing numpy costs some 16 MiB, more
    than a default run needs for everything else. Both give the same offsets.
    """
    if len(data) < SMALL:
        starts, ends, pos = array("I"), array("I"), 0
        while pos <= len(data):
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end
            if end > pos:                         # an empty line is not a name
                starts.append(pos)
                ends.append(end)
            pos = end + 1
        return starts, ends
    import numpy as np

    buf = np.frombuffer(data, np.uint8)
    offset = np.uint32 if len(buf) < 2**32 else np.int64
    ends = np.concatenate([(np.flatnonzero(buf[i:i + BLOCK] == NEWLINE) + i).astype(offset)
                           for i in range(0, len(buf), BLOCK)] + [np.array([len(buf)], offset)])
    starts = np.zeros_like(ends)
    starts[1:] = ends[:-1] + 1                   # a line starts after the previous newline
    keep = ends > starts
    return starts[keep], ends[keep]


BOM = b"\xef\xbb\xbf"
ASCII_SPACE = b" \t\r\v\f"       # and the newline, which separates names
NEWLINE = ord("\n")
BLOCK = 1 << 24
MAX_NAMES_BYTES = 1 << 30   # 1 GiB of names, some 4 GiB of memory to train on: the same cap for stdin
SMALL = 1 << 22          # bytes of names (or names) below which numpy is not needed


def _characters(data, where):
    """The characters of UTF-8 data, whitespace left out, decoded a block at a time."""
    decoder, found = codecs.getincrementaldecoder("utf-8")(), set()
    for i in range(0, len(data), BLOCK):
        try:
            found.update(decoder.decode(data[i:i + BLOCK], final=i + BLOCK >= len(data)))
        except UnicodeDecodeError as exc:
            raise DataError(f"{where}: not UTF-8 text (near byte {i + exc.start})") from None
    return {c for c in found if not c.isspace()}


def load_names(path=None, progress=False):
    """The dataset as Names: one per line, surrounding whitespace and blank lines dropped.

    path None means the bundled names, "-" standard input. Only a regular file is read (not a
    FIFO or a device; stdin may also be a pipe or a terminal), of at most MAX_NAMES_BYTES.
    Raises DataError (naming the file) when the file cannot be read, is not UTF-8 text, or
    holds no names. progress: a bar on stderr when reading takes over a second.
    """
    if path is not None and str(path) == "-":
        path = "<stdin>"
        names = Names(read_stdin("a file of names", MAX_NAMES_BYTES, progress), path)
    else:
        path = Path(path) if path is not None else bundled_names_path()
        names = Names(read_bytes(path, "a file of names", MAX_NAMES_BYTES, progress), path)
    if not len(names):
        raise DataError(f"{path}: no names in it (the dataset is empty)")
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
    """Adam over fixed parameters, every group updated in one compiled call (`adam_steps`).

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
        adam_steps(self.groups, lr, self.beta1, self.beta2, self.eps, self.t)


@dataclass
class TrainingConfig:
    """Everything a run needs; the fields and defaults are the seed's, plus seed, temperature and
    cooling."""
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
    cooling: float = 1.0                 # each letter samples at the last one's temperature times this
    top_k: Optional[int] = None          # sample among the k likeliest tokens only
    prefix: str = ""                     # every sampled name begins with it
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
    model: Optional[GPT] = field(default=None, repr=False)     # the trained model and its
    tok: Optional[Tokenizer] = field(default=None, repr=False)  # tokenizer, to sample again,
    opt: Optional[Adam] = field(default=None, repr=False)       # and its optimizer, to save it


def split_names(n):
    """(train, held_out): indices into n names, about a tenth held out whatever the run's seed.

    Name i is held out when a hash of i (splitmix64's mix) is 0 modulo 10: a fixed rule of i
    alone, so it needs no shuffle of all n names, and Python (small n) and numpy (big n) compute
    the same split. The held-out names come in the order of their hashes, so the first few are a
    fair sample of the whole file (a names file is often sorted). With fewer than 10 names, or
    none landing in one side, the names serve as both.
    """
    if n < SMALL:
        held = sorted((i for i in range(n) if _mix(i) % 10 == 0), key=_mix) if n >= 10 else []
        if not held or len(held) == n:
            everything = array("I", range(n))
            return everything, everything
        held_set = set(held)
        return array("I", (i for i in range(n) if i not in held_set)), array("I", held)
    import numpy as np

    kind = np.uint32 if n < 2**32 else np.int64
    step = 1 << 20                     # a block's temporaries stay some 8 MiB each
    mask = np.concatenate([_mix_array(np.arange(i, min(i + step, n), dtype=np.uint64)) % 10 == 0
                           for i in range(0, n, step)])
    held = np.flatnonzero(mask)
    held = held[np.argsort(_mix_array(held.astype(np.uint64)), kind="stable")]
    return np.flatnonzero(~mask).astype(kind), held.astype(kind)


M64 = (1 << 64) - 1


def _mix(i):
    """splitmix64's finaliser of i * the golden ratio: 64 well-mixed bits from an index."""
    z = (i * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _mix_array(i):
    """_mix over a numpy uint64 array (its products wrap modulo 2^64, as the masks do above)."""
    import numpy as np

    u = np.uint64
    z = i * u(0x9E3779B97F4A7C15)
    z = (z ^ (z >> u(30))) * u(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> u(27))) * u(0x94D049BB133111EB)
    return z ^ (z >> u(31))


class Dataset:
    """Names made ready to train on: their tokenizer and their fixed train / held-out split.

    Both are the same for every run on the same names, so build it once and hand it to each
    run (Hydra keeps one per worker process). names: Names, or a list of strings.
    """

    def __init__(self, names):
        self.names = names if isinstance(names, Names) else Names.from_list(names)
        self.tok = Tokenizer(self.names.chars)
        self.train, self.held_out = split_names(len(self.names))     # indices into names

    def training_order(self, steps, seed):
        """The names of a run's steps: `steps` training names drawn without replacement (cycled
        when there are fewer), in an order fixed by seed. Costs O(steps), whatever the dataset."""
        n = len(self.train)
        picks = random.Random(f"{seed}:order").sample(range(n), min(steps, n))
        return [self.names[int(self.train[picks[step % len(picks)]])] for step in range(steps)]

    def held_out_names(self, count):
        """The first count held-out names (fewer when there are fewer)."""
        return [self.names[int(i)] for i in self.held_out[:count]]


def mean_loss(model, tok, names):
    """Mean of model.loss over names (plain float), each computed without a graph."""
    dec = model.decoder()
    return total(dec.loss(tok.encode(n)) for n in names) / len(names)


TINY = sys.float_info.min


def draw(rng, logits, temperature, top_k=None):
    """A token id drawn from softmax(logits / temperature), for any positive temperature, among
    the top_k largest logits only when top_k is given. logits: a Vec or a list of floats.

    Worked in log space: the max is subtracted before dividing, so no weight overflows, and as
    the temperature goes to 0 every weight but the largest underflows to 0 (sampling becomes
    argmax) instead of dividing infinities. The draw is random.choices' (`draw_index` does its
    arithmetic in C), so the same seed draws the same names.
    """
    if top_k is not None and top_k < len(logits):    # ties at the cut keep the lower ids
        values = logits.data if isinstance(logits, Vec) else logits
        ids = sorted(sorted(range(len(values)), key=lambda i: -values[i])[:top_k])
        return ids[draw_index([values[i] for i in ids], temperature, rng.random())]
    return draw_index(logits, temperature, rng.random())


def sample(model, tok, rng, temperature=1.0, top_k=None, prefix="", cooling=1.0):
    """One generated name: feed BOS (then the prefix's characters, as given), then draw tokens
    until BOS comes back or n_ctx positions pass. The token at position i (the name's i-th
    letter, from 0) is drawn at temperature * cooling**i: with cooling below 1 a name begins
    boldly and ends calmly.

    A name is never empty: a BOS drawn as the first letter is drawn again from the letters alone
    (one more draw, so the names before it are unchanged), as if the model had been asked for a
    name of at least one letter.

    The logits come from `model.decoder()`, the forward pass without a graph."""
    return _sample_with(model.decoder(), tok, rng, temperature, top_k, prefix, cooling)


def _sample_with(decoder, tok, rng, temperature, top_k, prefix, cooling):
    """sample() through decoder: without top_k, its loop in the core (`Decoder.sample`, the
    same draws as `_sample`'s)."""
    if top_k is None:
        return tok.decode(decoder.sample(_fed(tok, prefix), temperature, cooling, rng.random))
    return _sample(decoder.logits, decoder.n_ctx, tok, rng, temperature, top_k, prefix, cooling)


def _fed(tok, prefix):
    """The tokens a name's sampling is fed before its first draw: BOS, then the prefix's."""
    return [tok.bos] + tok.encode(prefix)[1:-1]


def _sample(logits_at, n_ctx, tok, rng, temperature, top_k, prefix, cooling):
    """sample() with the logits from logits_at(token, pos) (so a test can use the graph's), one
    position at a time in Python."""
    bos = tok.bos
    fed = _fed(tok, prefix)
    token, out, n_fed = fed[0], fed[1:], len(fed)
    for pos in range(n_ctx):
        logits = logits_at(token, pos)
        if pos + 1 < n_fed:                           # still reading the prefix
            token = fed[pos + 1]
            continue
        t = temperature * powi(cooling, pos)             # the same bits on every CPU
        if TINY > t:                                  # max(t, TINY): a temperature cooled below
            t = TINY                                  # the smallest float is argmax all the same
        token = draw_index(logits, t, rng.random()) if top_k is None else draw(rng, logits, t, top_k)
        if token == bos:
            if not out:                               # an empty name: draw a letter instead
                letters = list(logits.data if isinstance(logits, Vec) else logits)
                letters[bos] = -math.inf
                token = draw(rng, letters, t, top_k)
            if token == bos:
                break
        out.append(token)
    return tok.decode(out)


def new_model(cfg, tok):
    """A freshly initialised GPT with cfg's shape for tok's vocabulary (weights drawn from cfg.seed)."""
    return GPT(tok.vocab_size, cfg.n_ctx, cfg.n_emb, cfg.n_layer, cfg.n_head, cfg.n_ff_exp,
               init_scale=cfg.init_scale, rms_eps=cfg.rms_eps, seed=cfg.seed)


def train_steps(model, opt, tok, names, lr, progress=None):
    """Train on names, one per step, the learning rate falling linearly from lr to 0 over them
    (Adam carries on from whatever state opt holds): the steps' losses. progress(step, loss) is
    called after every step."""
    losses = []
    for step, name in enumerate(names):
        loss = model.loss(tok.encode(name))
        loss.backward()
        opt.step(lr * (1.0 - step / len(names)))        # linear decay to zero
        losses.append(loss.data)
        del loss                                       # free this step's graph before the next
        if progress is not None:
            progress(step, losses[-1])
    return losses


def train_and_generate(cfg, progress: Optional[Callable[[int, float], None]] = None,
                       dataset: Optional[Dataset] = None):
    """Train a GPT as cfg says, then sample cfg.gen_samples names: a TrainingResult.

    progress(step, loss) is called after every step. dataset, when given, replaces reading
    cfg.input_file.
    """
    for key in ("temperature", "cooling"):
        value = getattr(cfg, key)
        if value <= 0 or not math.isfinite(value):
            raise ValueError(f"{key} must be a positive number, got {value}")
    start = time.perf_counter()
    data = Dataset(load_names(cfg.input_file)) if dataset is None else dataset
    tok = data.tok
    model = new_model(cfg, tok)
    opt = Adam(model.weights.values(), cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps)
    losses = train_steps(model, opt, tok, data.training_order(cfg.steps, cfg.seed), cfg.lr, progress)

    val_loss = mean_loss(model, tok, data.held_out_names(cfg.val_names))
    generated = generate(model, tok, cfg.gen_samples, cfg.temperature, cfg.seed, cfg.top_k,
                         cfg.prefix, cfg.cooling)
    return TrainingResult(names=generated, final_loss=losses[-1] if losses else float("nan"),
                          losses=losses, val_loss=val_loss, num_params=len(model.parameters()),
                          seconds=time.perf_counter() - start, model=model, tok=tok, opt=opt)


def generate(model, tok, n, temperature, seed, top_k=None, prefix="", cooling=1.0):
    """n names sampled from model at temperature, cooling by letter (among the top_k tokens,
    after the prefix), the draws seeded from seed: the same seed gives the same names, so a
    trained model can be heard again at another temperature."""
    rng = random.Random(f"{seed}:sample")
    decoder = model.decoder()                          # one KV cache, each name from position 0
    return [_sample_with(decoder, tok, rng, temperature, top_k, prefix, cooling) for _ in range(n)]
