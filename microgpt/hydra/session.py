"""A Hydra run from start to end, as the command runs it: begin one in the store (or take up a
stored one), run it with its observers, write the winner and its trained model, and record how
it ended. `microgpt-hydra` (microgpt.hydra_cli) parses the flags, opens the console and calls
this; a script can too.
"""
import hashlib
import json
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from microgpt import __version__
from microgpt.console import plural
from microgpt.creature import creature_path, from_training, save_creature
from microgpt.errors import DataError, MicrogptError, UsageError
from microgpt.files import same_file, writable_target
from microgpt.genes import trained_genes
from microgpt.genome import save_genome
from microgpt.guard import Stopped, error_text, slow_notice
from microgpt.heads import Classic, KnownNames, make_heads
from microgpt.hydra.engine import evolve
from microgpt.hydra.organism import HydraConfig, Observers
from microgpt.hydra.standing import choose_winner, winner_genome
from microgpt.store import Recorder
from microgpt.train import Dataset, TrainingConfig, bundled_names_path, load_names, train_and_generate

STORE_FILES = ("-wal", "-shm", "-journal", "-runs.lock")   # SQLite's and microgpt's beside a store
SIZES = ("population", "generations", "cycles", "steps", "samples")


class FlagConflict(UsageError):
    """A flag given to --resume that disagrees with what the stored run was begun with."""


@dataclass
class Session:
    """One run in its store: what defines it (cfg, heads, mode), where its winner goes (out), the
    sha256 of its names, and the outcomes it already has (recall: a resumed run's)."""
    store: object
    run_id: int
    cfg: HydraConfig
    heads: list
    mode: str
    out: Path
    sha: str
    recall: dict = field(default_factory=dict)
    written: bool = False               # whether out holds this run's winner
    log: object = None                  # the run's log file, when a command keeps one

    def run(self, evaluator, console, started):
        """Evolve, write the winner and its trained model, and mark the run completed: the
        Evolution. (An interruption or a failure is for the caller to record: `stopped`,
        `failed`.)"""
        evolution = evolve(self.heads, evaluator, self.cfg, recall=self.recall,
                           observer=Observers(console, Recorder(self.store, self.run_id, self.cfg)))
        evaluator.close()
        genome = self.write_winner(evolution, console)
        self.written = True
        self.write_mind(genome, console)
        made = evolution.made()
        failed = sum(o.error is not None for o in made)
        failures = f", {failed} failed" if failed else ""
        console.say(f"Wrote {self.out} ({plural(len(made), 'evaluation')}{failures}, "
                    f"{time.perf_counter() - started:.1f}s): run `microgpt` to meet the evolved "
                    f"creature.", chatter=False)
        self.store.finish(self.run_id, "completed")
        return evolution

    def stopped(self, exc):
        """Record that a signal or Ctrl-C (exc) stopped the run: why, in words."""
        why = (f"stopped by {signal.Signals(exc.signum).name}" if isinstance(exc, Stopped)
               else "interrupted")
        self.store.finish(self.run_id, "interrupted", reason=why)
        return why

    def failed(self, exc):
        """Record that the run failed with exc."""
        self.store.finish(self.run_id, "failed", reason=str(exc))

    def write_winner(self, evolution, console):
        """Choose the winner, print the final table and write its genome to out: the genome (kept
        in the store even when out cannot be written)."""
        _, winner, winner_standing = choose_winner(evolution)
        genome = {**winner_genome(winner, winner_standing, evolution, self.mode),
                  "microgpt": __version__}
        console.ascended(evolution, self.mode, winner, winner_standing, genome)
        self.store.set_winner(self.run_id, genome)
        self.store.set_front(self.run_id, evolution.front, evolution.heads, evolution.config.steps)
        try:
            _, kept = save_genome(self.out, genome, "--out")
        except (MicrogptError, OSError) as exc:
            raise MicrogptError(f"could not write the winner to {self.out} ({error_text(exc)}); its "
                                f"genome is in {self.store.path}, run {self.run_id} (winner_genome)"
                                ) from None
        if kept is not None:
            console.say(f"Replaced {self.out}; the genome it held is kept as {kept}", chatter=False)
        return genome

    def write_mind(self, genome, console):
        """Train the winner as `microgpt` does with genome.json and no other flag (so the same
        model, bit for bit) and save it beside out, where `microgpt` wakes it instead of training."""
        cfg = TrainingConfig(**trained_genes(genome), seed=genome["seed"], gen_samples=0)
        dataset = Dataset(load_names(self.cfg.data))
        result = train_and_generate(cfg, dataset=dataset)
        path = creature_path(self.out)
        try:
            _, kept = save_creature(path, from_training(result, cfg, dataset.names.sha256()), "--out")
        except (MicrogptError, OSError) as exc:
            raise MicrogptError(f"could not save the winner's trained model to {path} "
                                f"({error_text(exc)}); {self.out} is written") from None
        console.say(f"Wrote {path}: the winner, trained; `microgpt` beside {self.out.name} speaks "
                    f"from it" + (f" (the one it replaced is kept as {kept})" if kept else ""),
                    chatter=False)


