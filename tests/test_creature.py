"""The creature file: saving, loading and continuing a trained microgpt, by the API and as a user
would with the commands; corrupt, truncated, foreign and doctored files."""
import json
import shutil
import subprocess
import zipfile

import numpy as np
import pytest

from microgpt.creature import (
    FORMAT_VERSION,
    continue_training,
    creature_bytes,
    from_training,
    load_creature,
    save_creature,
)
from microgpt.train import Dataset, TrainingConfig, load_names, train_and_generate


def run(cwd, name, *args):
    exe = shutil.which(name)
    assert exe, f"the {name} console script is not installed"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def names_and_summary(stdout):
    """(the names, the summary line's losses and size) of a -q run."""
    lines = stdout.splitlines()
    summary = lines[-1]
    return lines[:-2], summary[summary.index("| Loss:"):]


def assert_one_line_error(res, *words):
    assert res.returncode == 1, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def data():
    return Dataset(load_names())


@pytest.fixture(scope="module")
def trained(data):
    cfg = TrainingConfig(steps=25, n_emb=8, n_head=2, seed=3, gen_samples=0, temperature=0.8)
    return cfg, train_and_generate(cfg, dataset=data)


def arrays(creature):
    model, opt = creature.model, creature.opt
    return ([np.array(W.datas()) for W in model.weights.values()]
            + [np.frombuffer(m, np.float64).copy() for _, m, _ in opt.groups]
            + [np.frombuffer(v, np.float64).copy() for _, _, v in opt.groups])


# The API.

def test_round_trip_is_bit_exact(tmp_path, trained, data):
    cfg, result = trained
    creature = from_training(result, cfg, data.names.sha256())
    save_creature(tmp_path / "c.npz", creature)
    back = load_creature(tmp_path / "c.npz")
    assert back.genes == {"n_emb": 8, "n_ctx": 16, "n_layer": 1, "n_head": 2, "n_ff_exp": 4,
                          "steps": 25, "lr": 0.005, "temperature": 0.8, "cooling": 1.0}
    assert back.seed == 3 and back.steps_done == 25 and back.opt.t == 25
    assert back.tok.chars == result.tok.chars and back.data_sha256 == data.names.sha256()
    assert back.val_loss == result.val_loss and back.final_loss == result.final_loss
    assert len(arrays(creature)) == len(arrays(back))
    for a, b in zip(arrays(creature), arrays(back)):
        assert a.tobytes() == b.tobytes()          # bit for bit, not approximately
    assert len(arrays(back)) == 3 * 9
    assert np.any(arrays(back)[9] != 0)              # Adam's moments were saved, not zeros


def test_continuing_after_a_round_trip_is_continuing_in_memory(tmp_path, data):
    cfg = TrainingConfig(steps=15, n_emb=8, n_head=2, seed=4, gen_samples=0)
    kept = from_training(train_and_generate(cfg, dataset=data), cfg, data.names.sha256())
    (tmp_path / "c.npz").write_bytes(creature_bytes(kept))
    loaded = load_creature(tmp_path / "c.npz")
    losses_kept = continue_training(kept, data, 10, 0.01)
    losses_loaded = continue_training(loaded, data, 10, 0.01)
    assert losses_kept == losses_loaded
    assert loaded.steps_done == 25 and loaded.opt.t == 25      # the step count carries on
    for a, b in zip(arrays(kept), arrays(loaded)):
        assert a.tobytes() == b.tobytes()


def test_a_continuation_uses_adam_state_and_new_names(data):
    cfg = TrainingConfig(steps=10, n_emb=8, n_head=2, seed=4, gen_samples=0)
    warm = from_training(train_and_generate(cfg, dataset=data), cfg, None)
    cold = from_training(train_and_generate(cfg, dataset=data), cfg, None)
    for _, m, v in cold.opt.groups:                 # the same weights, Adam's memory wiped
        m[:] = type(m)("d", bytes(8 * len(m)))
        v[:] = type(v)("d", bytes(8 * len(v)))
    cold.opt.t = 0
    continue_training(warm, data, 5, 0.01)
    continue_training(cold, data, 5, 0.01)
    assert any(a.tobytes() != b.tobytes() for a, b in zip(arrays(warm)[:9], arrays(cold)[:9]))
    first = data.training_order(10, 4)
    again = data.training_order(5, "4+10")
    assert again != first[:5]                       # a continuation draws other names


def test_names_outside_the_vocabulary_cannot_continue(trained, data):
    cfg, result = trained
    creature = from_training(result, cfg, None)
    with pytest.raises(ValueError, match="never learned"):
        continue_training(creature, Dataset(["anna", "zoë"]), 3, 0.01)


# The command.

