"""The store and --resume: a run killed at any moment continues to the genome.json it would have
written, byte for byte; bad store files are refused untouched; runs share a store; no import cycle.
"""
import ast
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import microgpt
from microgpt.store import SCHEMA_VERSION, Store, StoreError

BIN = Path(sys.executable).parent
HYDRA = str(BIN / "microgpt-hydra")
RUN = ["--population", "4", "--generations", "2", "--cycles", "2", "--steps", "40", "--samples", "6",
       "--seed", "21", "-q"]


def hydra(cwd, *args, timeout=300):
    return subprocess.run([HYDRA, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def evaluations(cwd):
    path = Path(cwd) / "experiments" / "microgpt.db"
    if not path.exists():
        return 0
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute("SELECT count(*) FROM evaluations").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def kill_after(cwd, args, count):
    """Start microgpt-hydra, SIGKILL it once the store holds count evaluations."""
    proc = subprocess.Popen([HYDRA, *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while evaluations(cwd) < count:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    time.sleep(0.3)                       # its workers die with it


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The genome.json of the uninterrupted run."""
    cwd = tmp_path_factory.mktemp("whole")
    res = hydra(cwd, *RUN, "--workers", "2")
    assert res.returncode == 0, res.stderr
    return (cwd / "genome.json").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("before, after", [("2", "1"), ("1", "2")])
def test_a_killed_run_resumes_to_the_same_genome(tmp_path, reference, before, after):
    kill_after(tmp_path, [*RUN, "--workers", before], 9)
    assert not (tmp_path / "genome.json").exists()
    done = evaluations(tmp_path)
    res = hydra(tmp_path, "--resume", "--workers", after, "-q")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "genome.json").read_bytes() == reference
    logs = "".join(p.read_text() for p in (tmp_path / "experiments").glob("*.log"))
    assert f"{done} evaluations recalled" in logs or f"{done} evaluation recalled" in logs


@pytest.mark.slow
def test_killed_twice_resumed_twice(tmp_path, reference):
    kill_after(tmp_path, [*RUN, "--workers", "2"], 5)
    kill_after(tmp_path, ["--resume", "--workers", "2"], 20)
    res = hydra(tmp_path, "--resume", "1", "--workers", "2", "-q")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "genome.json").read_bytes() == reference
    listing = hydra(tmp_path, "--list")
    assert listing.returncode == 0
    assert "completed" in listing.stdout.splitlines()[1]
    again = hydra(tmp_path, "--resume", "1")                  # complete: nothing to do
    assert again.returncode == 0 and "complete" in again.stdout
    assert (tmp_path / "genome.json").read_bytes() == reference


@pytest.mark.slow
def test_resuming_checks_the_run(tmp_path):
    (tmp_path / "names.txt").write_text("emma\nava\nmia\nzoe\nliam\nnoah\nella\nlily\n")
    kill_after(tmp_path, [*RUN, "--workers", "1", "--data", "names.txt"], 3)
    conflict = hydra(tmp_path, "--resume", "--seed", "22")
    assert conflict.returncode == 2 and "--seed 22 conflicts with run 1" in conflict.stderr
    (tmp_path / "names.txt").write_text("emma\nava\n")
    changed = hydra(tmp_path, "--resume")
    assert changed.returncode == 1 and "changed since run 1" in changed.stderr
    assert len(changed.stderr.strip().splitlines()) == 1
    none = hydra(tmp_path, "--resume", "7")
    assert none.returncode == 1 and "no run 7" in none.stderr


@pytest.mark.parametrize("content, message", [
    (b"just some text, not a database\n", "not an SQLite database"),
    ("foreign", "not a microgpt store"),
    ("newer", "newer microgpt"),
])
def test_a_bad_store_is_refused_untouched(tmp_path, content, message):
    path = tmp_path / "store.db"
    if content == "foreign":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE songs (title TEXT)")
        db.commit()
        db.close()
    elif content == "newer":
        Store(path).close()
        db = sqlite3.connect(path)
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
        db.commit()
        db.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=message):
        Store(path)
    res = hydra(tmp_path, *RUN, "--store", "store.db")
    assert res.returncode == 1 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before and not (tmp_path / "genome.json").exists()


@pytest.mark.slow
def test_two_runs_at_once_share_a_store(tmp_path):
    procs = [subprocess.Popen([HYDRA, *RUN[:-3], "--seed", str(s), "-q", "--workers", "1",
                               "--out", f"g{s}.json"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    db = sqlite3.connect(tmp_path / "experiments" / "microgpt.db")
    rows = db.execute("SELECT runs.seed, runs.status, count(*) FROM runs JOIN evaluations"
                      " ON evaluations.run_id = runs.id GROUP BY runs.id ORDER BY runs.seed").fetchall()
    db.close()
    assert [(seed, status) for seed, status, _ in rows] == [(1, "completed"), (2, "completed")]
    for seed, _, count in rows:
        genome = json.loads((tmp_path / f"g{seed}.json").read_text())
        assert genome["run_seed"] == seed and count > 20
        assert genome["microgpt"] == microgpt.__version__          # the version that wrote it


def test_the_package_has_no_import_cycle():
    package = Path(microgpt.__file__).parent
    graph = {}
    for path in package.glob("*.py"):
        name = f"microgpt.{path.stem}" if path.stem != "__init__" else "microgpt"
        tree = ast.parse(path.read_text())
        graph[name] = {node.module for node in ast.walk(tree)
                       if isinstance(node, ast.ImportFrom) and node.module
                       and node.module.startswith("microgpt.")}
    visiting, done = set(), set()

    def visit(module, trail):
        assert module not in visiting, f"import cycle: {' -> '.join(trail + [module])}"
        if module in done or module not in graph:
            return
        visiting.add(module)
        for dep in graph[module]:
            visit(dep, trail + [module])
        visiting.discard(module)
        done.add(module)

    for module in graph:
        visit(module, [])
    # the commands are the top: nothing imports them (microgpt-hydra borrows microgpt's argument types)
    commands = {"microgpt.cli", "microgpt.hydra_cli"}
    users = {m for m, deps in graph.items() if deps & commands} - {"microgpt.hydra_cli"}
    assert not users and graph["microgpt.hydra_cli"] & commands == {"microgpt.cli"}


@pytest.mark.slow
def test_the_store_keeps_the_front_the_scoring_and_the_cost(tmp_path):
    res = hydra(tmp_path, *RUN, "--workers", "1")
    assert res.returncode == 0, res.stderr
    store = Store(tmp_path / "experiments" / "microgpt.db")
    try:
        run = store.run(1)
        assert run["scoring"] == "counted"
        front = store.front(1)
        assert front and all(set(f["scores"]) == {"Weaver", "Mirror", "Spark"} for f in front)
        # none of the front beats another on every head
        for f in front:
            for g in front:
                assert not (all(g["scores"][h] >= f["scores"][h] for h in f["scores"])
                            and g["scores"] != f["scores"])
        evaluations, steps = store.training_steps(1)
        assert evaluations == len(store.recall(1)) and steps == 40 * evaluations
        assert store.runs()[0]["front"] == len(front)
    finally:
        store.close()
    listed = hydra(tmp_path, "--list")
    assert "front" in listed.stdout.splitlines()[0]
    assert f"{len(front):>5}" in listed.stdout.splitlines()[1]


def test_a_schema_1_store_is_migrated_its_runs_scored_by_the_mean(tmp_path):
    path = tmp_path / "old.db"
    Store(path).close()
    db = sqlite3.connect(path)                # make it what microgpt 0.1 wrote
    to_schema_2(db)
    db.execute("DROP TABLE front")
    db.execute("ALTER TABLE runs DROP COLUMN scoring")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.execute("INSERT INTO runs (started, status, mode, heads, seed, population, generations,"
               " cycles, steps, samples, data_sha256, argv, out) VALUES"
               " ('2026-01-01 00:00:00', 'completed', 'hydra', '[\"Weaver\"]', 1, 3, 1, 1, 5, 5,"
               " 'x', '[]', 'genome.json')")
    db.commit()
    db.close()
    store = Store(path)
    try:
        assert store.run(1)["scoring"] == "mean" and store.front(1) == []
        assert store.db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
    finally:
        store.close()


def to_schema_2(db):
    """Make a new store what microgpt 0.2.0 wrote: no champions, no start, end, worker or stage."""
    db.execute("DROP TABLE champions")
    for column in ("started", "ended", "worker", "stage"):
        db.execute(f"ALTER TABLE evaluations DROP COLUMN {column}")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def test_a_schema_2_store_is_read_as_it_is_and_migrated_when_written(tmp_path):
    path = tmp_path / "old.db"
    Store(path).close()
    db = sqlite3.connect(path)
    to_schema_2(db)
    db.commit()
    db.close()
    store = Store(path, readonly=True)            # read-only: read as schema 2, not changed
    try:
        assert store.version == 2 and store.champions(1) == []
    finally:
        store.close()
    store = Store(path)
    try:
        assert store.version == SCHEMA_VERSION and store.champions(1) == []
        columns = {r[1] for r in store.db.execute("PRAGMA table_info(evaluations)")}
        assert {"started", "ended", "worker", "stage"} <= columns
    finally:
        store.close()


@pytest.mark.slow
def test_a_resumed_run_keeps_its_scoring(tmp_path):
    kill_after(tmp_path, [*RUN, "--workers", "1", "--scoring", "mean"], 3)
    conflict = hydra(tmp_path, "--resume", "--scoring", "counted")
    assert conflict.returncode == 2 and "--scoring counted conflicts with run 1" in conflict.stderr
    resumed = hydra(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    db = sqlite3.connect(tmp_path / "experiments" / "microgpt.db")
    assert db.execute("SELECT scoring FROM runs").fetchone()[0] == "mean"
    db.close()


def test_the_report_reads_the_store_through_its_methods_only():
    # the typed boundary: the report asks the store for a run's evaluations and Gatherings and
    # writes no SQL of its own
    import inspect

    from microgpt import report

    source = inspect.getsource(report)
    assert "SELECT" not in source and ".execute(" not in source


def test_evaluations_come_back_in_the_runs_order_and_bad_rows_are_skipped(tmp_path):
    res = hydra(tmp_path, *RUN, "--workers", "1")
    assert res.returncode == 0, res.stderr
    path = tmp_path / "experiments" / "microgpt.db"
    db = sqlite3.connect(path)
    db.execute("UPDATE evaluations SET scores = 'not json' WHERE organism = 'c1g1-Weaver-0'")
    db.commit()
    db.close()
    store = Store(path, readonly=True)
    try:
        kept, skipped = store.evaluations(store.run(1))
        order = [(e.cycle, e.generation, e.head, e.idx, e.trial) for e in kept]
        total = store.db.execute("SELECT count(*) FROM evaluations").fetchone()[0]
        assert order == sorted(order) and len(kept) + 1 == total
        assert len(skipped) == 1 and "c1g1-Weaver-0" in skipped[0] and "scores" in skipped[0]
        assert {g["cycle"] for g in store.gatherings(1)} == {1}
    finally:
        store.close()
