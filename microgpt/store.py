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
  champions(run_id, cycle, generation, head, organism, scores, trials)   each head's champion
       after each generation, as the console prints it (scores: the means over its trials)
Since schema 3 an evaluation also records when it started and ended on its worker (`started`,
`ended`, seconds since the epoch), the process that ran it (`worker`, host:pid) and its stage
(`primordial`, `evolution` or `final judgement`). The primordial creature (every gene at its
default: the run's baseline, evaluated first on 3 seeds) is `primordial`, `primordial/t2`, ...,
with head '' (no island bred it).
JSON columns (genome, scores, names, names_at, heads, argv, winner_genome) hold JSON text:
`json_extract(scores, '$.Weaver')` reads one head's score. Cycles and generations count from 1.

What the store gives back is input like any file: a run's row and its evaluations are checked
(types, JSON, the flags' caps) before use, and a bad one is one StoreError naming the store, the
run and the column. Read-only commands open it read-only. A process running a run holds a lock
on byte <run id> of `<store>-runs.lock` (POSIX record locks die with their process, SIGKILL too),
so a run whose pid now belongs to another process is seen as interrupted, and of two resumes of
one run only one gets it.
"""
import json
import math
import os
import socket
import sqlite3
import stat
import time
from pathlib import Path
from urllib.parse import quote

from microgpt.errors import MicrogptError
from microgpt.evaluators import Outcome
from microgpt.files import kind_of, parse_json
from microgpt.genome import GENE_KEYS, SEED_MAX, GenomeError, check_genes, json_text
from microgpt.heads import HYDRA_HEADS, SCORINGS
from microgpt.hydra import SIZE_CAPS, Observer, finite_or_none, full_genome

try:
    import fcntl
except ImportError:          # Windows: no record locks; a run's pid says whether it runs
    fcntl = None

SCHEMA_VERSION = 3          # 2: runs.scoring and the front table; 3: champions, and
                            # evaluations' started, worker and stage
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
    started REAL,                    -- seconds since the epoch (schema 3)
    ended REAL,                      -- the same, when the worker was done with it (schema 3)
    worker TEXT,                     -- host:pid of the process that ran it (schema 3)
    stage TEXT,                      -- primordial, evolution or final judgement (schema 3)
    PRIMARY KEY (run_id, organism)
);
CREATE TABLE gatherings (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    cycle INTEGER NOT NULL,
    head TEXT NOT NULL,
    organism TEXT NOT NULL,
    PRIMARY KEY (run_id, cycle, head, organism)
);
"""
FRONT = """
CREATE TABLE IF NOT EXISTS front (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    organism TEXT NOT NULL,
    genome TEXT NOT NULL,
    scores TEXT NOT NULL,            -- JSON {head: its mean score over the organism's trials}
    trials INTEGER NOT NULL,
    PRIMARY KEY (run_id, organism)
)
"""
CHAMPIONS = """
CREATE TABLE IF NOT EXISTS champions (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    cycle INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    head TEXT NOT NULL,
    organism TEXT NOT NULL,
    scores TEXT NOT NULL,            -- JSON {head: its mean score over its trials so far}
    trials INTEGER NOT NULL,
    PRIMARY KEY (run_id, cycle, generation, head)
)
"""
SCHEMA += FRONT + ";" + CHAMPIONS
# What turns an older store into the next schema's: schema-1 runs (before counted heads) were
# scored by the mean and have no front; schema-2 runs have no champions, and their evaluations
# no start, end, worker or stage (NULL).
MIGRATIONS = {
    1: "ALTER TABLE runs ADD COLUMN scoring TEXT NOT NULL DEFAULT 'mean';" + FRONT,
    2: ("ALTER TABLE evaluations ADD COLUMN started REAL; ALTER TABLE evaluations ADD COLUMN"
        " worker TEXT; ALTER TABLE evaluations ADD COLUMN stage TEXT;"
        " ALTER TABLE evaluations ADD COLUMN ended REAL;" + CHAMPIONS),
}


STATUSES = ("running", "interrupted", "failed", "completed")
STAGES = PRIMORDIAL, EVOLUTION, FINAL_JUDGEMENT = ("primordial", "evolution", "final judgement")
SQLITE_MAX = 2**63 - 1       # the largest integer SQLite holds (a run id beyond it is no run)
SCORE_MAX = 1e12             # a head's score is a mean per name, or a loss: far below this


class StoreError(MicrogptError):
    """A store that cannot be used; the message names the file and the problem."""


def now():
    return time.strftime("%Y-%m-%d %H:%M:%S")


class Store:
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

    def check_run(self, run):
        """run (a row of runs) if every value the commands read is of its type and within the
        flags' caps; StoreError naming the store, the run and the column otherwise."""
        def bad(column, problem):
            return StoreError(f"{self.path}: run {run.get('id')}: {column} {problem}, got "
                              f"{json_text(run.get(column))}")
        if not _whole(run.get("id")) or not 0 < run["id"] <= SQLITE_MAX:
            raise bad("id", "must be a whole number from 1")
        for column in ("started", "data_sha256", "out"):
            if not isinstance(run.get(column), str) or not run[column]:
                raise bad(column, "must be text")
        for column in ("ended", "data", "host", "winner", "winner_genome", "reason"):
            if run.get(column) is not None and not isinstance(run[column], str):
                raise bad(column, "must be text or NULL")
        if run.get("status") not in STATUSES:
            raise bad("status", f"must be one of {', '.join(STATUSES)}")
        if run.get("mode") not in ("hydra", "classic"):
            raise bad("mode", "must be hydra or classic")
        run.setdefault("scoring", "mean")      # a schema-1 store read as it is
        if run["scoring"] not in SCORINGS:
            raise bad("scoring", f"must be one of {', '.join(SCORINGS)}")
        for column, (lo, hi) in SIZE_CAPS.items():
            if not _whole(run.get(column)) or not lo <= run[column] <= hi:
                raise bad(column, f"must be a whole number from {lo} to {hi}")
        if not _whole(run.get("seed")) or not 0 <= run["seed"] <= SEED_MAX:
            raise bad("seed", "must be a whole number from 0 to 2^63-1")
        if run.get("pid") is not None and not (_whole(run["pid"]) and 0 < run["pid"] < 2**31):
            raise bad("pid", "must be a process id or NULL")
        if run.get("winner_loss") is not None and not _number(run["winner_loss"]):
            raise bad("winner_loss", "must be a number or NULL")
        heads = self.json(run, "heads", run)
        allowed = ("classic",) if run["mode"] == "classic" else HYDRA_HEADS
        if (not isinstance(heads, list) or not heads or len(set(map(str, heads))) != len(heads)
                or not all(isinstance(h, str) and h.lower() in allowed for h in heads)):
            raise bad("heads", f"must list distinct heads of {', '.join(allowed)}")
        return run

    def json(self, run, column, row):
        """The JSON value in row[column] (a row of run's); StoreError naming them otherwise."""
        where = f"{self.path}: run {run.get('id')}: " + (
            f"{row['organism']}: " if row is not run and isinstance(row.get("organism"), str) else "")
        try:
            return parse_json(row[column], f"{where}{column}")
        except ValueError as exc:
            raise StoreError(str(exc)) from None

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
                genome, scores = json.loads(r["genome"]), json.loads(r["scores"])
            except (TypeError, ValueError):
                continue
            if (isinstance(r["organism"], str) and isinstance(genome, dict) and _whole(r["trials"])
                    and isinstance(scores, dict)
                    and all(x is None or (_number(x) and math.isfinite(x)) for x in scores.values())):
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

    def add_evaluation(self, run_id, org, steps, stage=EVOLUTION):
        """Record a finished evaluation (once: a recalled one is already there)."""
        result = org.result or {}
        row = {"run_id": run_id, "organism": org.id, "head": org.head, "cycle": org.cycle + 1,
               "generation": org.generation + 1, "idx": org.index, "trial": org.trial + 1,
               "seed": org.seed, "parent": (org.of or org).parent,
               "genome": json.dumps(full_genome(org.genome, steps)),
               "scores": json.dumps({h: s if math.isfinite(s) else None
                                     for h, s in org.scores.items()}),
               "names": json.dumps(result["names"]) if org.result else None,
               "names_at": json.dumps(result["names_at"]) if "names_at" in result else None,
               "val_loss": result.get("val_loss"), "final_loss": result.get("final_loss"),
               "num_params": result.get("num_params"), "seconds": result.get("seconds"),
               "error": org.error, "attempts": org.attempts, "finished": now(),
               "started": result.get("started"), "ended": result.get("ended"),
               "worker": result.get("worker"), "stage": stage}
        self.db.execute(f"INSERT OR IGNORE INTO evaluations ({', '.join(row)})"
                        f" VALUES ({', '.join(':' + k for k in row)})", row)

    def recall(self, run_id):
        """{organism id: its Outcome}: every evaluation the run already has, each checked
        (check_evaluation)."""
        run = self.run(run_id)
        recalled = {}
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

    def check_evaluation(self, run, e):
        """The evaluation row e of run with its JSON decoded, if every value is of its type and
        in range; StoreError naming the store, the run, the organism and the column otherwise."""
        def bad(column, problem):
            organism = e.get("organism") if isinstance(e.get("organism"), str) else "?"
            return StoreError(f"{self.path}: run {run['id']}: {organism[:80]}: {column} {problem}, "
                              f"got {json_text(e.get(column))}")
        if not isinstance(e.get("organism"), str) or not 0 < len(e["organism"]) <= 200:
            raise bad("organism", "must be text")
        primordial = (e.get("stage"), e.get("head")) == (PRIMORDIAL, "")
        if e.get("head") not in json.loads(run["heads"]) and not primordial:
            raise bad("head", "must be one of the run's heads (or empty, for the primordial creature)")
        limits = {"cycle": (1, SIZE_CAPS["cycles"][1]), "generation": (1, SIZE_CAPS["generations"][1]),
                  "idx": (0, 2**31), "trial": (1, 2**31), "attempts": (0, 2**31)}
        for column, (lo, hi) in limits.items():
            if not _whole(e.get(column)) or not lo <= e[column] <= hi:
                raise bad(column, f"must be a whole number from {lo} to {hi}")
        if not _whole(e.get("seed")) or not 0 <= e["seed"] <= SEED_MAX:
            raise bad("seed", "must be a whole number from 0 to 2^63-1")
        for column in ("parent", "error"):
            if e.get(column) is not None and not isinstance(e[column], str):
                raise bad(column, "must be text or NULL")
        if e.get("num_params") is not None and not (_whole(e["num_params"]) and 0 < e["num_params"] < 2**40):
            raise bad("num_params", "must be a whole number or NULL")
        for column in ("val_loss", "final_loss", "seconds", "started", "ended"):
            if e.get(column) is not None and not _number(e[column]):    # a loss may be infinite
                raise bad(column, "must be a number or NULL")
        if e.get("worker") is not None and not isinstance(e["worker"], str):
            raise bad("worker", "must be text or NULL")
        if e.get("stage") is not None and e["stage"] not in STAGES:
            raise bad("stage", f"must be {', '.join(STAGES)} or NULL")
        e = dict(e)
        for column in ("genome", "scores", "names", "names_at"):
            e[column] = self.json(run, column, e) if e.get(column) is not None else None
        genome = e["genome"]
        try:
            if not isinstance(genome, dict) or any(k not in genome for k in GENE_KEYS):
                raise GenomeError(f"needs the genes {', '.join(GENE_KEYS)}")
            check_genes(genome, "")
        except GenomeError as exc:
            raise bad("genome", f"is not a genome ({str(exc).lstrip(': ')})") from None
        scores = e["scores"]
        if not isinstance(scores, dict) or not all(
                isinstance(h, str) and (x is None or (_number(x) and abs(x) <= SCORE_MAX))
                for h, x in scores.items()):
            raise bad("scores", f"must map heads to numbers (at most {SCORE_MAX:g} in size) or null")
        if e["error"] is None and not _names(e["names"]):
            raise bad("names", "must be a list of names")
        if e["names_at"] is not None and not (isinstance(e["names_at"], list)
                                              and all(_names(x) for x in e["names_at"])):
            raise bad("names_at", "must be lists of names")
        return e

    def evaluations(self, run):
        """(the run's evaluations in the order of the run: cycle, generation, head, index,
        trial; each a dict checked by check_evaluation, JSON decoded; why each row that could
        not be used was skipped). run: its row, from `run`."""
        kept, skipped = [], []
        for r in self.db.execute("SELECT * FROM evaluations WHERE run_id = ? ORDER BY cycle,"
                                 " generation, head, idx, trial", (run["id"],)):
            try:
                kept.append(self.check_evaluation(run, dict(r)))
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
            try:
                scores = json.loads(r["scores"])
            except (TypeError, ValueError):
                continue
            if (_whole(r["cycle"]) and _whole(r["generation"]) and isinstance(r["head"], str)
                    and isinstance(r["organism"], str) and isinstance(scores, dict)
                    and all(x is None or (_number(x) and math.isfinite(x)) for x in scores.values())):
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
    if not _whole(pid) or not 0 < pid < 2**31:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _whole(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _names(x):
    return isinstance(x, list) and all(isinstance(n, str) for n in x)


class Recorder(Observer):
    """The store's view of a run: each evaluation and Gathering as it happens."""

    def __init__(self, store, run_id, cfg):
        self.store, self.run_id, self.cfg = store, run_id, cfg
        self.stage = EVOLUTION

    def primordial_started(self, todo):
        self.stage = PRIMORDIAL

    def generation_started(self, cycle, generation, todo):
        self.stage = EVOLUTION

    def final_started(self, organisms, todo, what):
        self.stage = FINAL_JUDGEMENT

    def evaluated(self, organism):
        self.store.add_evaluation(self.run_id, organism, self.cfg.steps, self.stage)

    def generation(self, cycle, generation, populations):
        self.store.add_champions(self.run_id, cycle, generation, populations)

    def gathering(self, cycle, pool, received):
        self.store.add_gathering(self.run_id, cycle, received)
