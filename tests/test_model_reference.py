"""microgpt.GPT against an independent re-derivation: `ref_gpt_loss` over the reference RefVal.

The model uses the core's fused ops (linear, softmax, rmsnorm, cross_entropy); the reference
spells everything out with elementary RefVal ops. Losses must agree to 1e-10 relative and every
weight's gradient to 1e-7, on tiny configs and on the seed genome's shape.
"""
import numpy as np
import pytest
from reference import ref_gpt_loss

from microgpt import GPT

# (vocab_size, n_ctx, n_emb, n_layer, n_head, n_ff_exp, number of tokens)
CONFIGS = {
    "one_layer_short": (5, 4, 4, 1, 1, 1, 3),        # fewer tokens than n_ctx
    "two_heads_full": (6, 6, 6, 2, 2, 2, 6),          # exactly n_ctx tokens
    "two_layers_long": (7, 8, 8, 2, 2, 1, 11),        # tokens cut to n_ctx
    "four_heads_long": (7, 5, 8, 1, 4, 3, 9),         # head_dim 2
    "two_tokens": (5, 4, 4, 2, 2, 1, 2),              # a single prediction
    "seed_genome": (27, 5, 6, 3, 2, 4, 8),            # the Rust seed's genome shape
}


def expected_shapes(vocab_size, n_ctx, n_emb, n_layer, n_ff_exp):
    """{name: shape} of the GPT's weights, from the spec (one row per output unit)."""
    shapes = {"wte": (vocab_size, n_emb), "wpe": (n_ctx, n_emb), "lm_head": (vocab_size, n_emb)}
    for i in range(n_layer):
        for w in ("wq", "wk", "wv", "wo"):
            shapes[f"layers.{i}.{w}"] = (n_emb, n_emb)
        shapes[f"layers.{i}.fc1"] = (n_ff_exp * n_emb, n_emb)
        shapes[f"layers.{i}.fc2"] = (n_emb, n_ff_exp * n_emb)
    return shapes


def make(config, weights, seed=0):
    """(model, tokens) for a config; weights 'init' keeps the model's own, 'wide' loads N(0, 0.5)."""
    vocab_size, n_ctx, n_emb, n_layer, n_head, n_ff_exp, n_tokens = config
    model = GPT(vocab_size, n_ctx, n_emb, n_layer, n_head, n_ff_exp, seed=seed)
    rng = np.random.default_rng(seed)
    if weights == "wide":  # larger weights: peaked attention, ReLUs on both sides of zero
        model.load_state_dict({name: rng.normal(0.0, 0.5, a.shape) for name, a in model.state_dict().items()})
    tokens = rng.integers(0, vocab_size, n_tokens).tolist()
    return model, tokens


@pytest.mark.parametrize("weights", ["init", "wide"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_loss_and_gradients_match_reference(name, weights):
    config = CONFIGS[name]
    model, tokens = make(config, weights)
    loss = model.loss(tokens)
    loss.backward()
    want_loss, want_grads = ref_gpt_loss(model.state_dict(), tokens, n_layer=config[3], n_head=config[4])
    assert loss.data == pytest.approx(want_loss, rel=1e-10)
    grads = model.grad_dict()
    assert grads.keys() == want_grads.keys()
    for key, want in want_grads.items():
        np.testing.assert_allclose(grads[key], want, rtol=1e-7, atol=1e-12, err_msg=key)


def test_rms_eps_is_used():
    vocab_size, n_ctx, n_emb, n_layer, n_head, n_ff_exp, _ = CONFIGS["two_heads_full"]
    model = GPT(vocab_size, n_ctx, n_emb, n_layer, n_head, n_ff_exp, rms_eps=0.3, seed=3)
    tokens = [0, 1, 2, 3, 4]
    loss = model.loss(tokens)
    loss.backward()
    want_loss, want_grads = ref_gpt_loss(model.state_dict(), tokens, n_layer, n_head, rms_eps=0.3)
    assert loss.data == pytest.approx(want_loss, rel=1e-10)
    for key, want in want_grads.items():
        np.testing.assert_allclose(model.grad_dict()[key], want, rtol=1e-7, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_weight_names_and_shapes(name):
    vocab_size, n_ctx, n_emb, n_layer, n_head, n_ff_exp, _ = CONFIGS[name]
    model = GPT(vocab_size, n_ctx, n_emb, n_layer, n_head, n_ff_exp, seed=0)
    shapes = expected_shapes(vocab_size, n_ctx, n_emb, n_layer, n_ff_exp)
    state, grads = model.state_dict(), model.grad_dict()
    assert {k: a.shape for k, a in state.items()} == shapes
    assert {k: a.shape for k, a in grads.items()} == shapes
    assert all(a.dtype == np.float64 for a in (*state.values(), *grads.values()))
    assert len(model.parameters()) == sum(r * c for r, c in shapes.values())


def test_state_dict_round_trip():
    config = CONFIGS["two_layers_long"]
    source, tokens = make(config, "wide", seed=1)
    target, _ = make(config, "init", seed=2)
    state = source.state_dict()
    target.load_state_dict(state)
    for key, a in target.state_dict().items():
        np.testing.assert_array_equal(a, state[key])
    assert target.loss(tokens).data == source.loss(tokens).data


def test_state_dict_is_a_copy():
    model, tokens = make(CONFIGS["one_layer_short"], "init")
    before = model.loss(tokens).data
    state = model.state_dict()
    state["wte"][:] = 7.0  # neither editing the copy ...
    model.state_dict()["lm_head"][:] = 7.0
    assert model.loss(tokens).data == before
    model.load_state_dict(state)
    state["wte"][:] = 0.0  # ... nor editing what was loaded reaches the model
    assert model.state_dict()["wte"].min() == 7.0


def test_load_state_dict_rejects_a_missing_key():
    model, _ = make(CONFIGS["two_heads_full"], "init")
    state = model.state_dict()
    del state["layers.1.fc2"]
    with pytest.raises(ValueError):
        model.load_state_dict(state)


def test_load_state_dict_rejects_a_wrong_shape():
    model, _ = make(CONFIGS["two_heads_full"], "init")
    before = model.state_dict()
    state = {k: a + 1.0 for k, a in before.items()}
    state["layers.0.wq"] = state["layers.0.wq"][:, :-1]
    with pytest.raises(ValueError):
        model.load_state_dict(state)
    state["layers.0.wq"] = state["layers.0.wq"].T
    with pytest.raises(ValueError):
        model.load_state_dict(state)
    for key, a in model.state_dict().items():  # a rejected state leaves the weights untouched
        np.testing.assert_array_equal(a, before[key])
