"""The store: every Hydra run and every evaluation, in an embedded SQLite database.

Follows Optuna's storage (`create_study(storage="sqlite:///...", load_if_exists=True)`): the
engine never touches a file; an observer (`Recorder`) writes each evaluation as it finishes, one
transaction each, so a run killed at any moment loses at most what was in flight, and a resumed
run recalls every outcome the store holds. WAL journal and a busy timeout let runs share a store.

Tables, for the `sqlite3` shell as much as for microgpt:
  meta(key, value)            the schema version
  runs(id, started, ended, status, mode, heads, seed, population, generations, cycles, steps,
       samples, data, data_sha256, argv, out, pid, host, winner, winner_loss, winner_genome, reason,
       scoring)
  evaluations(run_id, organism, head, cycle, generation, idx, trial, seed, parent, genome,
       scores, names, names_at, val_loss, final_loss, num_params, seconds, error, attempts, finished)
  gatherings(run_id, cycle, head, organism)   the immigrants each head took in
  front(run_id, organism, genome, scores, trials)   the run's Pareto front across its heads
JSON columns (genome, scores, names, names_at, heads, argv, winner_genome) hold JSON text:
`json_extract(scores, '$.Weaver')` reads one head's score. Cycles and generations count from 1.
"""
import json
import math
import os
import socket
import sqlite3
import stat
import time
from pathlib import Path

from microgpt.evaluators import Outcome
from microgpt.files import kind_of
from microgpt.hydra import Observer, finite_or_none, full_genome

