"""What the store gives back is input like any file: a run's row and its evaluations are checked
(types, JSON, the flags' caps) before use, and a bad one is one StoreError naming the store, the
run and the column. `Checks` is the half of `Store` that does it.
"""
import json
import math

from microgpt.errors import MicrogptError
from microgpt.files import parse_json
from microgpt.genes import is_number, is_whole
from microgpt.genome import GENE_KEYS, SEED_MAX, GenomeError, check_genes, json_text
from microgpt.heads import HYDRA_HEADS, SCORINGS
from microgpt.hydra import SIZE_CAPS, full_genome
from microgpt.store.schema import PRIMORDIAL, SCORE_MAX, SQLITE_MAX, STAGES, STATUSES, StoreError


class Checks:
    """The checks of what a store at self.path gives back."""

    def check_run(self, run):
        """run (a row of runs) if every value the commands read is of its type and within the
        flags' caps; StoreError naming the store, the run and the column otherwise."""
        def bad(column, problem):
            return StoreError(f"{self.path}: run {run.get('id')}: {column} {problem}, got "
                              f"{json_text(run.get(column))}")
        if not is_whole(run.get("id")) or not 0 < run["id"] <= SQLITE_MAX:
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
            if not is_whole(run.get(column)) or not lo <= run[column] <= hi:
                raise bad(column, f"must be a whole number from {lo} to {hi}")
        if not is_whole(run.get("seed")) or not 0 <= run["seed"] <= SEED_MAX:
            raise bad("seed", "must be a whole number from 0 to 2^63-1")
        if run.get("pid") is not None and not (is_whole(run["pid"]) and 0 < run["pid"] < 2**31):
            raise bad("pid", "must be a process id or NULL")
        if run.get("winner_loss") is not None and not is_number(run["winner_loss"]):
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
            if not is_whole(e.get(column)) or not lo <= e[column] <= hi:
                raise bad(column, f"must be a whole number from {lo} to {hi}")
        if not is_whole(e.get("seed")) or not 0 <= e["seed"] <= SEED_MAX:
            raise bad("seed", "must be a whole number from 0 to 2^63-1")
        for column in ("parent", "error"):
            if e.get(column) is not None and not isinstance(e[column], str):
                raise bad(column, "must be text or NULL")
        params = e.get("num_params")
        if params is not None and not (is_whole(params) and 0 < params < 2**40):
            raise bad("num_params", "must be a whole number or NULL")
        for column in ("val_loss", "final_loss", "seconds", "started", "ended"):
            if e.get(column) is not None and not is_number(e[column]):    # a loss may be infinite
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
                isinstance(h, str) and (x is None or (is_number(x) and abs(x) <= SCORE_MAX))
                for h, x in scores.items()):
            raise bad("scores", f"must map heads to numbers (at most {SCORE_MAX:g} in size) or null")
        if e["error"] is None and not _names(e["names"]):
            raise bad("names", "must be a list of names")
        if e["names_at"] is not None and not (isinstance(e["names_at"], list)
                                              and all(_names(x) for x in e["names_at"])):
            raise bad("names_at", "must be lists of names")
        return e


def _names(x):
    return isinstance(x, list) and all(isinstance(n, str) for n in x)


def mean_scores(text):
    """The {head: mean score or null} a front or champions row holds as JSON text, or None when
    it is not that (a tampered row, left out)."""
    try:
        scores = json.loads(text)
    except (TypeError, ValueError):
        return None
    ok = isinstance(scores, dict) and all(
        x is None or (is_number(x) and math.isfinite(x)) for x in scores.values())
    return scores if ok else None


class Recall(dict):
    """{trial id: its Outcome}: what a stored run already has, for its resumption. An outcome
    is given back (`outcome`) only for the trial it was: trained with the same seed, the
    same genes and heard at its voices; MicrogptError when the store's is another (another
    run's, or an older microgpt's)."""

    def outcome(self, trial, steps):
        """The stored Outcome of trial (a Trial trained for steps), or None."""
        outcome = self.get(trial.id)
        if outcome is None:
            return None
        if outcome.seed != trial.seed:
            raise MicrogptError(f"the store's {trial.id} was trained with another seed: not this run")
        if outcome.genome is not None and outcome.genome != full_genome(trial.genome, steps):
            raise MicrogptError(f"the store's {trial.id} has other genes than this microgpt breeds (an "
                                f"older version bred it); start a new run")
        if trial.temperatures and outcome.result is not None and "names_at" not in outcome.result:
            raise MicrogptError(f"the store's {trial.id} was made by an older microgpt, which did not "
                                f"sample at several temperatures; start a new run")
        return outcome
