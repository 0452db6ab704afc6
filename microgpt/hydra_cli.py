"""The `microgpt-hydra` command: the evolution, and `microgpt-hydra report`.

Parses the flags and wires a session (microgpt.hydra.session: the run in its store, the winner
written to genome.json and its trained model beside it) to an evaluator (microgpt.evaluators)
and the console (microgpt.console). Parsing and wiring only; errors are one line.
"""
import argparse
import importlib.util
import os
import secrets
import sys
import time
from pathlib import Path

from microgpt import __version__
from microgpt.cli import _whole
from microgpt.console import Console, banner, open_log, plural, runs_table
from microgpt.creature import creature_path
from microgpt.errors import UsageError
from microgpt.evaluators import DaskEvaluator, LocalPool, check_address
from microgpt.files import same_file
from microgpt.genome import SEED_MAX
from microgpt.guard import exit_status, guarded, ignore_stop_signals
from microgpt.heads import (
    DEFAULT_HEADS,
    HYDRA_HEADS,
    SCORINGS,
    parse_heads,
)
from microgpt.hydra import (
    CLASSIC,
    GENES,
    SIZE_CAPS,
    HydraConfig,
)
from microgpt.hydra.session import FlagConflict, begin, check_paths, load_heads, take_up
from microgpt.store import Store
from microgpt.worker import evaluate_genome, names_to_send

HYDRA_DESCRIPTION = """\
microgpt-hydra: breed microgpt's hyperparameters and write the winner to genome.json.

The lifecycle:
  1. Primordial: `microgpt` trains with its defaults ("I am unformed").
  2. Evolution:  `microgpt-hydra` awakens the Hydra: three heads, each an island of
                 organisms (genomes of {genes}), breed in isolation and
                 meet at each Gathering. Every organism trains a GPT and samples names,
                 which every head scores: Weaver (flow), Mirror (symmetry), Spark
                 (creativity) and, with --heads, Origin (the held-out loss). A final
                 judgement re-judges the best on fresh seeds: the winner's DNA goes to
                 genome.json, its trained model to genome.npz beside it.
  3. Evolved:    `microgpt` in that directory reads genome.json and becomes the evolved
                 creature ("I have become"), waking genome.npz instead of training.

--classic runs the seed's legacy evolution instead: one population of 12 for 5 generations
on 1.0*flow + 1.2*symmetry + 2.0*creativity.

How Hydra works, step by step and with every number: docs/hydra.md (in the source and on the
project's page).

`microgpt-hydra report [RUN [RUN2]]` draws a run (or compares two) from the store: an HTML page
and PNGs; see `microgpt-hydra report --help`.

Every run and every evaluation goes into the store, an SQLite database
(experiments/microgpt.db), as it finishes; a run also leaves experiments/<mode>-<time>.log,
what it printed. A run stopped any way at all (Ctrl-C, SIGTERM, SIGKILL, a crash) continues
with --resume, recalling what it had done: its genome.json is the one the run would have
written. The same --seed gives the same genome.json for any --workers. Ctrl-C stops at
once and leaves any existing genome.json untouched.""".format(genes=plural(len(GENES), "gene"))

STORE_NAME = "microgpt.db"
RUN_FLAGS = ("heads", "population", "generations", "cycles", "steps", "samples", "seed", "data",
             "classic", "scoring")       # what defines a run: fixed when it is resumed


