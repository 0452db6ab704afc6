"""A second opinion for the compiled core: `RefVal`, a tiny pure-Python autograd scalar, and a GPT
loss built only from its elementary ops.

`RefVal` follows the idea of micrograd's `Value` (re-derived here, not copied): every node keeps
its parents together with the local derivative d node / d parent, and `backward` walks the graph
in reverse topological order applying the chain rule. Nothing here is fused and nothing is fast:
softmax, RMSNorm and the attention are spelled out with + - * / ** exp log, so a bug in a fused op
of `microgpt._core` cannot hide in both implementations.
"""
import math

import numpy as np


class RefVal:
    """A scalar with a gradient and the (parent, d self / d parent) pairs that made it."""

    __slots__ = ("data", "grad", "parents")

    def __init__(self, data, parents=()):
        self.data = float(data)
        self.grad = 0.0
        self.parents = parents

    def __repr__(self):
        return f"RefVal(data={self.data!r}, grad={self.grad!r})"

    # Elementary ops; the tuple after each result holds (operand, d result / d operand).

    def __add__(self, other):
        other = _lift(other)
        if other is NotImplemented:
            return other
        return RefVal(self.data + other.data, ((self, 1.0), (other, 1.0)))

    def __radd__(self, other):
        return _lift(other) + self if _is_number(other) else NotImplemented

    def __sub__(self, other):
        other = _lift(other)
        if other is NotImplemented:
            return other
        return RefVal(self.data - other.data, ((self, 1.0), (other, -1.0)))

    def __rsub__(self, other):
        return _lift(other) - self if _is_number(other) else NotImplemented

    def __mul__(self, other):
        other = _lift(other)
        if other is NotImplemented:
            return other
        return RefVal(self.data * other.data, ((self, other.data), (other, self.data)))

    def __rmul__(self, other):
        return _lift(other) * self if _is_number(other) else NotImplemented

    def __truediv__(self, other):     # a / b: 1/b and -a/b^2
        other = _lift(other)
        if other is NotImplemented:
            return other
        b = other.data
        return RefVal(self.data / b, ((self, 1.0 / b), (other, -self.data / (b * b))))

    def __rtruediv__(self, other):
        return _lift(other) / self if _is_number(other) else NotImplemented

    def __neg__(self):
        return RefVal(-self.data, ((self, -1.0),))

    def __pow__(self, p):             # a^p for a number p: p a^(p-1)
        if not _is_number(p):
            return NotImplemented
        return RefVal(self.data ** p, ((self, p * self.data ** (p - 1)),))

    def __rpow__(self, c):            # c^a for a number c: c^a ln c
        if not _is_number(c):
            return NotImplemented
        out = c ** self.data
        return RefVal(out, ((self, out * math.log(c)),))

    def exp(self):                    # e^a
        e = math.exp(self.data)
        return RefVal(e, ((self, e),))

    def log(self):                    # 1/a
        return RefVal(math.log(self.data), ((self, 1.0 / self.data),))

    def relu(self):                   # 1 where a > 0, else 0
        positive = self.data > 0.0
        return RefVal(self.data if positive else 0.0, ((self, 1.0 if positive else 0.0),))

    def backward(self):
        """Set self.grad to 1 and add d self / d node into the grad of every node below it."""
        # Depth-first post-order with an explicit stack: each node lands after all its parents.
        order, visited, stack = [], set(), [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
            elif id(node) not in visited:
                visited.add(id(node))
                stack.append((node, True))
                stack.extend((p, False) for p, _ in node.parents if id(p) not in visited)
        self.grad = 1.0
        for node in reversed(order):  # children before parents: chain rule
            for parent, local in node.parents:
                parent.grad += local * node.grad


def _is_number(x):
    return isinstance(x, (int, float))


def _lift(x):
    """x as a RefVal (numbers become constants), or NotImplemented for anything else."""
    if isinstance(x, RefVal):
        return x
    return RefVal(x) if _is_number(x) else NotImplemented


# The GPT of microgpt.model, re-derived from its spec with RefVal elementary ops only.

def _matvec(W, x):
    """W·x for W a list of rows (one per output) and x a list: len(W) RefVals."""
    return [sum(w * xj for w, xj in zip(row, x)) for row in W]


def _rmsnorm(x, eps):
    """x * (mean(x^2) + eps)^-1/2, no learned scale."""
    mean_square = sum(xi * xi for xi in x) / len(x)
    s = (mean_square + eps) ** -0.5
    return [xi * s for xi in x]


def _softmax(logits):
    """exp(x_i - m) / sum_j exp(x_j - m); m is a plain float (the shift cancels in value and grad)."""
    m = max(x.data for x in logits)
    exps = [(x - m).exp() for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def ref_gpt_loss(state, tokens, n_layer, n_head, rms_eps=1e-5):
    """(loss, {name: float64 gradient array}) of microgpt's GPT, computed with RefVal.

    `state` maps the GPT's weight names (wte, wpe, lm_head, layers.{i}.wq/wk/wv/wo/fc1/fc2) to
    arrays with one row per output unit; the sizes are read off the shapes. The loss is the mean,
    over positions p of tokens[:n_ctx] but the last, of -log softmax(logits_p)[tokens[p + 1]].
    """
    W = {name: [[RefVal(x) for x in row] for row in np.asarray(a, dtype=np.float64).tolist()]
         for name, a in state.items()}
    n_ctx, n_emb = np.shape(state["wpe"])
    head_dim = n_emb // n_head
    tokens = list(tokens)[:n_ctx]
    if len(tokens) < 2:
        raise ValueError("ref_gpt_loss needs at least two tokens")

    keys = [[] for _ in range(n_layer)]      # per layer: one n_emb key per position seen
    values = [[] for _ in range(n_layer)]
    losses = []
    for pos in range(len(tokens) - 1):
        x = [e + p for e, p in zip(W["wte"][tokens[pos]], W["wpe"][pos])]        # n_emb
        for i in range(n_layer):
            prefix = f"layers.{i}."
            xn = _rmsnorm(x, rms_eps)
            q = _matvec(W[prefix + "wq"], xn)
            keys[i].append(_matvec(W[prefix + "wk"], xn))
            values[i].append(_matvec(W[prefix + "wv"], xn))
            attended = []                                                     # n_emb
            for h in range(n_head):
                lo, hi = h * head_dim, (h + 1) * head_dim
                scores = [sum(a * b for a, b in zip(q[lo:hi], k[lo:hi])) / math.sqrt(head_dim)
                          for k in keys[i]]                                   # pos + 1
                weights = _softmax(scores)
                attended += [sum(w * v[j] for w, v in zip(weights, values[i])) for j in range(lo, hi)]
            x = [a + b for a, b in zip(x, _matvec(W[prefix + "wo"], attended))]
            hidden = [z.relu() for z in _matvec(W[prefix + "fc1"], _rmsnorm(x, rms_eps))]
            x = [a + b for a, b in zip(x, _matvec(W[prefix + "fc2"], hidden))]
        logits = _matvec(W["lm_head"], _rmsnorm(x, rms_eps))                 # vocab_size
        losses.append(-_softmax(logits)[tokens[pos + 1]].log())
    loss = sum(losses) / len(losses)
    loss.backward()
    grads = {name: np.array([[v.grad for v in row] for row in rows], dtype=np.float64).reshape(
        np.shape(state[name])) for name, rows in W.items()}
    return loss.data, grads
