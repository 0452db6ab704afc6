"""The GPT: embeddings, causal attention with a KV cache, RMSNorm, MLP, and its loss.

Follows the seed's architecture (itself Karpathy's microGPT, a GPT-2 with RMSNorm and ReLU and no
biases), one token at a time so the KV cache is explicit. Every weight is a `Val` in a
`ValMatrix` with one row per output unit, so a layer is `linear(x, W) = W·x`. The activations are
`Vec`s: each op of the forward pass is one node holding a whole vector, whose gradient flows back
into the weights' Vals; the loss is a `Val`. The loss that training differentiates runs each
layer half over all of a name's positions as one node (`loss`), with the numbers of the
one-position `forward`, to the bit. Where no gradient is wanted (sampling, a held-out loss),
`decoder()` runs the same forward pass in the core without building a graph, to the same logits
bit for bit.

References: Vaswani et al. 2017 (attention), Zhang & Sennrich 2019 (RMSNorm),
Radford et al. 2019 (GPT-2), Karpathy, "microGPT" (2026).
"""
import random

from microgpt._core import (
    Decoder,
    Val,
    ValMatrix,
    attention_block,
    attention_seq,
    cross_entropy,
    embed_seq,
    linear,
    loss_seq,
    mlp_block,
    mlp_seq,
    rmsnorm,
    vadd,
    vsum,
)

LAYER_WEIGHTS = ("wq", "wk", "wv", "wo", "fc1", "fc2")


