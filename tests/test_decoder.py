"""The forward pass without a graph (`Decoder`, `GPT.decoder`) against the graph's: the same
logits at every position and the same loss, compared with `==`, never approximately; sampling and
the held-out loss, which use it, against the same done through the graph; and a run's numbers
against those the graph alone gave before the Decoder existed."""
import math
import random

import numpy as np
import pytest

from microgpt import GPT
from microgpt._core import Decoder, ValMatrix
from microgpt.train import (
    Adam,
    Dataset,
    TrainingConfig,
    _sample,
    generate,
    mean_loss,
    train_and_generate,
    train_steps,
)

# (vocab_size, n_ctx, n_emb, n_layer, n_head, n_ff_exp)
CONFIGS = [
    (27, 16, 16, 1, 4, 4),      # the default creature
    (5, 4, 4, 1, 1, 1),
    (7, 8, 8, 2, 2, 1),
    (11, 5, 6, 3, 2, 4),        # the Rust seed's genome shape
    (30, 7, 12, 2, 3, 2),
    (13, 9, 40, 4, 4, 4),       # Hydra's largest genome (n_emb 40, 4 layers)
    (9, 6, 9, 1, 9, 3),         # head_dim 1
]

NAMES = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn",
         "abigail", "emily", "ella", "elizabeth", "camila", "luna", "sofia", "avery", "mila"]


def model_of(config, weights, seed):
    """A GPT of config with its own initial weights, or N(0, scale) ones ('wide': peaked
    attention, ReLUs on both sides of zero)."""
    model = GPT(*config, seed=seed)
    if weights != "init":
        rng = np.random.default_rng(seed)
        model.load_state_dict({k: rng.normal(0.0, weights, a.shape) for k, a in model.state_dict().items()})
    return model


class GraphLogits:
    """logits(token, pos) through the graph (GPT.forward), a fresh KV cache at position 0."""

    def __init__(self, model):
        self.model = model

    def __call__(self, token, pos):
        if pos == 0:
            self.cache = self.model.new_cache()
        return self.model.forward(token, pos, self.cache)


@pytest.mark.parametrize("weights", ["init", 0.5, 3.0])
@pytest.mark.parametrize("config", CONFIGS)
def test_logits_and_loss_are_the_graphs_bit_for_bit(config, weights):
    for seed in range(3):
        model = model_of(config, weights, seed)
        dec = model.decoder()
        graph = GraphLogits(model)
        rng = random.Random(seed)
        for _ in range(3):
            tokens = [rng.randrange(config[0]) for _ in range(rng.randint(2, config[1] + 3))]
            for pos, token in enumerate(tokens[:config[1]]):
                assert dec.logits(token, pos).data == graph(token, pos).data
            assert dec.loss(tokens) == model.loss(tokens).data


def test_the_decoder_reads_the_weights_where_they_live():
    # after training steps (Adam writes the arrays in place) and a load_state_dict, an existing
    # Decoder gives the graph's numbers for the new weights
    data = Dataset(NAMES)
    model = GPT(data.tok.vocab_size, 8, 8, 2, 2, 2, seed=1)
    dec = model.decoder()
    tokens = data.tok.encode("isabella")
    before = dec.loss(tokens)
    train_steps(model, Adam(model.weights.values()), data.tok, NAMES * 2, 0.01)
    assert dec.loss(tokens) == model.loss(tokens).data != before
    model.load_state_dict({k: a * 1.5 for k, a in model.state_dict().items()})
    assert dec.loss(tokens) == model.loss(tokens).data


@pytest.mark.parametrize("kw", [{}, {"top_k": 3}, {"prefix": "el"}, {"cooling": 0.7},
                                {"temperature": 1e-9}, {"temperature": 2.5, "cooling": 0.9}])
def test_generate_gives_the_graphs_names(kw):
    data = Dataset(NAMES)
    cfg = TrainingConfig(steps=40, n_emb=12, n_head=3, n_layer=2, n_ctx=10, seed=4,
                         gen_samples=0, val_names=5, input_file=None)
    result = train_and_generate(cfg, dataset=data)
    model, tok = result.model, result.tok
    args = dict(temperature=1.0, top_k=None, prefix="", cooling=1.0) | kw
    names = generate(model, tok, 40, seed=9, **args)
    rng = random.Random("9:sample")
    graph = GraphLogits(model)
    assert names == [_sample(graph, model.n_ctx, tok, rng, **args) for _ in range(40)]


