"""microgpt's GPT written again in PyTorch: a speed yardstick and an independent correctness check.

The architecture is microgpt/model.py's, re-derived from its spec rather than from its code:

    x = wte[tok] + wpe[pos]                                  # (T, n_emb), no norm on the sum
    per layer:  x = x + wo · attn(wq, wk, wv on rmsnorm(x))  # causal, n_head heads of n_emb/n_head
                x = x + fc2 · relu(fc1 · rmsnorm(x))         # fc1: (n_ff_exp n_emb, n_emb)
    logits = lm_head · rmsnorm(x)                            # (T, vocab)
    loss = mean_p -log softmax(logits_p)[tok_{p+1}]          # tokens cut to the first n_ctx

rmsnorm(x) = x (mean(x^2) + eps)^-1/2 with no learned scale. Weights keep microgpt's names and
shapes (one row per output unit, y = W @ x), so `state_dict()` moves across unchanged. Where the
scalar engine runs one token at a time with a KV cache, this runs the whole name as one forward
with a causal mask; the numbers agree to rounding.

    python benchmarks/torch_gpt.py --check     # microgpt's loss and gradients against PyTorch's

torch is never a dependency of microgpt: only this file and benchmarks/bench.py import it.
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """One transformer layer: pre-norm causal self-attention, then a pre-norm ReLU MLP."""

    def __init__(self, n_emb: int, n_head: int, n_ff_exp: int):
        super().__init__()
        self.n_head = n_head
        self.wq = nn.Parameter(torch.empty(n_emb, n_emb, dtype=torch.float64))
        self.wk = nn.Parameter(torch.empty(n_emb, n_emb, dtype=torch.float64))
        self.wv = nn.Parameter(torch.empty(n_emb, n_emb, dtype=torch.float64))
        self.wo = nn.Parameter(torch.empty(n_emb, n_emb, dtype=torch.float64))
        self.fc1 = nn.Parameter(torch.empty(n_ff_exp * n_emb, n_emb, dtype=torch.float64))
        self.fc2 = nn.Parameter(torch.empty(n_emb, n_ff_exp * n_emb, dtype=torch.float64))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, eps: float) -> torch.Tensor:
        T, C = x.shape
        hd = C // self.n_head
        xn = rmsnorm(x, eps)
        # (T, C) -> (n_head, T, hd): head h owns columns [h*hd, (h+1)*hd)
        q = (xn @ self.wq.T).view(T, self.n_head, hd).transpose(0, 1)
        k = (xn @ self.wk.T).view(T, self.n_head, hd).transpose(0, 1)
        v = (xn @ self.wv.T).view(T, self.n_head, hd).transpose(0, 1)
        att = (q @ k.transpose(1, 2)) / math.sqrt(hd)          # (n_head, T, T)
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        heads = (att @ v).transpose(0, 1).reshape(T, C)          # concat heads: (T, C)
        x = x + heads @ self.wo.T
        return x + F.relu(rmsnorm(x, eps) @ self.fc1.T) @ self.fc2.T


def rmsnorm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x scaled by (mean(x^2) + eps)^-1/2 along the last axis; no learned gain."""
    return x * (x.pow(2).mean(dim=-1, keepdim=True) + eps).rsqrt()


class TorchGPT(nn.Module):
    """microgpt.GPT in float64 PyTorch, with the same parameter names, shapes and loss."""

    def __init__(self, vocab_size: int, n_ctx: int, n_emb: int, n_layer: int, n_head: int,
                 n_ff_exp: int, *, init_scale: float = 0.1, rms_eps: float = 1e-5, seed: int = 0):
        super().__init__()
        if n_emb % n_head:
            raise ValueError(f"n_emb {n_emb} is not a multiple of n_head {n_head}")
        self.n_ctx, self.rms_eps = n_ctx, rms_eps
        self.wte = nn.Parameter(torch.empty(vocab_size, n_emb, dtype=torch.float64))
        self.wpe = nn.Parameter(torch.empty(n_ctx, n_emb, dtype=torch.float64))
        self.lm_head = nn.Parameter(torch.empty(vocab_size, n_emb, dtype=torch.float64))
        self.layers = nn.ModuleList(Block(n_emb, n_head, n_ff_exp) for _ in range(n_layer))
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.normal_(0.0, init_scale, generator=gen)
        # mask[t, s] is True where position t must not see s (s > t)
        self.register_buffer("mask", torch.ones(n_ctx, n_ctx, dtype=torch.bool).triu(1), persistent=False)

    def loss(self, tokens: list[int] | torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over tokens[:n_ctx], a 0-d float64 tensor."""
        idx = torch.as_tensor(tokens[: self.n_ctx], dtype=torch.long)
        inp, tgt = idx[:-1], idx[1:]                  # position p predicts token p + 1
        T = inp.numel()
        x = self.wte[inp] + self.wpe[:T]              # (T, n_emb)
        mask = self.mask[:T, :T]
        for block in self.layers:
            x = block(x, mask, self.rms_eps)
        logits = rmsnorm(x, self.rms_eps) @ self.lm_head.T   # (T, vocab)
        return F.cross_entropy(logits, tgt)

    def load_numpy(self, sd: dict[str, np.ndarray]) -> None:
        """Copy in a microgpt `state_dict()` (float64 numpy arrays under the same names)."""
        self.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in sd.items()})

    def grad_numpy(self) -> dict[str, np.ndarray]:
        """The gradients as float64 numpy arrays, keyed like microgpt's `grad_dict()`."""
        return {k: p.grad.detach().numpy().copy() for k, p in self.named_parameters()}


def make_adam(model: TorchGPT, lr: float = 1e-2) -> torch.optim.Adam:
    """torch's Adam with microgpt's betas and eps: p -= lr m_hat / (sqrt(v_hat) + eps), as microgpt's.

    fused=True is the same update in one kernel per step, torch's fastest on CPU for tiny tensors.
    """
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.85, 0.99), eps=1e-8, fused=True)