SCHEMA_VERSION = 2          # 2: runs.scoring and the front table
SQLITE_HEADER = b"SQLite format 3\x00"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started TEXT NOT NULL,
    ended TEXT,
    status TEXT NOT NULL,            -- running, interrupted, failed, completed
    mode TEXT NOT NULL,              -- hydra or classic
    heads TEXT NOT NULL,             -- JSON list of head names
    seed INTEGER NOT NULL,
    population INTEGER NOT NULL,
    generations INTEGER NOT NULL,
    cycles INTEGER NOT NULL,
    steps INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    data TEXT,                       -- the names file, NULL for the bundled names
    data_sha256 TEXT NOT NULL,
    argv TEXT NOT NULL,              -- JSON list, as typed
    out TEXT NOT NULL,
    pid INTEGER,
    host TEXT,
    winner TEXT,
    winner_loss REAL,
    winner_genome TEXT,
    reason TEXT,                     -- why it failed or stopped
    scoring TEXT NOT NULL DEFAULT 'mean'   -- how the heads add up names: counted or mean
);
CREATE TABLE evaluations (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    organism TEXT NOT NULL,          -- c<cycle>g<generation>-<Head>-<index>[/t<trial>]
    head TEXT NOT NULL,
    cycle INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    trial INTEGER NOT NULL,          -- 1: its birth, 2, 3, ...: re-judged on a fresh seed
    seed INTEGER NOT NULL,
    parent TEXT,                     -- the champion it is a mutant of
    genome TEXT NOT NULL,
    scores TEXT NOT NULL,            -- JSON {head: score}, null where it failed
    names TEXT,
    names_at TEXT,                   -- JSON list: the names at each tuning temperature
    val_loss REAL,
    final_loss REAL,
    num_params INTEGER,
    seconds REAL,
    error TEXT,
    attempts INTEGER NOT NULL,
    finished TEXT NOT NULL,
    PRIMARY KEY (run_id, organism)
);
CREATE TABLE gatherings (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    cycle INTEGER NOT NULL,
    head TEXT NOT NULL,
    organism TEXT NOT NULL,
    PRIMARY KEY (run_id, cycle, head, organism)
);
CREATE TABLE front (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    organism TEXT NOT NULL,
    genome TEXT NOT NULL,
    scores TEXT NOT NULL,            -- JSON {head: its mean score over the organism's trials}
    trials INTEGER NOT NULL,
    PRIMARY KEY (run_id, organism)
);
"""
# What turns a schema-1 store (before counted heads) into a schema-2 one: its runs were scored
# by the mean, and have no front.
MIGRATE_1_TO_2 = """
ALTER TABLE runs ADD COLUMN scoring TEXT NOT NULL DEFAULT 'mean';
CREATE TABLE IF NOT EXISTS front (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    organism TEXT NOT NULL,
    genome TEXT NOT NULL,
    scores TEXT NOT NULL,
    trials INTEGER NOT NULL,
    PRIMARY KEY (run_id, organism)
)
"""


class StoreError(ValueError):
    """A store that cannot be used; the message names the file and the problem."""


def now():
    return time.strftime("%Y-%m-%d %H:%M:%S")


class Store:
    """A microgpt store at path, created when absent; StoreError for anything else, untouched."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read ({exc.strerror})") from None
        if mode is not None:
            if not stat.S_ISREG(mode):
                raise StoreError(f"{self.path}: is {kind_of(mode)}, not a store")
            with open(self.path, "rb") as f:
                head = f.read(len(SQLITE_HEADER))
            if head and head != SQLITE_HEADER:
                raise StoreError(f"{self.path}: not a microgpt store (not an SQLite database)")
        elif not self.path.parent.is_dir():
            raise StoreError(f"{self.path}: directory {self.path.parent} does not exist")
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self._check_or_create()
            self.db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None

    def _check_or_create(self):
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:                 # a new store; another process may be making it too
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if not self.db.execute("SELECT name FROM sqlite_master").fetchall():
                    for statement in SCHEMA.split(";"):   # (no ';' in the schema's comments)
                        if statement.strip():
                            self.db.execute(statement)
                    self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                                    (str(SCHEMA_VERSION),))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            return
        if "meta" not in tables or "runs" not in tables:
            raise StoreError(f"{self.path}: not a microgpt store (an SQLite database with tables "
                             f"{', '.join(sorted(tables))})")
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row and str(row[0]).isdigit() else None
        if version is None:
            raise StoreError(f"{self.path}: not a microgpt store (no schema version)")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: written by a newer microgpt (store schema {version}; "
                             f"this one reads up to {SCHEMA_VERSION}); upgrade microgpt")
        if version == 1:
            self._migrate()

    def _migrate(self):
        """Bring a schema-1 store to schema 2, in one transaction (another process may be doing
        the same: whoever comes second finds it done)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row and str(row[0]) == "1":
                for statement in MIGRATE_1_TO_2.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self):
        self.db.close()

    # Runs.

    def new_run(self, cfg, mode, heads, data_sha256, argv, out):
        """A new run's id, its status running."""
        cur = self.db.execute(
            "INSERT INTO runs (started, status, mode, heads, seed, population, generations, cycles,"
            " steps, samples, data, data_sha256, argv, out, pid, host, scoring)"
            " VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (now(), mode, json.dumps([h.name for h in heads]), cfg.seed, cfg.population,
             cfg.generations, cfg.cycles, cfg.steps, cfg.samples, cfg.data, data_sha256,
             json.dumps(argv), str(out), os.getpid(), socket.gethostname(), cfg.scoring))
        return cur.lastrowid

    def run(self, run_id):
        """The run's row (a dict); StoreError when there is none."""
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: has no run {run_id}")
        return dict(row)

    def runs(self):
        """Every run, newest first, each with `done` (its evaluations) and `state` (its status,
        with a run whose process is gone shown as interrupted)."""
        rows = self.db.execute(
            "SELECT runs.*, (SELECT count(*) FROM evaluations e WHERE e.run_id = runs.id) AS done,"
            " (SELECT count(*) FROM front f WHERE f.run_id = runs.id) AS front"
            " FROM runs ORDER BY id DESC").fetchall()
        return [dict(r, state=self.state(r)) for r in rows]

    def state(self, run):
        """running, interrupted, failed or completed; a 'running' run whose process on this
        machine is gone (SIGKILL, a crash) is interrupted."""
        if run["status"] == "running" and run["host"] == socket.gethostname() and not alive(run["pid"]):
            return "interrupted"
        return run["status"]

    def latest_unfinished(self):
        """The newest run that did not complete and is not running now; StoreError if none."""
        for run in self.runs():
            if run["state"] in ("interrupted", "failed"):
                return run["id"]
        raise StoreError(f"{self.path}: no interrupted run to resume")

    def claim(self, run_id):
        """Mark run_id running again, in this process (resuming it)."""
        self.db.execute("UPDATE runs SET status = 'running', pid = ?, host = ?, ended = NULL,"
                        " reason = NULL WHERE id = ?", (os.getpid(), socket.gethostname(), run_id))

    def set_winner(self, run_id, genome):
        """Record the run's winner (its genome.json dict)."""
        self.db.execute("UPDATE runs SET winner = ?, winner_loss = ?, winner_genome = ? WHERE id = ?",
                        (genome["organism"], genome["loss"], json.dumps(genome), run_id))

    def set_front(self, run_id, front, heads, steps):
        """Record the run's Pareto front: organisms (each with its genes and trials), none of
        which another organism of the run beats on every head (`microgpt.hydra.pareto_front`)."""
        for o in front:
            scores = {h.name: finite_or_none(o.fitness(h.name)) for h in heads}
            self.db.execute("INSERT OR REPLACE INTO front VALUES (?, ?, ?, ?, ?)",
                            (run_id, o.id, json.dumps(full_genome(o.genome, steps)),
                             json.dumps(scores), len(o.judged())))

    def front(self, run_id):
        """The run's Pareto front as stored: [{organism, genome, scores, trials}]."""
        return [{"organism": r["organism"], "genome": json.loads(r["genome"]),
                 "scores": json.loads(r["scores"]), "trials": r["trials"]}
                for r in self.db.execute("SELECT * FROM front WHERE run_id = ? ORDER BY organism",
                                         (run_id,))]

    def training_steps(self, run_id):
        """(evaluations, training steps) the run has made so far: its cost, each evaluation one
        training of the steps its genome records."""
        row = self.db.execute("SELECT count(*), total(json_extract(genome, '$.steps'))"
                              " FROM evaluations WHERE run_id = ?", (run_id,)).fetchone()
        return row[0], int(row[1])

    def finish(self, run_id, status, reason=None):
        """Set the run's status, its end, and why it stopped (failed or interrupted)."""
        self.db.execute("UPDATE runs SET status = ?, ended = ?, reason = ? WHERE id = ?",
                        (status, now(), reason, run_id))

    # Evaluations.

    def add_evaluation(self, run_id, org, steps):
        """Record a finished evaluation (once: a recalled one is already there)."""
        result = org.result or {}
        self.db.execute(
            "INSERT OR IGNORE INTO evaluations VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, org.id, org.head, org.cycle + 1, org.generation + 1, org.index, org.trial + 1,
             org.seed, (org.of or org).parent, json.dumps(full_genome(org.genome, steps)),
             json.dumps({h: s if math.isfinite(s) else None for h, s in org.scores.items()}),
             json.dumps(result["names"]) if org.result else None,
             json.dumps(result["names_at"]) if "names_at" in result else None,
             result.get("val_loss"), result.get("final_loss"), result.get("num_params"),
             result.get("seconds"), org.error, org.attempts, now()))

    def recall(self, run_id):
        """{organism id: its Outcome}: every evaluation the run already has."""
        recalled = {}
        for r in self.db.execute("SELECT * FROM evaluations WHERE run_id = ?", (run_id,)):
            result = None
            if r["error"] is None:
                result = {"names": json.loads(r["names"]), "val_loss": r["val_loss"],
                          "final_loss": r["final_loss"], "num_params": r["num_params"],
                          "seconds": r["seconds"]}
                if r["names_at"] is not None:
                    result["names_at"] = json.loads(r["names_at"])
            recalled[r["organism"]] = Outcome(r["organism"], result, r["error"], r["attempts"],
                                              r["seed"], json.loads(r["genome"]))
        return recalled

    def add_gathering(self, run_id, cycle, received):
        for head, immigrants in received.items():
            for o in immigrants:
                self.db.execute("INSERT OR IGNORE INTO gatherings VALUES (?, ?, ?, ?)",
                                (run_id, cycle + 1, head, o.id))


def alive(pid):
    """Whether a process with this pid runs on this machine."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Recorder(Observer):
    """The store's view of a run: each evaluation and Gathering as it happens."""

    def __init__(self, store, run_id, cfg):
        self.store, self.run_id, self.cfg = store, run_id, cfg

    def evaluated(self, organism):
        self.store.add_evaluation(self.run_id, organism, self.cfg.steps)

    def gathering(self, cycle, pool, received):
        self.store.add_gathering(self.run_id, cycle, received)