def begin(store, cfg, heads, mode, argv, out):
    """A new run of cfg in store, its winner going to out: its Session."""
    sha = data_sha256(cfg.data)
    return Session(store, store.new_run(cfg, mode, heads, sha, argv, out), cfg, heads, mode, out, sha)


def take_up(store, which, given, out=None, force=False, quiet=False):
    """The Session of the stored run `which` ("latest": the newest unfinished), held by this
    process, with the outcomes it has; None when it is complete. given: {flag: value or None},
    the flags that define a run (a value that disagrees is a FlagConflict); out: where its winner
    goes instead of where it was to go. UsageError when it runs elsewhere or is being resumed,
    DataError when its names changed."""
    run_id = store.latest_unfinished() if which == "latest" else which
    run = store.run(run_id)
    elsewhere = run["host"] != socket.gethostname()
    if store.state(run) == "running" and not (force and elsewhere):
        raise UsageError(f"run {run_id} is still running (process {run['pid']} on {run['host']}); "
                         + ("if it is not, --force takes it over" if elsewhere
                            else "stop it before resuming"))
    if not store.hold(run_id):           # another resume of it started at the same moment
        raise UsageError(f"run {run_id} is being resumed by another process; nothing done here")
    run = store.run(run_id)              # as it is now that it is ours
    if run["status"] == "completed":
        print(f"Run {run_id} is complete (winner {run['winner']}, written to {run['out']}); "
              f"nothing to resume, nothing written.")
        return None
    cfg, names, mode = stored_config(run)
    conflict = conflicts(run, given)
    if conflict:
        raise FlagConflict(conflict)
    sha = data_sha256(cfg.data)
    if sha != run["data_sha256"]:
        raise DataError(f"{cfg.data or bundled_names_path()}: the names changed since run "
                        f"{run_id} began; it cannot be resumed on other data")
    out = out if out is not None else Path(run["out"])
    check_paths(out, cfg, store.path)
    heads = load_heads(names, mode == "classic", cfg.data, quiet, cfg.scoring)
    return Session(store, run_id, cfg, heads, mode, out, sha, store.recall(run_id))


def stored_config(run):
    """(HydraConfig, head names, mode) of a stored run's row."""
    cfg = HydraConfig(**{k: run[k] for k in (*SIZES, "seed", "data", "scoring")})
    return cfg, [h.lower() for h in json.loads(run["heads"])], run["mode"]


def conflicts(run, given):
    """Why a flag of given ({flag: value or None}) disagrees with the stored run, or None."""
    cfg, names, mode = stored_config(run)
    stored = {**{k: getattr(cfg, k) for k in (*SIZES, "seed", "scoring")},
              "heads": names, "classic": mode == "classic", "data": run["data"]}
    for flag, value in given.items():
        shown = ",".join(value) if flag == "heads" and value is not None else value
        if flag == "data" and value is not None:
            value = str(Path(value).resolve())
        if value is not None and value != stored[flag]:
            kept = ",".join(stored[flag]) if flag == "heads" else stored[flag]
            return (f"--{flag} {shown} conflicts with run {run['id']}, which has {kept}; drop it "
                    f"to resume")
    return None


def load_heads(names, classic, data, quiet, scoring):
    """The heads (Spark and Classic knowing the training names) for head names or classic, adding
    up their names by scoring."""
    with slow_notice(f"loading the names from {data}", data is not None and not quiet):
        known = KnownNames(load_names(data, progress=not quiet and sys.stderr.isatty()))
    return [Classic(known, scoring)] if classic else make_heads(names, known, scoring)


def data_sha256(data):
    """The sha256 of the names file at data (None: the bundled names), to see it changed."""
    digest = hashlib.sha256()
    with open(data if data is not None else bundled_names_path(), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_paths(out, cfg, store_path):
    """Before any work: the winner (and its trained model beside it) must have somewhere to go,
    and the winner, the names and the store (with its -wal and -shm) are never one file."""
    names = cfg.data if cfg.data is not None else bundled_names_path()
    store = [store_path, *(f"{store_path}{tail}" for tail in STORE_FILES)]
    if any(same_file(names, p) for p in store):
        raise UsageError(f"--store {store_path}: is the file of training names; choose another path")
    for path in (out, creature_path(out)):
        target = writable_target(path, "--out")
        which = f"--out {out}:" + ("" if path == out else f" {path} beside it")
        if same_file(target, names):
            raise UsageError(f"{which} is the file of training names; choose another path")
        if any(same_file(target, p) for p in store):
            raise UsageError(f"{which} is the store {store_path} (or one of its files); choose "
                             f"another path")