@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A directory holding c.npz (a 30-step creature, seed 9) and the run that made it."""
    where = tmp_path_factory.mktemp("saved")
    res = run(where, "microgpt", "-s", "30", "--seed", "9", "-n", "6", "-q", "--save", "c.npz")
    assert res.returncode == 0, res.stderr
    return where, res


@pytest.mark.slow
def test_a_loaded_creature_says_what_the_trained_one_said(saved):
    where, trained_run = saved
    res = run(where, "microgpt", "--load", "c.npz", "-n", "6", "-q")
    assert res.returncode == 0, res.stderr
    assert names_and_summary(res.stdout) == names_and_summary(trained_run.stdout)
    assert "loaded from c.npz, not retrained" in res.stdout
    loud = run(where, "microgpt", "--load", "c.npz", "-n", "2")
    assert "Speaking without training" in loud.stdout and "[Loaded]" in loud.stdout
    other = run(where, "microgpt", "--load", "c.npz", "-n", "6", "-q", "--seed", "1", "-t", "0.5",
                "--top-k", "3", "--prefix", "ma")
    assert other.returncode == 0, other.stderr
    names, _ = names_and_summary(other.stdout)
    assert len(names) == 6 and all(n.startswith("ma") for n in names)


@pytest.mark.slow
def test_continuing_carries_on_and_can_save_again(saved):
    where, _ = saved
    shutil.copy(where / "c.npz", where / "d.npz")
    res = run(where, "microgpt", "--load", "d.npz", "--steps", "12", "-n", "2", "--save", "d.npz")
    assert res.returncode == 0, res.stderr
    assert "Adam carries on from step 30" in res.stdout and "(now 42)" in res.stdout
    assert "kept as" in res.stdout                  # the creature it replaced is kept
    again = load_creature(where / "d.npz")
    assert again.steps_done == 42 and again.opt.t == 42
    before = load_creature(where / "c.npz")
    assert before.steps_done == 30
    assert any(a.tobytes() != b.tobytes() for a, b in zip(arrays(before), arrays(again)))


def doctor(src, dst, meta=None, drop=(), change=None):
    """Write dst: the creature src with its meta updated, arrays dropped or changed."""
    with np.load(src) as z:
        content = {k: z[k] for k in z.files}
    m = json.loads(content["meta"].tobytes())
    m.update(meta or {})
    content["meta"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
    for k in drop:
        del content[k]
    for k, v in (change or {}).items():
        content[k] = v
    np.savez(dst, **content)


@pytest.mark.slow
def test_bad_creature_files_are_one_line_and_nothing_is_written(saved, tmp_path):
    where, _ = saved
    good = (where / "c.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.npz").write_text("n_emb = 16\n")
    (tmp_path / "empty.npz").write_bytes(b"")
    flipped = bytearray(good)
    with zipfile.ZipFile(where / "c.npz") as z:       # a byte inside wte's stored data
        info = z.getinfo("weight.wte.npy")
    flipped[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    doctor(where / "c.npz", tmp_path / "newer.npz", meta={"format_version": FORMAT_VERSION + 1})
    doctor(where / "c.npz", tmp_path / "notus.npz", meta={"format": "something-else"})
    genes = json.loads(np.load(where / "c.npz")["meta"].tobytes())["genes"]
    doctor(where / "c.npz", tmp_path / "shapes.npz", meta={"genes": {**genes, "n_emb": 32}})
    doctor(where / "c.npz", tmp_path / "layers.npz", meta={"genes": {**genes, "n_layer": 2}})
    doctor(where / "c.npz", tmp_path / "badgene.npz", meta={"genes": {**genes, "n_emb": 10**9}})
    doctor(where / "c.npz", tmp_path / "badcool.npz", meta={"genes": {**genes, "cooling": 0}})
    doctor(where / "c.npz", tmp_path / "missing.npz", drop=["adam_v.lm_head"])
    doctor(where / "c.npz", tmp_path / "nan.npz",
           change={"weight.wpe": np.full((16, 16), np.nan)})
    doctor(where / "c.npz", tmp_path / "ints.npz",
           change={"weight.wpe": np.zeros((16, 16), np.int64)})
    cases = {"truncated": "not a creature file", "text": "not a creature file",
             "empty": "not a creature file", "flipped": "corrupt",
             "foreign": "not a creature file", "newer": f"format {FORMAT_VERSION + 1}",
             "notus": "not a creature file", "shapes": "shape", "layers": "arrays missing",
             "badgene": "n_emb must be between", "badcool": "cooling must be",
             "missing": "adam_v.lm_head",
             "nan": "not finite", "ints": "dtype int64"}
    for name, words in cases.items():
        res = run(tmp_path, "microgpt", "--load", f"{name}.npz", "--save", "out.npz",
                  "--steps", "3")
        assert_one_line_error(res, f"{name}.npz", words)
        assert not (tmp_path / "out.npz").exists()
    assert_one_line_error(run(tmp_path, "microgpt", "--load", "nothere.npz"), "no such file")
    assert_one_line_error(run(tmp_path, "microgpt", "--load", "/dev/null"), "not a creature")


@pytest.mark.slow
def test_a_creature_saved_before_the_cooling_gene_speaks_without_cooling(saved, tmp_path):
    where, _ = saved
    meta = json.loads(np.load(where / "c.npz")["meta"].tobytes())
    older = {k: v for k, v in meta["genes"].items() if k != "cooling"}
    doctor(where / "c.npz", tmp_path / "older.npz", meta={"genes": older})
    assert load_creature(tmp_path / "older.npz").genes == dict(older, cooling=1.0)
    said = [run(d, "microgpt", "--load", p, "-n", "6", "-q", "--seed", "5").stdout.splitlines()[:6]
            for d, p in ((where, "c.npz"), (tmp_path, "older.npz"))]
    assert said[0] == said[1]
    cooled = run(where, "microgpt", "--load", "c.npz", "-n", "6", "-q", "--seed", "5",
                 "--cooling", "0.5")
    assert cooled.returncode == 0 and cooled.stdout.splitlines()[:6] != said[0]


@pytest.mark.slow
def test_load_refuses_flags_that_would_change_it(saved):
    where, _ = saved
    for flags in (["-e", "8"], ["--layer", "2"], ["-g", "genome.json"], ["-d", "names.txt"],
                  ["--lr", "0.1"], ["--retrain"]):
        res = run(where, "microgpt", "--load", "c.npz", *flags)
        assert res.returncode == 2 and "--load" in res.stderr, (flags, res.stderr)
    res = run(where, "microgpt", "--load", "c.npz", "--prefix", "Q")
    assert_one_line_error(res, "--prefix")


def test_save_never_lands_on_the_genome_or_the_names(tmp_path):
    (tmp_path / "names.txt").write_text("anna\nbob\n" * 20)
    (tmp_path / "genome.json").write_text(json.dumps({
        "n_emb": 8, "n_ctx": 8, "n_layer": 1, "n_head": 2, "n_ff_exp": 2, "steps": 5, "lr": 0.01,
        "loss": None, "generation": 0, "evolved": False}))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert_one_line_error(run(tmp_path, "microgpt", "--save", "genome.json"), "genome file")
    assert_one_line_error(run(tmp_path, "microgpt", "-d", "names.txt", "--save", "names.txt"),
                          "training names")
    assert_one_line_error(run(tmp_path, "microgpt", "--save", "nodir/c.npz"), "--save")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# Hydra keeps the winner's mind.

@pytest.mark.slow
def test_hydra_saves_the_winner_that_microgpt_would_train_and_microgpt_wakes_it(tmp_path):
    res = run(tmp_path, "microgpt-hydra", "--population", "4", "--generations", "1", "--cycles",
              "1", "--steps", "20", "--samples", "6", "--seed", "2", "-q")
    assert res.returncode == 0, res.stderr
    assert "genome.npz" in res.stdout
    genome = json.loads((tmp_path / "genome.json").read_text())
    mind = load_creature(tmp_path / "genome.npz")
    assert mind.seed == genome["seed"] and mind.steps_done == 20
    assert mind.val_loss == genome["loss"]          # the winner's evaluation, reproduced

    retrained = run(tmp_path, "microgpt", "--retrain", "--save", "retrained.npz", "-q", "-n", "5")
    assert retrained.returncode == 0, retrained.stderr
    for a, b in zip(arrays(mind), arrays(load_creature(tmp_path / "retrained.npz"))):
        assert a.tobytes() == b.tobytes()           # the same training, bit for bit

    woken = run(tmp_path, "microgpt", "-n", "5")
    assert woken.returncode == 0, woken.stderr
    assert "Woke the creature saved in genome.npz" in woken.stdout
    assert "not retrained" in woken.stdout
    assert names_and_summary(run(tmp_path, "microgpt", "-q", "-n", "5").stdout) == \
        names_and_summary(retrained.stdout)

    other = run(tmp_path, "microgpt", "-n", "2", "--seed", "1")     # another organism: trains
    assert "Training anew" in other.stdout and "Woke" not in other.stdout
    (tmp_path / "genome.npz").write_bytes(b"garbage")
    broken = run(tmp_path, "microgpt", "-n", "2")
    assert broken.returncode == 0 and "cannot be used" in broken.stdout
