"""What the store holds: its tables (SCHEMA, and MIGRATIONS from each older version), the values
a run's status and an evaluation's stage take, the limits a stored value must keep, and the
store's error. The tables are described for users in the package's docstring and in
docs/formats.md.
"""
from microgpt.errors import MicrogptError

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
