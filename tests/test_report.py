"""`microgpt-hydra report`: every kind of run drawn from the store, the PNGs and a page that refers
only to what it embeds, and the page rendered in a real headless browser."""
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import hydra_faults
import pytest

from microgpt import hydra_cli

pytest.importorskip("matplotlib", reason="the report needs matplotlib (microgpt-hydra[report])")

TINY = ["--population", "3", "--generations", "2", "--cycles", "2", "--steps", "5", "--samples", "4",
        "--workers", "2", "-q"]
HYDRA = str(Path(sys.executable).parent / "microgpt-hydra")
FIGURES = ["fitness", "loss", "genes", "lineage", "time"]


def evolve(tmp_path, *args, evaluate=hydra_faults.fake_evaluate):
    """A run with the fake evaluation, in process: its run id."""
    argv = [*TINY, *args]
    parser = hydra_cli.build_hydra_parser()
    assert hydra_cli.run_hydra(parser.parse_args(argv), parser, argv, evaluate=evaluate) == 0
    db = sqlite3.connect(tmp_path / "experiments" / "microgpt.db")
    run_id = db.execute("SELECT max(id) FROM runs").fetchone()[0]
    db.close()
    return run_id


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def check_report(directory, figures=FIGURES):
    page = (directory / "report.html").read_text()
    for stem in figures:
        assert png_size(directory / f"{stem}.png") == (900, 450)
        assert f'id="{stem}"' in page
    # self-contained: every src is a data: URL, nothing is fetched
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', page))
    assert "http://" not in page and "https://" not in page and "<link" not in page
    return page


@pytest.fixture
def runs_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_a_hydra_run_and_two_compared(runs_here, capsys):
    first = evolve(runs_here, "--seed", "1", "--out", "g1.json")
    second = evolve(runs_here, "--seed", "2", "--out", "g2.json")
    capsys.readouterr()
    assert hydra_cli.main(["report"]) == 0                  # the newest
    out = capsys.readouterr().out
    assert f"Run {second}: completed" in out and "champion per generation" in out
    assert "The winner's lineage" in out
    check_report(runs_here / "experiments" / f"report-{second}")
    assert hydra_cli.main(["report", str(first), str(second), "--out", "both"]) == 0
    check_report(runs_here / "both", FIGURES + ["compare"])


@pytest.mark.parametrize("kind, args", [
    ("one generation", ["--cycles", "1", "--generations", "1"]),
    ("one head", ["--heads", "mirror"]),
    ("classic", ["--classic", "--generations", "2", "--population", "3"]),
])
@pytest.mark.slow
def test_every_kind_of_run(runs_here, capsys, kind, args):
    args = [a for a in args]
    run_id = evolve(runs_here, "--seed", "3", *args)
    assert hydra_cli.main(["report", str(run_id), "--out", "r"]) == 0
    assert "Report: r/report.html" in capsys.readouterr().out.replace(os.sep, "/")
    check_report(runs_here / "r")


@pytest.mark.slow
def test_the_lineage_ends_with_what_the_final_judgement_changed(runs_here, capsys):
    import json

    from microgpt import report
    from microgpt.store import Store

    run_id = evolve(runs_here, "--seed", "5")
    db_path = runs_here / "experiments" / "microgpt.db"

    def lineage_with(**genes):
        """The lineage when the written winner has the birth's genes, changed by genes."""
        store = Store(db_path)
        try:
            run = report.load_run(store, run_id)
            birth = report._winner_birth(run)
            written = {**json.loads(run.row["winner_genome"]), **birth["genome"], **genes}
            store.db.execute("UPDATE runs SET winner_genome = ? WHERE id = ?",
                             (json.dumps(written), run_id))
            store.db.commit()
            run = report.load_run(store, run_id)
            return birth, report.lineage(run), report.summary(run)
        finally:
            store.close()

    birth, chain, lines = lineage_with()
    assert not any(a.get("final") for a in chain)
    assert not any("final judgement" in line for line in lines)
    assert chain[-1]["organism"] == birth["organism"]

    birth, chain, lines = lineage_with(temperature=birth["genome"]["temperature"] * 0.5,
                                       n_ctx=birth["genome"]["n_ctx"] + 1)
    final = chain[-1]
    assert final["final"] and final["changed"] == ["temperature", "n_ctx"]
    assert chain[-2]["organism"] == birth["organism"]
    assert final["generation"] > chain[-2]["generation"]
    assert any(line.strip().startswith("final judgement:") and "changed temperature, n_ctx" in line
               and "trials; standing " in line for line in lines)
    assert hydra_cli.main(["report", str(run_id), "--out", "r"]) == 0
    check_report(runs_here / "r")


@pytest.mark.slow
def test_failed_and_interrupted_runs_are_drawn_as_they_are(runs_here, capsys):
    import functools

    from microgpt.hydra import derive_seed

    victim = derive_seed(4, 0, 0, "Spark", 1)
    run_id = evolve(runs_here, "--seed", "4",
                    evaluate=functools.partial(hydra_faults.raise_for, victim=victim))
    db = sqlite3.connect(runs_here / "experiments" / "microgpt.db")
    # cut the run short, as a SIGKILL after its first cycle would have
    db.execute("DELETE FROM evaluations WHERE run_id = ? AND cycle > 1", (run_id,))
    db.execute("UPDATE runs SET status = 'interrupted', winner = NULL, winner_genome = NULL"
               " WHERE id = ?", (run_id,))
    db.commit()
    db.close()
    capsys.readouterr()
    assert hydra_cli.main(["report", "--out", "r"]) == 0
    out = capsys.readouterr().out
    assert "interrupted" in out and "No winner yet" in out
    page = check_report(runs_here / "r")
    assert "partial" in page


def test_a_report_without_a_store_or_a_run_is_one_line(tmp_path):
    res = subprocess.run([HYDRA, "report"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 1 and "no store" in res.stderr and len(res.stderr.splitlines()) == 1
    res = subprocess.run([HYDRA, "report", "1", "2", "3"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 2


def browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.slow
@pytest.mark.skipif(browser() is None, reason="no headless Chromium here (.ci/run installs Debian's)")
def test_the_page_renders_every_figure_in_a_real_browser(runs_here):
    evolve(runs_here, "--seed", "5")
    assert hydra_cli.main(["report", "--out", "r"]) == 0
    page = (runs_here / "r" / "report.html").resolve()
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
             "--window-size=1200,900", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120).stdout
    sizes = dict(re.findall(r'<img id="(\w+)"[^>]*data-rendered="([\d.]+x[\d.]+)"', dom))
    assert set(sizes) == set(FIGURES), dom[:500]
    for stem, size in sizes.items():
        width, height = (float(x) for x in size.split("x"))
        assert width > 100 and height > 50, (stem, size)


@pytest.mark.slow
def test_report_out_that_is_a_file(runs_here):
    evolve(runs_here, "--seed", "6")
    (runs_here / "taken").write_text("mine")
    res = subprocess.run([HYDRA, "report", "--out", "taken"], cwd=runs_here, capture_output=True,
                         text=True)
    assert res.returncode == 1 and "is a file, not a directory" in res.stderr
    assert (runs_here / "taken").read_text() == "mine"


@pytest.mark.slow
def test_without_matplotlib_the_report_says_how_to_install_it(runs_here, monkeypatch, capsys):
    evolve(runs_here, "--seed", "7")
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # as if it were not installed
    assert hydra_cli.main(["report"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "microgpt-hydra report: error: the report needs matplotlib: " \
                          "pip install 'microgpt-hydra[report]' (in a checkout: pip install '.[report]')"
