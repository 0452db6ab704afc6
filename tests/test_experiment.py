"""The scripting API: random genomes, the heads by name, one evaluation at some voices."""
import subprocess
import sys

import pytest

import microgpt
from microgpt.genome import check_genes


def test_random_genomes_are_valid_and_reproducible():
    for space in ("seed", "extended"):
        g = microgpt.random_genome(3, space)
        assert g == microgpt.random_genome(3, space)
        check_genes(g)
        assert set(g) == {"n_emb", "n_ctx", "n_layer", "n_head", "n_ff_exp", "steps", "lr",
                          "temperature", "cooling"}
    assert microgpt.random_genome(3)["n_ctx"] == microgpt.TrainingConfig.n_ctx
    with pytest.raises(ValueError, match="space"):
        microgpt.random_genome(3, "wide")
    assert [g.name for g in microgpt.SPACE][:4] == ["n_emb", "n_head", "n_layer", "lr"]


def test_evaluate_scores_the_names_microgpt_prints_and_each_voice():
    genome = dict(microgpt.random_genome(1), steps=20)
    heads = microgpt.get_heads("weaver,mirror,spark,origin")
    out = microgpt.evaluate(genome, seed=5, samples=12, voices=[0.8, (1.5, 0.8)], heads=heads)
    assert len(out["names"]) == 12 and all(out["names"])
    assert set(out["scores"]) == {"Weaver", "Mirror", "Spark", "Origin"}
    assert out["scores"]["Origin"] == -out["val_loss"]
    assert [v["voice"] for v in out["voices"]] == [0.8, (1.5, 0.8)]
    assert all(len(v["names"]) == 12 for v in out["voices"])
    for v in out["voices"]:
        assert v["scores"]["Weaver"] == heads[0].score(v["names"])
    # the same names the command prints for that genome and seed
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.json"
        path.write_text(json.dumps(genome))
        printed = subprocess.run([str(Path(sys.executable).parent / "microgpt"), "-g", str(path),
                                  "--seed", "5", "-n", "12", "-q"], capture_output=True, text=True,
                                 cwd=tmp, check=True).stdout
    assert printed.split("\n\nOrganism:")[0].splitlines() == out["names"]