@pytest.mark.parametrize("temperature, cooling", [(1.0, 1.0), (0.4, 1.0), (2.0, 0.6), (1e-300, 1.0),
                                                  (1.0, 1e-200)])     # below the smallest float
@pytest.mark.parametrize("config", CONFIGS[1:4])
def test_decoder_sample_draws_what_the_python_loop_draws(config, temperature, cooling):
    # the loop in C against _sample's in Python over the same decoder: the same tokens and the
    # same number of random() calls, BOS drawn first (then drawn again) included: at these
    # weights, seed 0's models draw BOS first with probability 0.13 (vocabulary 5) and 0.996 (7)
    from microgpt.train import Tokenizer

    tok = Tokenizer("abcdefghij"[:config[0] - 1])
    counted = []
    for seed in range(3):
        model = model_of(config, 3.0, seed)
        for prefix in ("", "b", "ab"):
            fed = [tok.bos] + tok.encode(prefix)[1:-1]
            runs = []
            for in_c in (True, False):
                rng = random.Random(seed)
                dec = model.decoder()
                if in_c:
                    names = [tok.decode(dec.sample(fed, temperature, cooling, rng.random))
                             for _ in range(60)]
                else:
                    names = [_sample(dec.logits, dec.n_ctx, tok, rng, temperature, None, prefix,
                                     cooling) for _ in range(60)]
                runs.append((names, rng.random()))
            assert runs[0] == runs[1]
            assert all(runs[0][0])                            # never an empty name
            counted.append(sum(len(n) - len(prefix) for n in runs[0][0]))
    assert sum(counted) > 0
    if config[0] == 7 and temperature == 1.0:
        # seed 0's model draws BOS first almost always: its names above were drawn again
        logits = model_of(config, 3.0, 0).decoder().logits(tok.bos, 0).data
        weights = [math.exp((x - max(logits)) / temperature) for x in logits]
        assert weights[tok.bos] / sum(weights) > 0.9


def test_decoder_sample_with_an_overflowing_cooling_draws_as_the_python_loop():
    # cooling ** pos overflows to an infinite temperature (uniform draws) in both loops alike
    from microgpt.train import Tokenizer

    tok = Tokenizer("abcd")
    dec = model_of((5, 4, 4, 1, 1, 1), 0.5, 0).decoder()
    rng_py, rng_c = random.Random(0), random.Random(0)
    want = [_sample(dec.logits, dec.n_ctx, tok, rng_py, 1.0, None, "", 1e200) for _ in range(30)]
    assert [tok.decode(dec.sample([tok.bos], 1.0, 1e200, rng_c.random)) for _ in range(30)] == want
    assert len(set(want)) > 10


def test_the_held_out_loss_is_the_graphs():
    data = Dataset(NAMES)
    model = GPT(data.tok.vocab_size, 6, 8, 1, 2, 4, seed=2)      # names longer than n_ctx too
    train_steps(model, Adam(model.weights.values()), data.tok, NAMES, 0.01)
    names = data.held_out_names(100)
    assert mean_loss(model, data.tok, names) == sum(
        model.loss(data.tok.encode(n)).data for n in names) / len(names)


def test_a_run_is_bit_for_bit_what_the_graph_alone_gave():
    # recorded from the build before the Decoder (sampling and val_loss through the graph), and
    # the same with the core's own exp and log (portable_exp, portable_log)
    r = train_and_generate(TrainingConfig(steps=60, seed=3, gen_samples=6, val_names=50))
    assert r.losses[-1].hex() == "0x1.8307ee34c8815p+1"
    assert r.val_loss.hex() == "0x1.62f5dacba4b8cp+1"
    assert r.names == ["l", "snuys", "lraycmynknn", "zeu", "xglqywtrnet", "eja"]
    assert generate(r.model, r.tok, 4, 1.7, 11, cooling=0.9) == ["zrymeh", "eegw", "t", "cyezn"]
    r = train_and_generate(TrainingConfig(steps=30, n_emb=8, n_head=1, n_layer=3, n_ff_exp=1,
                                          n_ctx=12, seed=7, cooling=0.8, top_k=5, gen_samples=6,
                                          val_names=50))
    assert r.val_loss.hex() == "0x1.95a29f7c0591dp+1"
    assert r.names == ["itelalteede", "lllaaauwe", "eeeeelartrll", "tltaar", "iretaacucutl",
                       "daalalltagel"]


