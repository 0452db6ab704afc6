"""`microgpt-hydra report`: every kind of run drawn from the store, the PNGs and a page that refers
only to what it embeds, and the page rendered in a real headless browser."""
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import hydra_faults
import pytest

from microgpt import hydra_cli

pytest.importorskip("matplotlib", reason="the report needs matplotlib (microgpt-hydra[report])")

TINY = ["--population", "3", "--generations", "2", "--cycles", "2", "--steps", "5", "--samples", "4",
        "--workers", "2", "-q"]
HYDRA = str(Path(sys.executable).parent / "microgpt-hydra")
FIGURES = ["fitness", "front", "importance", "slices", "voices", "lineage", "genes", "loss",
           "timeline", "time"]


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
    check_report(runs_here / "both", FIGURES + ["compare", "compare-front"] + [f"{f}-2" for f in FIGURES])


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
            written = {**json.loads(run.row["winner_genome"]), **birth.genome, **genes}
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
    assert chain[-1]["organism"] == birth.organism

    birth, chain, lines = lineage_with(temperature=birth.genome["temperature"] * 0.5,
                                       n_ctx=birth.genome["n_ctx"] + 1)
    final = chain[-1]
    assert final["final"] and final["changed"] == ["temperature", "n_ctx"]
    assert chain[-2]["organism"] == birth.organism
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


def page_data(directory):
    """The numbers the page's figures draw (its embedded JSON), one dict per run."""
    import json

    page = (directory / "report.html").read_text()
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def console_champions(log):
    """[(generation, head, score)] from a run's log: each "[Head] Champion: ... Score: x" line
    under "Cycle c/C · Generation g/G", generations counted through the run from 1, up to the
    final judgement."""
    out, generation = [], 0
    for line in log.splitlines():
        if "final judgement" in line.lower() or "Hydra Ascended" in line:
            break
        if re.match(r"Cycle \d+/\d+ · Generation \d+/\d+", line):
            generation += 1
        found = re.search(r"\[(\w+)\]\s+Champion:.*Score: ([-\d.]+)", line)
        if found and generation:
            out.append((generation, found.group(1), float(found.group(2))))
    return out


@pytest.mark.slow
def test_the_champions_drawn_are_the_consoles_and_the_stores(runs_here):
    from microgpt.store import Store

    run_id = evolve(runs_here, "--seed", "8")
    assert hydra_cli.main(["report", "--out", "r"]) == 0
    data, = page_data(runs_here / "r")
    drawn = {(c["generation"], c["head"]): c for c in data["champions"]}
    store = Store(runs_here / "experiments" / "microgpt.db", readonly=True)
    try:
        stored = store.champions(run_id)
        generations = store.run(run_id)["generations"]
        first = [e for e in store.evaluations(store.run(run_id))[0] if e.stage == "primordial"]
    finally:
        store.close()
    assert stored and len(drawn) == len(stored)
    for c in stored:
        d = drawn[((c["cycle"] - 1) * generations + c["generation"], c["head"])]
        assert d["organism"] == c["organism"] and d["score"] == c["scores"][c["head"]] and d["stored"]
    log = next((runs_here / "experiments").glob("hydra-*.log")).read_text()
    printed = console_champions(log)
    per_generation = [p for p in printed if p[0] <= max(g for g, _ in drawn)]
    assert len(per_generation) == len(drawn)
    for generation, head, shown in per_generation:
        assert f"{drawn[(generation, head)]['score']:.2f}" == f"{shown:.2f}", (generation, head)
    # the winner and the baselines are in what the figures draw
    verdict = data["verdict"]
    assert verdict["winner"]["organism"] == json.loads((runs_here / "genome.json").read_text())["organism"]
    for head, numbers in verdict["heads"].items():
        assert numbers["winner"] is not None and numbers["random median"] is not None
        assert sorted(data["baseline"]["random first generation"][head])
    assert set(data["importance"]) >= {"n_emb", "lr", "temperature"}
    assert data["front"]
    # the primordial creature: every gene at its default, its mean over the store's 3 trials, as
    # the console printed it, in the verdict and the baselines
    assert [e.organism for e in first] == ["primordial", "primordial/t2", "primordial/t3"]
    assert all(e.head == "" and e.genome["n_emb"] == 16 and e.genome["n_layer"] == 1
               for e in first)
    line = next(x for x in log.splitlines() if x.startswith("Primordial (the defaults), 3 trials:"))
    for head, numbers in verdict["heads"].items():
        mean = sum(e.scores[head] for e in first) / 3
        assert numbers["primordial"] == pytest.approx(mean, abs=1e-12)
        assert data["baseline"]["primordial creature"][head] == numbers["primordial"]
        assert f"{head} {mean:.2f}" in line
        # ... and not among the random first generation (3 heads x 3 organisms)
        assert len(data["baseline"]["random first generation"][head]) == 9
    assert verdict["primordial trials"] == 3


@pytest.mark.slow
@pytest.mark.skipif(browser() is None, reason="no headless Chromium here (.ci/run installs Debian's)")
def test_the_page_has_no_horizontal_overflow_at_1280_pixels(runs_here):
    first = evolve(runs_here, "--seed", "9", "--out", "g1.json")
    second = evolve(runs_here, "--seed", "10", "--out", "g2.json")
    assert hydra_cli.main(["report", str(first), str(second), "--out", "r"]) == 0
    page = (runs_here / "r" / "report.html").resolve()
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=10000",
             "--window-size=1280,900", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120).stdout
    assert 'data-overflow="false"' in dom, dom[:300]
    verdict = dom.index('id="verdict"')
    assert verdict < dom.index('<img id="fitness"') < dom.index("<h2>Tables</h2>")


@pytest.mark.slow
def test_report_watch_follows_a_running_run_and_stops_when_it_ends(tmp_path):
    """A real run in one process, `report --watch` in another: the page is written while the run
    goes on (reloading itself), the run is not held up, and the watch exits when the run ends."""
    run = subprocess.Popen([str(Path(sys.executable).parent / "microgpt-hydra"), "--population",
                            "3", "--generations", "3", "--cycles", "2", "--steps", "60",
                            "--samples", "20", "--workers", "1", "-q", "--seed", "11"],
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        store = tmp_path / "experiments" / "microgpt.db"
        for _ in range(400):                                   # until the run is in the store
            try:
                db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
                try:
                    if db.execute("SELECT count(*) FROM runs").fetchone()[0]:
                        break
                finally:
                    db.close()
            except sqlite3.Error:
                pass
            time.sleep(0.05)
        watch = subprocess.run([HYDRA, "report", "--watch", "0.5", "--out", "live"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=300)
        assert run.wait(timeout=300) == 0, run.stderr.read()
    finally:                                               # never left running
        run.kill()
        run.wait()
    assert watch.returncode == 0, watch.stderr
    assert "evaluations so far" in watch.stdout           # written at least once while it ran
    page = (tmp_path / "live" / "report.html").read_text()
    assert 'http-equiv="refresh"' not in page and "completed" in watch.stdout
    assert not list((tmp_path / "live").glob("report.2*.html"))   # its own pages not kept


def test_report_watch_takes_seconds():
    res = subprocess.run([HYDRA, "report", "--watch", "0"], capture_output=True, text=True)
    assert res.returncode == 2 and "from 0.5 to 3600 seconds" in res.stderr
