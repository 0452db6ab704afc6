"""The `microgpt` command, run as a new user would: the console script in empty directories (its
parser and help text also in-process, for the quick subset)."""
import json
import shutil
import subprocess
import sys

import pytest

from microgpt import cli

SEED_GENOME = {"n_emb": 6, "n_ctx": 5, "n_layer": 3, "n_head": 2, "n_ff_exp": 4, "steps": 2000,
               "lr": 0.02, "loss": 1.3779, "generation": 99, "evolved": True}


def microgpt(cwd, *args):
    exe = shutil.which("microgpt")
    assert exe, "the microgpt console script is not installed"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_one_line_error(res, *words):
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for w in words:
        assert w in lines[0]


def test_primordial_run_in_an_empty_directory(tmp_path):
    res = microgpt(tmp_path, "--steps", "30")
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[0] == "=== MicroGPT [Primordial] ===" and "microgpt-hydra" in res.stdout
    summary = out[-1]
    assert summary.startswith("Organism: default with steps=30 | Loss: ") and "Val loss: " in summary
    assert "Params: 4192" in summary
    names = out[out.index("") + 1: -2]
    assert len(names) == 10
    assert list(tmp_path.iterdir()) == []           # nothing written
    assert res.stderr == ""                         # no progress bar: stderr is not a terminal


def test_same_seed_same_names(tmp_path):
    a = microgpt(tmp_path, "--steps", "20", "--seed", "5", "-q")
    b = microgpt(tmp_path, "--steps", "20", "--seed", "5", "-q")
    assert a.returncode == 0 and a.stdout == b.stdout
    assert len(a.stdout.splitlines()) == 12         # quiet: 10 names, a blank, the summary


def test_evolved_run_from_the_seeds_genome(tmp_path):
    (tmp_path / "genome.json").write_text(json.dumps(SEED_GENOME))
    res = microgpt(tmp_path, "--steps", "200", "-n", "3")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("=== MicroGPT [Evolved] ===")
    assert "generation 99" in res.stdout and "1.3779" in res.stdout
    assert "Emb:6 Head:2 Lay:3 Ctx:5" in res.stdout and "Steps:200" in res.stdout
    assert "Organism: evolved" in res.stdout and "Params: 1650" in res.stdout
    assert json.loads((tmp_path / "genome.json").read_text()) == SEED_GENOME


def test_genome_flag_and_flags_override_the_genome(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps(SEED_GENOME))
    res = microgpt(tmp_path, "--genome", "other.json", "-e", "8", "-y", "1", "-s", "10", "-n", "1")
    assert res.returncode == 0, res.stderr
    assert "Emb:8 Head:2 Lay:1 Ctx:5" in res.stdout and "[Evolved]" in res.stdout


@pytest.mark.parametrize("text, words", [
    ('{"n_emb": 6,', ["genome.json", "not valid JSON"]),
    ("<<<<<<< HEAD\n{}\n=======\n{}\n>>>>>>> x\n", ["genome.json", "merge conflict"]),
    (json.dumps(dict(SEED_GENOME, n_head=4)), ["genome.json", "divisible"]),
    (json.dumps(dict(SEED_GENOME, steps=10**9)), ["genome.json", "steps"]),
    (json.dumps(dict(SEED_GENOME, lr=-1)), ["genome.json", "lr"]),
    ("[]", ["genome.json", "JSON object"]),
])
def test_a_bad_genome_is_one_line_and_left_alone(tmp_path, text, words):
    path = tmp_path / "genome.json"
    path.write_text(text)
    res = microgpt(tmp_path)
    assert_one_line_error(res, *words)
    assert path.read_text() == text and [p.name for p in tmp_path.iterdir()] == ["genome.json"]


def test_bad_datasets_and_missing_files(tmp_path):
    assert_one_line_error(microgpt(tmp_path, "--data", "absent.txt"), "absent.txt", "no such file")
    (tmp_path / "empty.txt").write_text("\n\n")
    assert_one_line_error(microgpt(tmp_path, "--data", "empty.txt"), "empty.txt", "empty")
    assert_one_line_error(microgpt(tmp_path, "--genome", "nope.json"), "nope.json", "no such file")


