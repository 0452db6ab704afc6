"""Tokenizer, dataset loading, Adam, the training loop and sampling."""
import math
import random

import pytest

from microgpt import GPT
from microgpt.train import (
    Adam,
    Tokenizer,
    TrainingConfig,
    load_names,
    sample,
    split_names,
    train_and_generate,
)

NAMES = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn",
         "abigail", "emily", "ella", "elizabeth", "camila", "luna", "sofia", "avery", "mila"]


def write_names(tmp_path, names):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return str(path)


def test_tokenizer_on_unicode_names():
    tok = Tokenizer.from_names(["zoë", "李雷", "josé", "ana maria"])
    assert tok.chars == sorted(set("zoë李雷joséanamaria"))     # whitespace is not a token
    assert tok.bos == len(tok.chars) and tok.vocab_size == len(tok.chars) + 1
    ids = tok.encode("李雷")
    assert ids[0] == ids[-1] == tok.bos and len(ids) == 4
    assert tok.decode(ids) == "李雷"
    assert tok.decode(tok.encode("ana maria")) == "anamaria"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("x")


def test_load_names_skips_blank_lines_and_strips(tmp_path):
    path = tmp_path / "n.txt"
    path.write_text("  emma \n\n\nava\r\n   \nzoë\n", encoding="utf-8")
    assert list(load_names(path)) == ["emma", "ava", "zoë"]


def test_the_bundled_names_ship_with_the_package():
    names = load_names()
    assert len(names) == 32033 and names[0] == "emma"


@pytest.mark.parametrize("content, message", [("", "empty"), ("\n  \n\n", "empty"),
                                              (b"\xff\xfe\x00", "not UTF-8")])
def test_bad_datasets(tmp_path, content, message):
    path = tmp_path / "n.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message):
        load_names(path)
    with pytest.raises(ValueError, match="no such file"):
        load_names(tmp_path / "absent.txt")


def test_split_is_fixed_and_disjoint():
    train, held = (a.tolist() for a in split_names(10_000))
    assert (train, held) == tuple(a.tolist() for a in split_names(10_000))
    assert 900 < len(held) < 1100 and not set(train) & set(held)
    assert sorted(train + held) == list(range(10_000))
    assert max(held[:100]) > 5_000 and min(held[:100]) < 5_000     # the first are spread out
    assert split_names(5)[0].tolist() == split_names(5)[1].tolist() == [0, 1, 2, 3, 4]


def test_python_and_numpy_give_the_same_names_and_split(monkeypatch):
    import microgpt.train as train

    lines = b"\n".join(b"" if i % 7 == 0 else b"n%d " % i for i in range(3000)) + b"\n\n"
    small = train.Names(lines)
    small_split = train.split_names(3000)
    monkeypatch.setattr(train, "SMALL", 0)          # everything is big: numpy's way
    big = train.Names(lines)
    big_split = train.split_names(3000)
    assert type(small.starts) is not type(big.starts)
    assert list(small) == list(big) and len(small) == 3000 - 429
    assert small.starts.tolist() == big.starts.tolist() and small.ends.tolist() == big.ends.tolist()
    assert [a.tolist() for a in small_split] == [a.tolist() for a in big_split]


def test_adam_matches_the_formula():
    model = GPT(5, 4, 4, 1, 2, 1, seed=0)
    params = model.parameters()
    opt = Adam(params, beta1=0.9, beta2=0.99, eps=1e-8)
    p = params[3]
    before = p.data
    loss = model.loss([4, 1, 2, 4])
    loss.backward()
    g = p.grad
    opt.step(0.01)
    m, v = 0.1 * g, 0.01 * g * g
    expected = before - 0.01 * (m / 0.1) / ((v / 0.01) ** 0.5 + 1e-8)
    assert p.data == pytest.approx(expected, rel=1e-12)
    assert p.grad == 0.0