class GPT:
    """A decoder-only transformer whose every weight is a `Val`."""

    def __init__(self, vocab_size, n_ctx, n_emb, n_layer, n_head, n_ff_exp, *,
                 init_scale=0.1, rms_eps=1e-5, seed=None):
        for name, value in (("vocab_size", vocab_size), ("n_ctx", n_ctx), ("n_emb", n_emb),
                            ("n_layer", n_layer), ("n_head", n_head), ("n_ff_exp", n_ff_exp)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GPT: {name} must be a whole number >= 1, got {value!r}")
        if n_emb % n_head:
            raise ValueError(f"GPT: n_emb ({n_emb}) must be divisible by n_head ({n_head})")
        self.vocab_size, self.n_ctx, self.n_emb = vocab_size, n_ctx, n_emb
        self.n_layer, self.n_head, self.n_ff_exp = n_layer, n_head, n_ff_exp
        self.head_dim = n_emb // n_head
        self.rms_eps = rms_eps

        rng = random.Random(seed)

        def matrix(rows, cols):  # uniform(-1, 1) * init_scale, drawn row by row
            return ValMatrix([[Val(rng.uniform(-1.0, 1.0) * init_scale) for _ in range(cols)]
                              for _ in range(rows)])

        n_ff = n_ff_exp * n_emb
        self.weights = {"wte": matrix(vocab_size, n_emb), "wpe": matrix(n_ctx, n_emb),
                        "lm_head": matrix(vocab_size, n_emb)}
        for i in range(n_layer):
            for w in ("wq", "wk", "wv", "wo"):
                self.weights[f"layers.{i}.{w}"] = matrix(n_emb, n_emb)
            self.weights[f"layers.{i}.fc1"] = matrix(n_ff, n_emb)
            self.weights[f"layers.{i}.fc2"] = matrix(n_emb, n_ff)
        # per layer (wq, wk, wv, wo, fc1, fc2): the same matrices, for the forward pass
        self.layers = [tuple(self.weights[f"layers.{i}.{w}"] for w in LAYER_WEIGHTS)
                       for i in range(n_layer)]

    # Parameters and their float64 copies.

    def parameters(self):
        """Every weight as a list of Vals, matrix by matrix in state_dict order, row-major."""
        return [v for W in self.weights.values() for v in W.values()]

    # numpy is imported only here: training never loads it (nor its BLAS threads).

    def state_dict(self):
        """{name: float64 array of shape (rows, cols)}: a copy of every weight."""
        import numpy as np

        return {name: np.array(W.datas(), dtype=np.float64).reshape(W.shape)
                for name, W in self.weights.items()}

    def grad_dict(self):
        """{name: float64 array of shape (rows, cols)}: a copy of every weight's gradient."""
        import numpy as np

        return {name: np.array(W.grads(), dtype=np.float64).reshape(W.shape)
                for name, W in self.weights.items()}

    def load_state_dict(self, state):
        """Copy weights in from {name: array}; ValueError on a missing, unknown or misshapen key."""
        import numpy as np

        missing = [k for k in self.weights if k not in state]
        unknown = [k for k in state if k not in self.weights]
        if missing or unknown:
            raise ValueError(f"load_state_dict: missing keys {missing}, unknown keys {unknown}")
        arrays = {}
        for name, W in self.weights.items():
            a = np.asarray(state[name], dtype=np.float64)
            if a.shape != W.shape:
                raise ValueError(f"load_state_dict: {name} has shape {a.shape}, expected {W.shape}")
            arrays[name] = a
        for name, W in self.weights.items():  # only after every key checked: no half-loaded model
            W.set_datas(arrays[name].ravel().tolist())

    # The forward pass, one token at a time.

    def new_cache(self):
        """An empty KV cache: per layer, the keys and the values of the positions so far (a Vec
        of n_emb each; the heads take their slices of them)."""
        return [([], []) for _ in range(self.n_layer)]

    def forward(self, token, pos, cache):
        """The vocab_size logits (a Vec) after `token` at position `pos`; appends to `cache`.

        Every step below is one node holding a whole vector (a `Vec`); each half of a layer is one
        node too (`attention_block`, `mlp_block`), whose backward sits beside its forward in the
        compiled core and gives the same numbers as the layer built from `rmsnorm`, `linear`,
        `attention` and `vadd` one op at a time.
        """
        W = self.weights
        x = vadd(W["wte"].row(token), W["wpe"].row(pos))                # n_emb
        for (wq, wk, wv, wo, fc1, fc2), (keys, values) in zip(self.layers, cache):
            # Attention block: with xn = rmsnorm(x), keys += [wk · xn], values += [wv · xn],
            # x = x + wo · attention(wq · xn, keys, values)   (n_head slices of head_dim)
            x = attention_block(x, wq, wk, wv, wo, keys, values, self.n_head, self.rms_eps)
            # MLP block: x = x + fc2 · relu(fc1 · rmsnorm(x))   (hidden: n_ff_exp * n_emb)
            x = mlp_block(x, fc1, fc2, self.rms_eps)
        return linear(rmsnorm(x, self.rms_eps), W["lm_head"])           # vocab_size

    def loss(self, tokens):
        """Mean next-token cross-entropy (a Val) over tokens[:n_ctx]: position p predicts p+1.

        A name's positions at once: the embeddings, each half of each layer and the loss are one
        node each (a Vec of positions x n_emb), each the one-position op at every position. Their
        forward and backward give `loss_by_position`'s numbers to the bit, with a few nodes per
        name instead of a few per position (and as many calls from Python).
        """
        tokens = list(tokens)[:self.n_ctx]
        if len(tokens) < 2:
            raise ValueError("GPT.loss needs at least two tokens")
        W = self.weights
        x = embed_seq(W["wte"], W["wpe"], tokens[:-1])                  # positions x n_emb
        for wq, wk, wv, wo, fc1, fc2 in self.layers:
            x = attention_seq(x, wq, wk, wv, wo, self.n_head, self.rms_eps)
            x = mlp_seq(x, fc1, fc2, self.rms_eps)
        return loss_seq(x, W["lm_head"], tokens[1:], self.rms_eps)

    def loss_by_position(self, tokens):
        """`loss` built one position at a time from `forward`: the graph `loss` fuses."""
        tokens = list(tokens)[:self.n_ctx]
        if len(tokens) < 2:
            raise ValueError("GPT.loss needs at least two tokens")
        cache = self.new_cache()
        losses = [cross_entropy(self.forward(tokens[p], p, cache), tokens[p + 1])
                  for p in range(len(tokens) - 1)]
        return vsum(losses, 1.0 / len(losses))

    # The same forward pass without a graph.

    def decoder(self):
        """A `Decoder` over this model's weights: `logits(token, pos)` and `loss(tokens)` as
        `forward` and `loss` compute them, bit for bit, with no nodes and its own KV cache."""
        W = self.weights
        return Decoder(W["wte"], W["wpe"], self.layers, W["lm_head"], self.n_head, self.rms_eps)
