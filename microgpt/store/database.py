"""The store's database: `Store`, runs, evaluations, Gatherings, champions and fronts in and out,
and the run locks."""
import json
import math
import os
import socket
import sqlite3
import stat
import time
from pathlib import Path
from urllib.parse import quote

from microgpt.evaluators import Outcome
from microgpt.files import kind_of
from microgpt.genes import is_whole
from microgpt.hydra import finite_or_none, full_genome
from microgpt.store.checks import Checks, Recall, mean_scores
from microgpt.store.records import Evaluation
from microgpt.store.schema import (
    EVOLUTION,
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    SQLITE_HEADER,
    SQLITE_MAX,
    StoreError,
)

try:
    import fcntl
except ImportError:          # Windows: no record locks; a run's pid says whether it runs
    fcntl = None


def now():
    return time.strftime("%Y-%m-%d %H:%M:%S")


class Store(Checks):
    """A microgpt store at path, created when absent; StoreError for anything else, untouched.

    readonly: open an existing store for reading only (`--list`, `report`), in a read-only
    directory too.
    """

    def __init__(self, path, readonly=False):
        self.path = Path(path)
        self.readonly, self._lock, self._held = readonly, None, set()
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read ({exc.strerror})") from None
        if mode is not None:
            if not stat.S_ISREG(mode):
                raise StoreError(f"{self.path}: is {kind_of(mode)}, not a store")
            try:
                with open(self.path, "rb") as f:
                    head = f.read(len(SQLITE_HEADER))
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot read ({exc.strerror})") from None
            if head and head != SQLITE_HEADER:
                raise StoreError(f"{self.path}: not a microgpt store (not an SQLite database)")
        elif readonly:
            raise StoreError(f"{self.path}: no store there")
        elif not self.path.parent.is_dir():
            raise StoreError(f"{self.path}: directory {self.path.parent} does not exist")
        try:
            self.db = self._connect()
            self.db.row_factory = sqlite3.Row
            self._check_or_create()
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None

    def _connect(self):
        if not self.readonly:
            return sqlite3.connect(self.path, timeout=60, isolation_level=None)
        uri = "file:" + quote(os.fsencode(self.path))        # relative stays relative
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60, isolation_level=None)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            # a WAL store in a directory we cannot write (no -shm can be made there): no run
            # can be writing it either, so it is read as it is on disk
            db.close()
            return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)

    def _check_or_create(self):
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables and self.readonly:
            raise StoreError(f"{self.path}: not a microgpt store (an SQLite database without tables)")
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
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
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
        self.version = version
        if version < SCHEMA_VERSION and not self.readonly:
            self._migrate()
            self.version = SCHEMA_VERSION

    def _migrate(self):
        """Bring an older store to this schema, one version after another, in one transaction
        (another process may be doing the same: whoever comes second finds it done)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0])
            while version < SCHEMA_VERSION:
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                version += 1
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self):
        self.db.close()
        if self._lock is not None:
            os.close(self._lock)         # and with it every run lock this process held
            self._lock = None

    # Runs.

    def new_run(self, cfg, mode, heads, data_sha256, argv, out):
        """A new run's id, its status running, held by this process."""
        self.db.execute("BEGIN IMMEDIATE")      # no one sees the run before it is held
        try:
            cur = self.db.execute(
                "INSERT INTO runs (started, status, mode, heads, seed, population, generations,"
                " cycles, steps, samples, data, data_sha256, argv, out, pid, host, scoring)"
                " VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now(), mode, json.dumps([h.name for h in heads]), cfg.seed, cfg.population,
                 cfg.generations, cfg.cycles, cfg.steps, cfg.samples, cfg.data, data_sha256,
                 json.dumps(argv), str(out), os.getpid(), socket.gethostname(), cfg.scoring))
            self.hold(cur.lastrowid)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return cur.lastrowid

    def run(self, run_id):
        """The run's row (a dict), checked (check_run); StoreError when there is none."""
        row = None
        if 0 < run_id <= SQLITE_MAX:
            row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: has no run {run_id}")
        return self.check_run(dict(row))

    def runs(self):
        """Every run, newest first, each with `done` (its evaluations), `state` (its status, with
        a run whose process is gone shown as interrupted) and `problem` (None, or why its row
        cannot be used: then only its id is sure)."""
        front = ("(SELECT count(*) FROM front f WHERE f.run_id = runs.id)" if self.version >= 2
                 else "0")                  # a schema-1 store read as it is: no front
        rows = self.db.execute(
            "SELECT runs.*, (SELECT count(*) FROM evaluations e WHERE e.run_id = runs.id) AS done,"
            f" {front} AS front FROM runs ORDER BY id DESC").fetchall()
        runs = []
        for r in rows:
            try:
                run = dict(self.check_run(dict(r)), problem=None)
                run["state"] = self.state(run)
            except StoreError as exc:
                run = dict(r, problem=str(exc), state="damaged")
            runs.append(run)
        return runs

    def state(self, run):
        """running, interrupted, failed or completed: a 'running' run on this machine that no
        process holds (SIGKILL, a crash) is interrupted, whatever now has its pid."""
        if run["status"] != "running" or run["id"] in self._held:
            return run["status"]
        if run["host"] != socket.gethostname():
            return "running"                    # another machine's: it cannot be checked here
        held = self._held_elsewhere(run["id"])
        if held is None:                        # no lock file (an older microgpt's run)
            held = alive(run["pid"])
        return "running" if held else "interrupted"

    def latest_unfinished(self):
        """The newest run that did not complete and is not running now; StoreError if none."""
        for run in self.runs():
            if run["state"] in ("interrupted", "failed"):
                return run["id"]
        raise StoreError(f"{self.path}: no interrupted run to resume")

    def _lock_file(self):
        """The open lock file of the store's runs, or None (none can be opened or made)."""
        if self._lock is None and fcntl is not None:
            path = f"{self.path}-runs.lock"
            try:
                self._lock = os.open(path, os.O_RDONLY if self.readonly else os.O_RDWR | os.O_CREAT,
                                     0o666)
            except OSError:
                return None
        return self._lock

    def hold(self, run_id):
        """Take run_id for this process until close(): False when another process has it.

        (POSIX record locks belong to the process: one Store per process holds them.)"""
        fd = self._lock_file()
        if fd is None:
            return True
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, run_id)
        except OSError:
            return False
        self._held.add(run_id)
        return True

    def _held_elsewhere(self, run_id):
        """Whether another process holds run_id; None when there is no lock file to ask."""
        fd = self._lock_file()
        if fd is None:
            return None
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, run_id)
        except OSError:
            return True
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, run_id)
        return False

    def claim(self, run_id):
        """Mark run_id running again, in this process (resuming it; hold it first)."""
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
        """The run's Pareto front as stored: [{organism, genome, scores, trials}], rows of the
        wrong types left out."""
        if self.version < 2:
            return []
        out = []
        for r in self.db.execute("SELECT * FROM front WHERE run_id = ? ORDER BY organism", (run_id,)):
            try:
                genome = json.loads(r["genome"])
            except (TypeError, ValueError):
                continue
            scores = mean_scores(r["scores"])
            if (isinstance(r["organism"], str) and isinstance(genome, dict) and is_whole(r["trials"])
                    and scores is not None):
                out.append({"organism": r["organism"], "genome": genome, "scores": scores,
                            "trials": r["trials"]})
        return out

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

    def add_evaluation(self, run_id, trial, steps, stage=EVOLUTION):
        """Record a finished evaluation, a Trial (once: a recalled one is already there)."""
        org, result = trial.organism, trial.result or {}
        row = {"run_id": run_id, "organism": trial.id, "head": org.head, "cycle": org.cycle + 1,
               "generation": org.generation + 1, "idx": org.index, "trial": trial.n + 1,
               "seed": trial.seed, "parent": org.parent,
               "genome": json.dumps(full_genome(trial.genome, steps)),
               "scores": json.dumps({h: s if math.isfinite(s) else None
                                     for h, s in trial.scores.items()}),
               "names": json.dumps(result["names"]) if trial.result else None,
               "names_at": json.dumps(result["names_at"]) if "names_at" in result else None,
               "val_loss": result.get("val_loss"), "final_loss": result.get("final_loss"),
               "num_params": result.get("num_params"), "seconds": result.get("seconds"),
               "error": trial.error, "attempts": trial.attempts, "finished": now(),
               "started": result.get("started"), "ended": result.get("ended"),
               "worker": result.get("worker"), "stage": stage}
        self.db.execute(f"INSERT OR IGNORE INTO evaluations ({', '.join(row)})"
                        f" VALUES ({', '.join(':' + k for k in row)})", row)

    def recall(self, run_id):
        """A Recall ({organism id: its Outcome}): every evaluation the run already has, each
        checked (check_evaluation)."""
        run = self.run(run_id)
        recalled = Recall()
        for r in self.db.execute("SELECT * FROM evaluations WHERE run_id = ?", (run_id,)):
            e = self.check_evaluation(run, dict(r))
            result = None
            if e["error"] is None:
                result = {k: e[k] for k in ("names", "val_loss", "final_loss", "num_params", "seconds")}
                if e["names_at"] is not None:
                    result["names_at"] = e["names_at"]
            recalled[e["organism"]] = Outcome(e["organism"], result, e["error"], e["attempts"],
                                              e["seed"], e["genome"])
        return recalled

    def evaluations(self, run):
        """(the run's evaluations in the order of the run: cycle, generation, head, index,
        trial; each an Evaluation, checked by check_evaluation, JSON decoded; why each row that
        could not be used was skipped). run: its row, from `run`."""
        kept, skipped = [], []
        for r in self.db.execute("SELECT * FROM evaluations WHERE run_id = ? ORDER BY cycle,"
                                 " generation, head, idx, trial", (run["id"],)):
            try:
                kept.append(Evaluation.from_row(self.check_evaluation(run, dict(r))))
            except StoreError as exc:
                skipped.append(str(exc))
        return kept, skipped

    def add_champions(self, run_id, cycle, generation, populations):
        """Record each head's champion after a generation (populations: {head name: organisms
        ranked best first}), with its scores as the console prints them: the means over its
        trials so far."""
        for h, ranked in populations.items():
            o = ranked[0]
            scores = {k: finite_or_none(o.fitness(k)) for k in populations}
            self.db.execute("INSERT OR REPLACE INTO champions VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (run_id, cycle + 1, generation + 1, h, o.id, json.dumps(scores),
                             len(o.judged())))

    def champions(self, run_id):
        """Each head's champion after each generation: [{cycle, generation, head, organism,
        scores, trials}] (none for a run stored before schema 3), rows of the wrong types left
        out."""
        if self.version < 3:
            return []
        out = []
        for r in self.db.execute("SELECT * FROM champions WHERE run_id = ? ORDER BY cycle,"
                                 " generation, head", (run_id,)):
            scores = mean_scores(r["scores"])
            if (is_whole(r["cycle"]) and is_whole(r["generation"]) and isinstance(r["head"], str)
                    and isinstance(r["organism"], str) and scores is not None):
                out.append(dict(r, scores=scores))
        return out

    def gatherings(self, run_id):
        """The run's Gatherings: [{cycle, head, organism}] (a head's immigrants in each cycle),
        rows of the wrong types left out."""
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM gatherings WHERE run_id = ? ORDER BY cycle, head", (run_id,))
            if isinstance(r["cycle"], int) and isinstance(r["head"], str)
            and isinstance(r["organism"], str)]

    def add_gathering(self, run_id, cycle, received):
        for head, immigrants in received.items():
            for o in immigrants:
                self.db.execute("INSERT OR IGNORE INTO gatherings VALUES (?, ?, ?, ?)",
                                (run_id, cycle + 1, head, o.id))


def alive(pid):
    """Whether a process with this pid runs on this machine."""
    if not is_whole(pid) or not 0 < pid < 2**31:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