def test_gpt_loss_gradient_matches_finite_differences():
    model = GPT(6, 5, 4, 2, 2, 2, seed=3)
    tokens = [5, 0, 3, 1, 2, 5]
    model.loss(tokens).backward()
    params = model.parameters()
    rng = random.Random(0)
    for p in rng.sample(params, 25):
        analytic, x, h = p.grad, p.data, 1e-6
        p.data = x + h
        up = model.loss(tokens).data
        p.data = x - h
        down = model.loss(tokens).data
        p.data = x
        assert analytic == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-8)


def test_training_lowers_the_loss_and_is_reproducible(tmp_path):
    cfg = TrainingConfig(steps=150, seed=1, gen_samples=4, val_names=20)
    a = train_and_generate(cfg)
    assert len(a.losses) == 150 and a.final_loss == a.losses[-1]
    assert sum(a.losses[-30:]) / 30 < sum(a.losses[:30]) / 30
    assert a.val_loss < math.log(27) - 0.3 and a.val_loss < a.losses[0]   # log 27: a uniform guess
    assert len(a.names) == 4 and a.num_params == 4192
    b = train_and_generate(cfg)
    assert (a.losses, a.names, a.val_loss) == (b.losses, b.names, b.val_loss)   # bit for bit
    c = train_and_generate(TrainingConfig(steps=150, seed=2, gen_samples=4, val_names=20))
    assert c.losses != a.losses


def test_training_on_a_small_unicode_dataset(tmp_path):
    path = write_names(tmp_path, ["zoë", "chloé", "anaïs", "zoé", "noé"])
    res = train_and_generate(TrainingConfig(steps=30, input_file=path, gen_samples=3))
    assert len(res.names) == 3
    allowed = set("zoëchléanïsé")
    assert all(set(name) <= allowed for name in res.names)


def test_sampling_respects_the_context_and_the_temperature():
    names = ["abc", "bca", "cab"]
    tok = Tokenizer.from_names(names)
    model = GPT(tok.vocab_size, 3, 4, 1, 1, 1, seed=0)
    rng = random.Random(0)
    for _ in range(20):
        assert len(sample(model, tok, rng, temperature=1.0)) <= 3
    # A near-zero temperature is greedy: the same name every time.
    cold = {sample(model, tok, random.Random(i), temperature=1e-9) for i in range(5)}
    assert len(cold) == 1
    with pytest.raises(ValueError, match="temperature"):
        train_and_generate(TrainingConfig(steps=1, temperature=0.0))


def test_draw_is_random_choices_draw_bit_for_bit():
    # draw_index does random.choices' arithmetic in C, its weights by the core's exp: for any
    # logits, temperature and uniform, the same index, so names sampled with a seed never change.
    from microgpt._core import Vec, draw_index, portable_exp

    rng = random.Random(7)
    for _ in range(3000):
        n = rng.randint(1, 30)
        logits = [rng.gauss(0.0, rng.choice((0.1, 1.0, 5.0, 300.0))) for _ in range(n)]
        t = rng.choice((1e-9, 0.05, 0.5, 1.0, 1.7, 1e6))
        state = rng.getstate()
        top = max(logits)
        want = rng.choices(range(n), weights=[portable_exp((x - top) / t) for x in logits])[0]
        rng.setstate(state)
        u = rng.random()
        assert draw_index(logits, t, u) == draw_index(Vec(logits), t, u) == want
    for bad in ([0.0, math.nan], [math.inf, 0.0]):
        with pytest.raises(ValueError, match="positive finite"):
            draw_index(bad, 1.0, 0.5)