def test_decoder_errors_are_clear():
    model = GPT(5, 4, 4, 1, 2, 1, seed=0)
    dec = model.decoder()
    with pytest.raises(IndexError, match="position 1"):
        dec.logits(0, 1)                       # position 0 not fed yet
    dec.logits(0, 0)
    with pytest.raises(IndexError, match="vocabulary"):
        dec.logits(5, 1)
    with pytest.raises(IndexError, match="n_ctx"):
        for pos in range(5):
            dec.logits(0, pos)
    with pytest.raises(ValueError, match="two tokens"):
        dec.loss([1])
    with pytest.raises(IndexError, match="target"):
        dec.loss([1, 7])
    W = model.weights
    with pytest.raises(ValueError, match="lm_head"):
        Decoder(W["wte"], W["wpe"], model.layers, W["wpe"], 2)
    with pytest.raises(ValueError, match="heads"):
        Decoder(W["wte"], W["wpe"], model.layers, W["lm_head"], 3)
    with pytest.raises(TypeError, match="fc2"):
        Decoder(W["wte"], W["wpe"], [model.layers[0][:5] + ([[1.0]],)], W["lm_head"], 2)
    assert isinstance(W["wte"], ValMatrix)


def unfused_forward(model, token, pos, cache):
    """GPT.forward as it was before the blocks: every op its own node."""
    from microgpt import attention, linear, rmsnorm, vadd

    W = model.weights
    x = vadd(W["wte"].row(token), W["wpe"].row(pos))
    for (wq, wk, wv, wo, fc1, fc2), (keys, values) in zip(model.layers, cache):
        xn = rmsnorm(x, model.rms_eps)
        keys.append(linear(xn, wk))
        values.append(linear(xn, wv))
        x = vadd(x, linear(attention(linear(xn, wq), keys, values, model.n_head), wo))
        x = vadd(x, linear(linear(rmsnorm(x, model.rms_eps), fc1, relu=True), fc2))
    return linear(rmsnorm(x, model.rms_eps), W["lm_head"])


@pytest.mark.parametrize("weights", ["init", 0.5, 3.0])
@pytest.mark.parametrize("config", CONFIGS)
def test_the_blocks_give_the_separate_ops_numbers_bit_for_bit(config, weights):
    # attention_block and mlp_block against the ops they fuse: logits, loss and every gradient
    from microgpt import cross_entropy, vsum

    for seed in range(2):
        model = model_of(config, weights, seed)
        rng = random.Random(seed)
        tokens = [rng.randrange(config[0]) for _ in range(rng.randint(2, config[1] + 2))][:config[1]]
        cache, losses = model.new_cache(), []
        for p in range(len(tokens) - 1):
            losses.append(cross_entropy(unfused_forward(model, tokens[p], p, cache), tokens[p + 1]))
        want = vsum(losses, 1.0 / len(losses))
        want.backward()
        want_grads = {k: W.grads() for k, W in model.weights.items()}
        for W in model.weights.values():
            W.zero_grad()
        got = model.loss_by_position(tokens)      # the blocks; GPT.loss is checked against it
        got.backward()
        assert got.data == want.data
        assert {k: W.grads() for k, W in model.weights.items()} == want_grads


@pytest.mark.parametrize("weights", ["init", 0.5, 3.0])
@pytest.mark.parametrize("config", CONFIGS)
def test_a_names_positions_at_once_give_the_per_position_graphs_numbers(config, weights):
    # GPT.loss (embed_seq, attention_seq, mlp_seq, loss_seq: a node per layer half) against
    # loss_by_position (a node per position and block): the loss and every gradient, after each
    # of 8 backward passes over the same graph (gradients accumulate)
    for seed in range(3):
        model = model_of(config, weights, seed)
        rng = random.Random(seed)
        n = [2, config[1], config[1] + 3][seed]           # one position, a full context, cut
        tokens = [rng.randrange(config[0]) for _ in range(n)]
        runs = []
        for loss in (model.loss_by_position, model.loss):
            out = loss(tokens)
            grads = []
            for _ in range(8):          # the cross-entropies' gradient summed pass by pass
                out.backward()
                grads.append({k: W.grads() for k, W in model.weights.items()})
            runs.append((out.data, grads))
            for W in model.weights.values():
                W.zero_grad()
        assert runs[0] == runs[1]
        assert runs[1][0] == model.decoder().loss(tokens)


