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

The package: `schema` (the tables, their versions, the limits), `checks` (what comes back is
checked) `database` (`Store`), `records` (`Evaluation`, what it gives back) and `recorder` (`Recorder`, a
run's observer).
"""
from microgpt.store.checks import Checks, Recall  # noqa: F401
from microgpt.store.database import Store, alive, now  # noqa: F401
from microgpt.store.recorder import Recorder  # noqa: F401
from microgpt.store.records import Evaluation  # noqa: F401
from microgpt.store.schema import (  # noqa: F401
    CHAMPIONS,
    EVOLUTION,
    FINAL_JUDGEMENT,
    FRONT,
    MIGRATIONS,
    PRIMORDIAL,
    SCHEMA,
    SCHEMA_VERSION,
    SCORE_MAX,
    SQLITE_HEADER,
    SQLITE_MAX,
    STAGES,
    STATUSES,
    StoreError,
)