def _heads_list(text):
    """An argparse type: the head names in a --heads list."""
    try:
        return parse_heads(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def default_workers():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _run_id(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a run number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"run numbers start at 1, got {value}")
    return value


def build_hydra_parser():
    p = argparse.ArgumentParser(prog="microgpt-hydra", description=HYDRA_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    e = p.add_argument_group("the evolution")
    e.add_argument("--heads", metavar="LIST", type=_heads_list,
                   help=f"comma-separated heads from {', '.join(HYDRA_HEADS)} ({DEFAULT_HEADS})")
    e.add_argument("--cycles", metavar="N", type=_whole(*SIZE_CAPS["cycles"]),
                   help=f"cycles of isolation, with a Gathering between them ({HydraConfig.cycles})")
    e.add_argument("--generations", metavar="N", type=_whole(*SIZE_CAPS["generations"]),
                   help=f"generations per cycle ({HydraConfig.generations})")
    e.add_argument("--population", metavar="N", type=_whole(*SIZE_CAPS["population"]),
                   help=f"organisms per head ({HydraConfig.population}; {CLASSIC['population']} "
                        f"with --classic)")
    e.add_argument("--scoring", choices=SCORINGS,
                   help="how a head adds up a sample of N names: counted (the default) sums its "
                        "rule's score over the distinct names the rule accepts and divides by N "
                        "(a repeat or a rejected name adds 0), so one name on repeat cannot win; "
                        "mean is the seed's average over the names the rule accepts, repeats "
                        "included, to reproduce results of earlier versions")
    e.add_argument("--classic", action="store_true", default=None,
                   help=f"the legacy single-objective evolution (one population of "
                        f"{CLASSIC['population']}, {CLASSIC['generations']} generations)")
    o = p.add_argument_group("each organism")
    o.add_argument("--steps", metavar="N", type=_whole(*SIZE_CAPS["steps"]),
                   help=f"training steps ({HydraConfig.steps})")
    o.add_argument("--samples", metavar="N", type=_whole(*SIZE_CAPS["samples"]),
                   help=f"names sampled and scored ({HydraConfig.samples})")
    o.add_argument("--data", metavar="PATH", type=Path,
                   help="names to train on, one per line (default: the bundled makemore names)")
    r = p.add_argument_group("the run")
    r.add_argument("--workers", metavar="N", type=_whole(1, 4096), default=default_workers(),
                   help="worker processes, at most one per evaluation of a generation "
                        "(all cores: %(default)s)")
    r.add_argument("--scheduler", metavar="ADDRESS", type=_scheduler,
                   help="run every evaluation on the Dask cluster whose scheduler is at ADDRESS "
                        "(tcp://host:8786) instead of local processes; needs microgpt-hydra[dask]")
    r.add_argument("--seed", metavar="N", type=_whole(0, SEED_MAX),
                   help="run seed, 0 or more; the same seed gives the same run "
                        "(default: a fresh one, printed)")
    r.add_argument("--out", metavar="PATH", type=Path,
                   help="where to write the winner (genome.json; a resumed run: its own); its "
                        "trained model goes beside it (genome.npz)")
    r.add_argument("--experiments", metavar="DIR", type=Path, default=Path("experiments"),
                   help="directory for the runs' logs and the store (experiments)")
    r.add_argument("--store", metavar="PATH", type=Path,
                   help=f"the SQLite store of every run and evaluation (DIR/{STORE_NAME})")
    r.add_argument("--resume", metavar="RUN", nargs="?", const="latest", type=_run_id_or_latest,
                   help="continue an interrupted run (default: the latest), recalling its "
                        "finished evaluations; its seed, sizes, heads and data are the store's")
    r.add_argument("--force", action="store_true",
                   help="with --resume: take over a run the store says is running on another "
                        "machine (one this machine runs is never taken over)")
    r.add_argument("--list", action="store_true", help="list the store's runs, newest first")
    r.add_argument("-q", "--quiet", action="store_true",
                   help="print only the final table, not every generation")
    r.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return p


def _scheduler(text):
    """An argparse type: a Dask scheduler's address, refused before any work when distributed
    is not installed."""
    if importlib.util.find_spec("distributed") is None:
        raise argparse.ArgumentTypeError("needs Dask's distributed: pip install 'microgpt-hydra[dask]' "
                                         "(in a checkout: pip install '.[dask]')")
    try:
        return check_address(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run_id_or_latest(text):
    return text if text == "latest" else _run_id(text)


def _make_dir(directory, flag):
    """directory, made if absent; UsageError naming flag when it cannot be."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{flag} {directory}: is a file, not a directory") from None
    except OSError as exc:
        raise UsageError(f"{flag} {directory}: cannot create it ({exc.strerror})") from None
    return directory


def _configure_hydra(args, parser):
    """(HydraConfig, heads, mode) from the flags; MicrogptError for bad input."""
    if args.classic and args.heads is not None:
        parser.error("--classic has its own combined objective; drop --heads")
    defaults = CLASSIC if args.classic else {}
    sizes = {k: getattr(args, k) if getattr(args, k) is not None
             else defaults.get(k, getattr(HydraConfig, k))
             for k in ("population", "generations", "cycles", "steps", "samples")}
    if args.data is not None and str(args.data) == "-":
        parser.error("--data -: Hydra's workers read the names from a file; give its path")
    data = str(args.data.resolve()) if args.data is not None else None
    scoring = args.scoring if args.scoring is not None else HydraConfig.scoring
    heads = load_heads(args.heads if args.heads is not None else parse_heads(DEFAULT_HEADS),
                        args.classic, data, args.quiet, scoring)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    return (HydraConfig(seed=seed, data=data, scoring=scoring, **sizes), heads,
            "classic" if args.classic else "hydra")


def _open_log(args, mode, paths):
    """The run's new log in --experiments; UsageError (the log removed) if it is one of paths
    (a --out or --store that names the log this very second would get)."""
    log = open_log(_make_dir(args.experiments, "--experiments"), mode)
    clash = next((p for p in paths if same_file(log.name, p)), None)
    if clash is not None:
        log.close()
        os.unlink(log.name)
        raise UsageError(f"{clash}: is this run's log {log.name}; choose another path")
    return log


def list_runs(store_path):
    if not store_path.exists():
        print(f"No runs yet: there is no store at {store_path}.")
        return 0
    store = Store(store_path, readonly=True)
    try:
        for line in runs_table(store.runs()):
            print(line)
    finally:
        store.close()
    return 0


def _check_text_names(args, flags):
    """UsageError for a path flag whose name is not valid UTF-8: the store keeps names as text."""
    for flag in flags:
        value = getattr(args, flag.lstrip("-"))
        if value is not None:
            try:
                str(value).encode("utf-8")
            except UnicodeEncodeError:
                shown = os.fsencode(value).decode("utf-8", "backslashreplace")
                raise UsageError(f"{flag} {shown}: the name is not valid UTF-8 text, which the "
                                 f"store and the report keep; rename it") from None


def run_hydra(args, parser, argv, evaluate=evaluate_genome):
    """The command after parsing: 0, or 128 + N on signal N; bad input raises MicrogptError or OSError."""
    _check_text_names(args, ("--data", "--out", "--store", "--experiments"))
    store_path = args.store if args.store is not None else args.experiments / STORE_NAME
    if args.list:
        return list_runs(store_path)
    if args.force and args.resume is None:
        parser.error("--force takes over a run: use it with --resume")
    session = _resume(args, parser, store_path) if args.resume is not None else _begin(
        args, parser, store_path, argv)
    if session is None:
        return 0
    cfg, heads = session.cfg, session.heads
    workers = min(args.workers, cfg.population * len(heads))   # never more than a generation needs
    console = Console(cfg, heads, session.log, args.quiet,
                      progress=sys.stderr.isatty() and not args.quiet)
    started, evaluator = time.perf_counter(), None
    try:
        console.note(f"$ microgpt-hydra {' '.join(argv)}\nstarted {time.strftime('%Y-%m-%d %H:%M:%S')}")
        if args.scheduler:
            evaluator = DaskEvaluator(args.scheduler, evaluate, names_to_send(cfg.data, session.sha))
        else:
            evaluator = LocalPool(workers, evaluate, bound={"data": cfg.data})
        where = f" on the Dask cluster at {args.scheduler}" if args.scheduler else ""
        for line in banner(cfg, heads, session.mode, evaluator.workers, where):
            console.say(line)
        if session.recall:
            console.say(f"Resuming run {session.run_id} from {store_path}: "
                        f"{plural(len(session.recall), 'evaluation')} recalled")
        session.run(evaluator, console, started)
        console.say(f"Run {session.run_id} in {store_path}; log: {session.log.name}", chatter=False)
        return 0
    except KeyboardInterrupt as exc:      # Ctrl-C, SIGTERM, SIGHUP
        ignore_stop_signals()
        if evaluator is not None:
            evaluator.kill()
        console.close_bar()
        out = session.out
        outcome = f"{out} was written" if session.written else f"{out} untouched"
        why = session.stopped(exc)
        console.note(f"{why.capitalize()} after {time.perf_counter() - started:.1f}s; {outcome}.")
        print(f"microgpt-hydra: {why}; {outcome}; `microgpt-hydra --resume {session.run_id}` "
              f"continues (log: {session.log.name})", file=sys.stderr)
        return exit_status(exc)
    except Exception as exc:             # recorded, then reported by main
        console.close_bar()
        console.note(f"Failed: {exc}")
        session.failed(exc)
        raise
    finally:
        if evaluator is not None:        # after close() there is nothing left to kill
            evaluator.kill()
        console.close_bar()
        session.log.close()
        session.store.close()


def _begin(args, parser, store_path, argv):
    """A new run's Session, with its log (session.log), from the flags."""
    cfg, heads, mode = _configure_hydra(args, parser)
    out = args.out if args.out is not None else Path("genome.json")
    check_paths(out, cfg, store_path)
    _make_dir(store_path.parent, "--store" if args.store is not None else "--experiments")
    store = Store(store_path)
    log = None
    try:
        log = _open_log(args, mode, (out, creature_path(out), store_path))
        session = begin(store, cfg, heads, mode, argv, out)
    except BaseException:
        if log is not None:
            log.close()
        store.close()
        raise
    session.log = log
    return session


def _resume(args, parser, store_path):
    """The Session (with its log) of the run --resume names, held by this process; None when it
    is complete. A flag that disagrees with the run is a usage error."""
    if not store_path.exists():
        raise UsageError(f"{store_path}: no store, so no run to resume")
    store = Store(store_path)
    try:
        given = {flag: getattr(args, flag) for flag in RUN_FLAGS}
        try:
            session = take_up(store, args.resume, given, args.out, args.force, args.quiet)
        except FlagConflict as exc:
            parser.error(str(exc))
        if session is None:
            store.close()
            return None
        session.log = _open_log(args, session.mode, (session.out, creature_path(session.out),
                                                     store_path))
    except BaseException:
        store.close()
        raise
    store.claim(session.run_id)
    return session


def build_report_parser():
    p = argparse.ArgumentParser(
        prog="microgpt-hydra report",
        description="Pictures of a run, read from the store (nothing runs again): a self-contained "
                    "HTML page, verdict first (the winner against the random genomes the run began "
                    "with), then a PNG per figure (champions per generation, the heads' Pareto "
                    "front, which genes mattered, standing against each gene, temperature x "
                    "cooling, the winner's lineage, the genes, loss against size, the timeline), "
                    "and a summary here. Two runs: their winners and champions compared, and both "
                    "runs' figures and Pareto fronts. --watch keeps the page current while the "
                    "run goes on (the page reloads itself; open it in a browser). Needs matplotlib: "
                    "pip install 'microgpt-hydra[report]' (in a checkout: pip install '.[report]').")
    p.add_argument("runs", metavar="RUN", nargs="*", type=_run_id,
                   help="one run, or two to compare (default: the newest)")
    p.add_argument("--out", metavar="DIR", type=Path,
                   help="where to write report.html and the PNGs (DIR/report-<run> beside the store)")
    p.add_argument("--experiments", metavar="DIR", type=Path, default=Path("experiments"),
                   help="the runs' directory (experiments)")
    p.add_argument("--store", metavar="PATH", type=Path, help=f"the store (DIR/{STORE_NAME})")
    p.add_argument("--watch", metavar="SECONDS", type=_watch_seconds, nargs="?", const=3.0,
                   help="write the report again every SECONDS (3; or as soon as it is drawn, when "
                        "that takes longer: about 4 s for a default run) while the run goes on, "
                        "the page reloading itself as often; stop when the run ends (or on Ctrl-C)")
    p.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return p


def _watch_seconds(text):
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not 0.5 <= x <= 3600:
        raise argparse.ArgumentTypeError(f"must be from 0.5 to 3600 seconds, got {text}")
    return x


def run_report(args, parser):
    if len(args.runs) > 2:
        parser.error("at most two runs: one to see, or two to compare")
    _check_text_names(args, ("--out", "--store", "--experiments"))
    store_path = args.store if args.store is not None else args.experiments / STORE_NAME
    if not store_path.exists():
        raise UsageError(f"{store_path}: no store, so no run to report (run microgpt-hydra first)")
    try:
        import matplotlib  # noqa: F401  (the report imports it when it draws)
    except ImportError:
        raise UsageError("the report needs matplotlib: pip install 'microgpt-hydra[report]' "
                         "(in a checkout: pip install '.[report]')") from None
    from microgpt.report import report, watch

    if args.watch is not None:
        lines, paths = watch(store_path, args.runs, args.out, args.watch)
    else:
        lines, paths = report(store_path, args.runs, args.out)
    for line in lines:
        print(line)
    print(f"Report: {paths[0]} ({len(paths) - 1} figures beside it)")
    return 0


def main(argv=None):
    """Run the Hydra (or `report`); the exit status: 0 done, 1 bad input or failure, 2 bad flags,
    128 + N on signal N (130 Ctrl-C, 143 SIGTERM), 141 stdout closed."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        parser = build_report_parser()
        args = parser.parse_args(argv[1:])
        return guarded("microgpt-hydra report", args.debug, lambda: run_report(args, parser))
    parser = build_hydra_parser()
    args = parser.parse_args(argv)
    return guarded("microgpt-hydra", args.debug, lambda: run_hydra(args, parser, argv))