def test_custom_dataset(tmp_path):
    (tmp_path / "pets.txt").write_text("rex\nfido\nmax\nbella\n")
    res = microgpt(tmp_path, "--data", "pets.txt", "-s", "20", "-q", "-n", "3")
    assert res.returncode == 0, res.stderr
    assert set("".join(res.stdout.splitlines()[:3])) <= set("rexfidomaxbella")


BAD_FLAGS = [["--steps", "0"], ["--steps", "ten"], ["--lr", "-1"], ["--lr", "nan"], ["--head", "5"],
             ["--emb", "100000"], ["--temperature", "0"], ["--temperature", "11"], ["--cooling", "0"],
             ["--cooling", "3"], ["--cooling", "inf"], ["--bogus"]]


@pytest.mark.parametrize("args", BAD_FLAGS)
def test_bad_flags_are_usage_errors_in_process(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        cli.main(args)
    assert stop.value.code == 2 and "usage: microgpt" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("args", BAD_FLAGS)
def test_bad_flags_are_usage_errors(tmp_path, args):
    res = microgpt(tmp_path, *args)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "usage: microgpt" in res.stderr


HELP_WORDS = ("Primordial", "microgpt-hydra", "genome.json", "Evolved", "--temperature")


def test_help_text_tells_the_lifecycle():
    text = cli.build_parser().format_help()
    assert all(word in text for word in HELP_WORDS)


@pytest.mark.slow
def test_help_tells_the_lifecycle(tmp_path):
    res = microgpt(tmp_path, "--help")
    assert res.returncode == 0
    for word in HELP_WORDS:
        assert word in res.stdout


def test_python_dash_m_runs_the_installed_package(tmp_path):
    res = subprocess.run([sys.executable, "-c", "import microgpt, sys; print(microgpt.__file__)"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert "site-packages" in res.stdout


def test_a_closed_stdout_is_not_an_error(tmp_path):
    exe = shutil.which("microgpt")
    res = subprocess.run(f"'{exe}' --steps 5 | head -1", shell=True, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.stdout.strip() == "=== MicroGPT [Primordial] ===" and res.stderr == ""


def test_the_genomes_temperature_cooling_and_seed_are_used_and_flags_override_them(tmp_path):
    genome = dict(SEED_GENOME, steps=30, temperature=1.5, cooling=0.7, seed=77)
    (tmp_path / "genome.json").write_text(json.dumps(genome))
    res = microgpt(tmp_path, "-n", "4")
    assert res.returncode == 0, res.stderr
    assert "T:1.50 Cool:0.70 Seed:77" in res.stdout and "Organism: evolved |" in res.stdout
    flags = microgpt(tmp_path, "-n", "4", "-q", "--seed", "77", "-t", "1.5", "--cooling", "0.7")
    assert flags.stdout.splitlines()[:4] == res.stdout.splitlines()[-6:-2]   # the same names
    other = microgpt(tmp_path, "-n", "4", "-q", "--seed", "78", "-t", "2", "--cooling", "1")
    assert other.returncode == 0
    assert "Organism: evolved with temperature=2.0, cooling=1.0, seed=78 |" in other.stdout


def test_prefix_and_top_k_flags(tmp_path):
    res = microgpt(tmp_path, "-s", "30", "-n", "4", "-q", "--prefix", "ka", "--top-k", "3")
    assert res.returncode == 0, res.stderr
    assert all(n.startswith("ka") for n in res.stdout.splitlines()[:4])
    assert_one_line_error(microgpt(tmp_path, "-s", "3", "--prefix", "k9"), "--prefix", "'9'")
    # a prefix that fills the context leaves the creature nothing to say
    assert_one_line_error(microgpt(tmp_path, "-s", "3", "--ctx", "4", "--prefix", "kath"),
                          "--prefix", "context of 4")
    assert microgpt(tmp_path, "--top-k", "0").returncode == 2