# --- the check: microgpt against PyTorch ---------------------------------------------------------

CHECK_CONFIGS = {
    # name: (n_ctx, n_emb, n_layer, n_head, n_ff_exp); vocab comes from the bundled names
    "default": (16, 16, 1, 4, 4),
    "seed-genome": (5, 6, 3, 2, 4),
    "emb32-l2": (16, 32, 2, 4, 4),
    "emb40-l4": (16, 40, 4, 4, 4),
    "one-head": (8, 8, 2, 1, 2),
}
LOSS_RTOL = 1e-10
GRAD_RTOL = 1e-7
ADAM_STEPS = 3


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over the tensor, relative to max |b| (0 when both are all zeros)."""
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    diff = float(np.max(np.abs(a - b))) if b.size else 0.0
    return diff / scale if scale > 0 else diff


def check_config(name: str, shape: tuple[int, ...], names: list[str], seed: int) -> tuple[bool, str]:
    """Compare loss, every gradient and a few Adam steps on one config; (passed, one-line summary)."""
    from microgpt.model import GPT
    from microgpt.train import Adam, Tokenizer

    n_ctx, n_emb, n_layer, n_head, n_ff_exp = shape
    tok = Tokenizer.from_names(names)
    model = GPT(tok.vocab_size, n_ctx, n_emb, n_layer, n_head, n_ff_exp, seed=seed)
    ref = TorchGPT(tok.vocab_size, n_ctx, n_emb, n_layer, n_head, n_ff_exp)
    ref.load_numpy(model.state_dict())
    params = model.parameters()

    # a short name, a typical one, and the longest (cut to n_ctx), so truncation is exercised
    rng = np.random.default_rng(seed)
    picks = [min(names, key=len), names[int(rng.integers(len(names)))], max(names, key=len)]
    worst_loss = worst_grad = 0.0
    worst_key = ""
    for word in picks:
        tokens = tok.encode(word)
        for p in params:
            p.grad = 0.0
        loss = model.loss(tokens)
        loss.backward()
        ref.zero_grad(set_to_none=False)
        ref_loss = ref.loss(tokens)
        ref_loss.backward()
        worst_loss = max(worst_loss, abs(loss.data - ref_loss.item()) / abs(ref_loss.item()))
        mine, theirs = model.grad_dict(), ref.grad_numpy()
        if mine.keys() != theirs.keys():
            return False, f"{name}: key mismatch {sorted(mine.keys() ^ theirs.keys())}"
        for key, g in theirs.items():
            if mine[key].shape != g.shape:
                return False, f"{name}: {key} shape {mine[key].shape} != {g.shape}"
            err = _rel_err(mine[key], g)
            if err > worst_grad:
                worst_grad, worst_key = err, key

    # a few Adam steps from identical weights and gradients must leave identical weights
    for p in params:
        p.grad = 0.0
    opt, ref_opt = Adam(params, beta1=0.85, beta2=0.99, eps=1e-8), make_adam(ref)
    worst_adam = 0.0
    for step in range(ADAM_STEPS):
        tokens = tok.encode(picks[step % len(picks)])
        lr = 1e-2 * (1 - step / ADAM_STEPS)
        model.loss(tokens).backward()
        opt.step(lr)
        ref_opt.zero_grad()
        ref.loss(tokens).backward()
        for group in ref_opt.param_groups:
            group["lr"] = lr
        ref_opt.step()
    theirs = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    for key, w in model.state_dict().items():
        worst_adam = max(worst_adam, _rel_err(w, theirs[key]))

    ok = worst_loss <= LOSS_RTOL and worst_grad <= GRAD_RTOL and worst_adam <= GRAD_RTOL
    summary = (f"{name:<12} n_ctx={n_ctx:<2} n_emb={n_emb:<2} n_layer={n_layer} n_head={n_head} "
               f"n_ff_exp={n_ff_exp}  loss rel {worst_loss:.1e}  grad rel {worst_grad:.1e}"
               f"{' (' + worst_key + ')' if worst_key else ''}  adam rel {worst_adam:.1e}")
    return ok, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true",
                    help=f"compare microgpt's loss (rel {LOSS_RTOL:g}), gradients (rel {GRAD_RTOL:g}) and "
                         f"{ADAM_STEPS} Adam steps with this model on several configs")
    ap.add_argument("--configs", nargs="+", choices=sorted(CHECK_CONFIGS), default=list(CHECK_CONFIGS))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args(argv)
    if not args.check:
        ap.print_help()
        return 0

    torch.set_num_threads(1)
    from microgpt.train import load_names

    names = load_names()
    failed = 0
    for name in args.configs:
        try:
            ok, summary = check_config(name, CHECK_CONFIGS[name], names, args.seed)
        except Exception as exc:  # one broken config must not hide the others' results
            ok, summary = False, f"{name}: {type(exc).__name__}: {exc}"
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {summary}")
    print(f"{len(args.configs) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