def test_top_k_and_prefix_sampling():
    from microgpt.train import Dataset, draw, generate

    rng = random.Random(0)
    assert {draw(rng, [0.1, 3.0, 2.9, -1.0], 1.0, top_k=1) for _ in range(30)} == {1}
    assert {draw(rng, [0.1, 3.0, 2.9, -1.0], 5.0, top_k=2) for _ in range(200)} == {1, 2}
    data = Dataset(NAMES)
    model = GPT(data.tok.vocab_size, 8, 8, 1, 2, 1, seed=3)
    names = generate(model, data.tok, 20, 1.0, seed=4, prefix="em")
    assert all(n.startswith("em") for n in names) and len(set(names)) > 1
    plain = generate(model, data.tok, 5, 1.0, seed=4)
    assert plain == generate(model, data.tok, 5, 1.0, seed=4, top_k=None, prefix="")
    assert generate(model, data.tok, 3, 1.0, seed=4, prefix="emmaemmaemmaemma") == ["emmaemmaemmaemma"] * 3


def test_cooling_multiplies_the_temperature_letter_by_letter(monkeypatch):
    import microgpt.train as train

    data = train.Dataset(NAMES)
    model = GPT(data.tok.vocab_size, 8, 8, 1, 2, 1, seed=3)
    seen = []
    real = train.draw_index

    def spy(logits, temperature, u):
        seen.append(temperature)
        return real(logits, temperature, u)

    def python_loop(cooling):        # the loop Decoder.sample runs in C (test_decoder: the same)
        return train._sample(model.decoder().logits, model.n_ctx, data.tok, random.Random(1),
                             2.0, None, "", cooling)

    monkeypatch.setattr(train, "draw_index", spy)
    name = python_loop(0.5)
    assert seen == [2.0 * 0.5 ** i for i in range(len(seen))]
    assert len(seen) == min(len(name) + 1, 8)      # every letter, then the end, if it came
    seen.clear()
    python_loop(1e-300)
    assert seen[0] == 2.0 and all(t > 0 for t in seen)   # cooled below any float: still argmax
    monkeypatch.undo()
    assert name == sample(model, data.tok, random.Random(1), temperature=2.0, cooling=0.5)
    # cooling 1 is the plain temperature, draw for draw: a genome without it speaks as before
    assert (train.generate(model, data.tok, 6, 0.8, seed=5)
            == train.generate(model, data.tok, 6, 0.8, seed=5, cooling=1.0))
    assert (train.generate(model, data.tok, 6, 0.8, seed=5)
            != train.generate(model, data.tok, 6, 0.8, seed=5, cooling=0.5))
    with pytest.raises(ValueError, match="cooling"):
        train.train_and_generate(TrainingConfig(steps=1, cooling=0.0))


class _Mute:
    """Logits of a stand-in model that would rather end a name than begin one: BOS far likelier
    than any letter at every position."""
    n_ctx = 4

    def __init__(self, vocab_size, bos):
        self.values = [0.0] * vocab_size
        self.values[bos] = 8.0

    def __call__(self, token, pos):
        return list(self.values)


def test_a_sampled_name_is_never_empty():
    # the Python loop (_sample; Decoder.sample, its loop in C, draws the same: test_decoder)
    from microgpt.train import _sample

    tok = Tokenizer.from_names(["abc"])
    mute = _Mute(tok.vocab_size, tok.bos)
    rng = random.Random(0)
    names = [_sample(mute, mute.n_ctx, tok, rng, 1.0, None, "", 1.0) for _ in range(300)]
    # the first letter is redrawn from the letters alone; the name then ends almost at once
    assert all(len(n) >= 1 for n in names)
    assert sum(len(n) == 1 for n in names) > 250
    # with top_k=1 the only candidate is BOS: the redraw still takes the best letter
    assert {_sample(mute, mute.n_ctx, tok, rng, 1.0, 1, "", 1.0) for _ in range(5)} == {"a"}


def test_a_hot_voice_of_an_untrained_model_says_no_empty_name():
    from microgpt.train import Dataset, generate

    data = Dataset(NAMES)
    model = GPT(data.tok.vocab_size, 8, 8, 1, 2, 1, seed=3)
    names = generate(model, data.tok, 300, 3.0, seed=1)   # BOS is drawn first now and then
    assert all(names) and len(set(names)) > 200