def test_a_names_positions_at_once_are_a_few_nodes():
    from microgpt import graph_size

    model = GPT(27, 16, 16, 2, 4, 4, seed=0)
    tokens = [0, 5, 13, 13, 1, 0]
    # the loss's element, the loss, 2 layers x 2 halves, the embeddings; against the sum and 8 a
    # position (the sum of the embeddings, 2 x 2 blocks, rmsnorm, lm_head, the cross-entropy)
    assert graph_size(model.loss(tokens))[0] == 7
    assert graph_size(model.loss_by_position(tokens))[0] == 1 + 5 * 8


def test_seq_errors_are_clear():
    from microgpt import Vec, attention_seq, embed_seq, loss_seq, mlp_seq

    model = GPT(5, 4, 4, 1, 2, 2, seed=0)
    W = model.weights
    wq, wk, wv, wo, fc1, fc2 = model.layers[0]             # fc1 8 x 4, fc2 4 x 8
    with pytest.raises(IndexError, match="token 5 outside 0 .. 4"):
        embed_seq(W["wte"], W["wpe"], [0, 5])
    with pytest.raises(ValueError, match="5 tokens, expected 1 to 4"):
        embed_seq(W["wte"], W["wpe"], [0] * 5)
    with pytest.raises(ValueError, match="0 tokens"):
        embed_seq(W["wte"], W["wpe"], [])
    with pytest.raises(TypeError, match="ValMatrix"):
        embed_seq([[0.0] * 4] * 5, W["wpe"], [0])
    x = embed_seq(W["wte"], W["wpe"], [1, 2, 3])
    assert len(x) == 12
    with pytest.raises(ValueError, match="heads"):
        attention_seq(x, wq, wk, wv, wo, 3)
    with pytest.raises(ValueError, match="expected 4 x 4"):
        attention_seq(x, wq, wk, wv, fc1, 2)
    with pytest.raises(ValueError, match="not whole positions of 4"):
        attention_seq(Vec([0.1] * 6), wq, wk, wv, wo, 2)
    with pytest.raises(TypeError, match="Vec"):
        mlp_seq([0.1] * 4, fc1, fc2)
    with pytest.raises(ValueError, match="expected 4 x 8"):
        mlp_seq(x, fc1, fc1)
    with pytest.raises(ValueError, match="2 targets for 3 positions"):
        loss_seq(x, W["lm_head"], [1, 2])
    with pytest.raises(IndexError, match="target 9 outside 0 .. 4"):
        loss_seq(x, W["lm_head"], [1, 2, 9])
    empty = ValMatrix([[]])                                # no columns: not weights
    for call in (lambda: embed_seq(empty, empty, [0]), lambda: loss_seq(x, empty, [0, 0, 0]),
                 lambda: mlp_seq(x, empty, empty), lambda: attention_seq(x, *[empty] * 4, 1)):
        with pytest.raises(TypeError, match="leaves"):
            call()
    loss = loss_seq(mlp_seq(attention_seq(x, wq, wk, wv, wo, 2), fc1, fc2), W["lm_head"], [2, 3, 4])
    assert loss.data == model.loss([1, 2, 3, 4]).data


def test_block_errors_are_clear():
    from microgpt import Vec, attention_block, mlp_block

    model = GPT(5, 4, 4, 1, 2, 2, seed=0)
    wq, wk, wv, wo, fc1, fc2 = model.layers[0]             # fc1 8 x 4, fc2 4 x 8
    x = Vec([0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="heads"):
        attention_block(x, wq, wk, wv, wo, [], [], 3)
    with pytest.raises(ValueError, match="1 keys and 0 values"):
        attention_block(x, wq, wk, wv, wo, [x], [], 2)
    with pytest.raises(ValueError, match="expected 4 x 4"):
        attention_block(x, wq, wk, wv, fc1, [], [], 2)
    with pytest.raises(TypeError, match="Vec"):
        attention_block([0.1] * 4, wq, wk, wv, wo, [], [], 2)
    with pytest.raises(ValueError, match="expected 4 x 8"):
        mlp_block(x, fc1, fc1)
    keys, values = [], []
    y = attention_block(x, wq, wk, wv, wo, keys, values, 2)
    assert len(keys) == len(values) == 1 and len(y) == 4
    assert len(mlp_block(y, fc1, fc2)) == 4
