"""genome.json: round trips, the seed's own genome, and every way a genome can be bad."""
import json
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgpt.genome import GenomeError, load_genome, save_genome, validate_genome

SEED_GENOME = {"n_emb": 6, "n_ctx": 5, "n_layer": 3, "n_head": 2, "n_ff_exp": 4, "steps": 2000,
               "lr": 0.02, "loss": 1.3779, "generation": 99, "evolved": True}


def test_the_seeds_genome_loads(tmp_path):
    path = tmp_path / "genome.json"
    path.write_text(json.dumps(SEED_GENOME))
    assert load_genome(path) == SEED_GENOME


def test_round_trip_keeps_extra_keys(tmp_path):
    genome = dict(SEED_GENOME, head="Weaver", fitness={"Weaver": 1.5}, seed=7)
    path = tmp_path / "genome.json"
    save_genome(path, genome)
    assert load_genome(path) == genome
    assert [p.name for p in tmp_path.iterdir()] == ["genome.json"]   # no temp file left behind


@given(n_head=st.sampled_from([1, 2, 4]), mult=st.integers(1, 16), n_layer=st.integers(1, 8),
       steps=st.integers(1, 100_000), lr=st.floats(1e-6, 10.0))
def test_round_trip_any_valid_genome(tmp_path_factory, n_head, mult, n_layer, steps, lr):
    genome = dict(SEED_GENOME, n_emb=n_head * mult, n_head=n_head, n_layer=n_layer, steps=steps,
                  lr=lr)
    path = tmp_path_factory.mktemp("g") / "genome.json"
    save_genome(path, genome)
    assert load_genome(path) == genome


def test_save_replaces_atomically_and_writes_null_for_a_diverged_loss(tmp_path):
    path = tmp_path / "genome.json"
    path.write_text("old")
    save_genome(path, dict(SEED_GENOME, loss=float("nan")))
    assert json.loads(path.read_text())["loss"] is None
    assert load_genome(path)["loss"] is None


def test_save_refuses_an_invalid_genome_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "genome.json"
    path.write_text(json.dumps(SEED_GENOME))
    with pytest.raises(GenomeError):
        save_genome(path, dict(SEED_GENOME, n_head=4))      # 6 is not divisible by 4
    assert json.loads(path.read_text()) == SEED_GENOME


BAD_TEXTS = {
    "not JSON": ("{'n_emb': 6}", "not valid JSON"),
    "truncated": ('{"n_emb": 6,', "not valid JSON"),
    "merge markers": ("<<<<<<< HEAD\n" + json.dumps(SEED_GENOME) + "\n=======\n{}\n>>>>>>> b\n",
                      "merge conflict"),
    "a list": ("[1, 2]", "expected a JSON object"),
    "a number": ("3", "expected a JSON object"),
    "empty file": ("", "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_TEXTS))
def test_bad_files_name_the_file_and_stay_untouched(tmp_path, case):
    text, message = BAD_TEXTS[case]
    path = tmp_path / "genome.json"
    path.write_text(text)
    with pytest.raises(GenomeError, match=message) as info:
        load_genome(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert path.read_text() == text


BAD_FIELDS = [
    ({"n_emb": "16"}, "n_emb must be a whole number"),
    ({"n_emb": 16.0}, "n_emb must be a whole number"),
    ({"n_layer": True}, "n_layer must be a whole number"),
    ({"n_ctx": 0}, "n_ctx must be between 1"),
    ({"n_head": -2}, "n_head must be between 1"),
    ({"n_ff_exp": 0}, "n_ff_exp must be between 1"),
    ({"steps": 0}, "steps must be between 1"),
    ({"steps": 10**12}, "steps must be between"),
    ({"n_emb": 10**6, "n_head": 1}, "n_emb must be between"),
    ({"n_layer": 1000}, "n_layer must be between"),
    ({"n_ctx": 10**5}, "n_ctx must be between"),
    ({"n_emb": 7}, "divisible by n_head"),
    ({"lr": 0}, "lr must be"),
    ({"lr": -0.01}, "lr must be"),
    ({"lr": "0.01"}, "lr must be"),
    ({"lr": float("nan")}, "lr must be"),
    ({"lr": float("inf")}, "lr must be"),
    ({"loss": "low"}, "loss must be a number"),
    ({"generation": -1}, "generation must be"),
    ({"evolved": "yes"}, "evolved must be true or false"),
    ({"temperature": 0}, "temperature must be a number in"),
    ({"temperature": -1.0}, "temperature must be a number in"),
    ({"temperature": 10.5}, "temperature must be a number in"),
    ({"temperature": "hot"}, "temperature must be a number in"),
    ({"temperature": float("nan")}, "temperature must be a number in"),
    ({"temperature": None}, "temperature must be a number in"),
    ({"cooling": 0}, "cooling must be a number in"),
    ({"cooling": 2.5}, "cooling must be a number in"),
    ({"cooling": "slowly"}, "cooling must be a number in"),
    ({"cooling": float("inf")}, "cooling must be a number in"),
    ({"cooling": True}, "cooling must be a number in"),
    ({"seed": -1}, "seed must be a whole number"),
    ({"seed": 2**63}, "seed must be a whole number"),
    ({"seed": 1.5}, "seed must be a whole number"),
]


def test_the_newer_genes_are_optional_and_kept():
    assert not {"temperature", "cooling", "seed"} & set(SEED_GENOME)
    genome = dict(SEED_GENOME, temperature=0.85, cooling=0.7, seed=2**63 - 1)
    assert validate_genome(genome) == genome


@pytest.mark.parametrize("change, message", BAD_FIELDS)
def test_bad_fields_are_named(tmp_path, change, message):
    path = tmp_path / "genome.json"
    text = json.dumps(dict(SEED_GENOME, **change))   # NaN and Infinity as Python's json writes them
    path.write_text(text)
    with pytest.raises(GenomeError, match=message):
        load_genome(path)
    assert path.read_text() == text


def test_a_missing_gene_is_named():
    genome = dict(SEED_GENOME)
    del genome["steps"]
    with pytest.raises(GenomeError, match="missing field steps"):
        validate_genome(genome, "g.json")


def test_unreadable_paths(tmp_path):
    with pytest.raises(GenomeError, match="no such file"):
        load_genome(tmp_path / "absent.json")
    with pytest.raises(GenomeError, match="is a directory"):
        load_genome(tmp_path)
    (tmp_path / "latin1.json").write_bytes(b'{"n_emb": "\xe9"}')
    with pytest.raises(GenomeError, match="not UTF-8"):
        load_genome(tmp_path / "latin1.json")


def test_a_saved_genome_is_readable_by_others(tmp_path):
    path = tmp_path / "genome.json"
    old = os.umask(0o022)
    try:
        save_genome(path, SEED_GENOME)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
