"""The command line: `microgpt`, the creature, and `microgpt-hydra`, the evolution.

`microgpt` follows the seed's main program: read genome.json if there is one, let flags override
it, train on the names, print new ones and a one-line summary of the organism. `microgpt-hydra`
drives microgpt.hydra's engine over a process pool, reports each generation, keeps the run's log
and records in experiments/, and writes the winner to genome.json.
Results go to stdout; progress to stderr, only when it is a terminal; errors are one line.
"""
import argparse
import io
import json
import math
import os
import secrets
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from microgpt import __version__
from microgpt.files import same_file, writable_target
from microgpt.genome import (
    GENE_KEYS,
    OPTIONAL_GENES,
    SEED_MAX,
    GenomeError,
    check_genes,
    load_genome,
    save_genome,
)
from microgpt.heads import DEFAULT_HEADS, HYDRA_HEADS, Classic, KnownNames, make_heads, parse_heads
from microgpt.hydra import (
    CLASSIC,
    MIN_POPULATION,
    HydraConfig,
    Observer,
    choose_winner,
    evaluate_genome,
    evolve,
    finite_or_none,
    full_genome,
    winner_genome,
)
from microgpt.train import Dataset, TrainingConfig, bundled_names_path, load_names, train_and_generate

# The `microgpt` command.

DESCRIPTION = """\
microgpt: a whole GPT, trained and sampled on a scalar autograd engine.

The lifecycle:
  1. Primordial: run `microgpt` with no genome.json and the creature trains with its defaults.
  2. Evolution:  run `microgpt-hydra`; three heads (Weaver, Mirror, Spark) breed the
                 hyperparameters and write the winner's DNA to genome.json.
  3. Evolved:    run `microgpt` again in that directory; it reads genome.json and becomes
                 the evolved creature (different size, depth and learning rate).
Flags override both the genome and the defaults. Delete genome.json to return to the primordial
form."""

# flag -> TrainingConfig field, for the flags that override genes
GENE_FLAGS = {"steps": "steps", "lr": "lr", "emb": "n_emb", "head": "n_head", "layer": "n_layer",
              "ctx": "n_ctx", "ff": "n_ff_exp"}


def _whole(lowest, highest=None):
    """An argparse type: a whole number from lowest (to highest, when given)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lowest or (highest is not None and value > highest):
            bound = f"between {lowest} and {highest}" if highest is not None else f"at least {lowest}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value
    parse.__name__ = "whole number"
    return parse


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _heads_list(text):
    """An argparse type: the head names in a --heads list."""
    try:
        return parse_heads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser():
    p = argparse.ArgumentParser(prog="microgpt", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    g = p.add_argument_group("the organism (override genome.json and the defaults)")
    g.add_argument("-s", "--steps", type=_whole(1), help="training steps, one name each (200)")
    g.add_argument("-l", "--lr", type=_positive_float, help="peak learning rate (0.005)")
    g.add_argument("-e", "--emb", type=_whole(1), help="embedding width n_emb (16)")
    g.add_argument("--head", type=_whole(1), help="attention heads n_head; divides n_emb (4)")
    g.add_argument("-y", "--layer", type=_whole(1), help="transformer layers n_layer (1)")
    g.add_argument("-c", "--ctx", type=_whole(1), help="context length n_ctx (16)")
    g.add_argument("-f", "--ff", type=_whole(1), help="MLP width multiplier n_ff_exp (4)")
    r = p.add_argument_group("the run")
    r.add_argument("-g", "--genome", type=Path,
                   help="genome file to read (default: genome.json here, if present)")
    r.add_argument("-d", "--data", type=Path,
                   help="names to train on, one per line; - reads them from standard input "
                        "(default: the bundled makemore names)")
    r.add_argument("-n", "--samples", type=_whole(0), default=10, help="names to generate (10)")
    r.add_argument("-t", "--temperature", type=_positive_float,
                   help="sampling temperature; lower is safer, higher is wilder "
                        "(the genome's, else 1.0)")
    r.add_argument("--seed", type=_whole(0, SEED_MAX),
                   help="random seed, 0 or more; same seed, same run (the genome's, which "
                        "reproduces its evaluation, else 42)")
    r.add_argument("-q", "--quiet", action="store_true",
                   help="print only the names and the summary line")
    r.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return p


def _genome_config(args):
    """(TrainingConfig from the defaults or the genome, the genome dict or None)."""
    cfg = TrainingConfig()
    path = args.genome if args.genome is not None else Path("genome.json")
    if args.genome is None and not os.path.lexists(path):   # a broken link is an error, not absence
        return cfg, None
    genome = load_genome(path)
    for key in (*GENE_KEYS, *OPTIONAL_GENES):
        if key in genome:
            setattr(cfg, key, genome[key])
    return cfg, genome


@contextmanager
def slow_notice(what, enabled=True):
    """Say on stderr (a terminal) what is happening when it takes more than a second, and when it
    is done, so a big dataset's load is not a silent wait."""
    if not (enabled and sys.stderr.isatty()):
        yield
        return
    start = time.perf_counter()
    timer = threading.Timer(1.0, lambda: print(f"{what} ...", file=sys.stderr, flush=True))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if time.perf_counter() - start >= 1.0:
            print(f"{what}: done in {time.perf_counter() - start:.1f}s", file=sys.stderr)


def _progress_bar(total, enabled):
    """(progress callback, tqdm bar) drawing the running loss on stderr, or (None, None)."""
    if not enabled:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, desc="training", unit="step", file=sys.stderr, leave=False)
    running = []

    def update(step, loss):
        running.append(loss)
        if step % 10 == 9 or step == total - 1:
            window = running[-50:]
            bar.set_postfix(loss=f"{sum(window) / len(window):.4f}", refresh=False)
            bar.update(step + 1 - bar.n)
    return update, bar


def run(args, parser):
    cfg, genome = _genome_config(args)
    changed = []                      # genes the flags set to something other than they were
    for flag, key in GENE_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            if value != getattr(cfg, key):
                changed.append(f"{key}={value}")
            setattr(cfg, key, value)
    try:
        check_genes({k: getattr(cfg, k) for k in GENE_FLAGS.values()}, "with these flags")
    except GenomeError as exc:
        parser.error(str(exc))
    for flag, key in (("temperature", "temperature"), ("seed", "seed")):
        value = getattr(args, flag)
        if value is not None and genome is not None and key in genome and value != genome[key]:
            changed.append(f"{key}={value}")
        if value is not None:
            setattr(cfg, key, value)
    cfg.gen_samples = args.samples
    cfg.input_file = str(args.data) if args.data is not None else None
    with slow_notice(f"loading the names from {args.data}", args.data is not None and not args.quiet):
        dataset = Dataset(load_names(cfg.input_file, progress=not args.quiet and sys.stderr.isatty()))

    out = sys.stdout
    if not args.quiet:
        if genome is not None:
            loss = genome.get("loss")
            loss_text = f"{loss:.4f}" if isinstance(loss, (int, float)) else "unknown"
            print("=== MicroGPT [Evolved] ===", file=out)
            print(f"Loaded genome from generation {genome.get('generation', 0)} "
                  f"(loss: {loss_text})", file=out)
        else:
            print("=== MicroGPT [Primordial] ===", file=out)
            print("No genome found. Running with default parameters.", file=out)
            print("Run `microgpt-hydra` to evolve one.", file=out)
        print(f"Config: Emb:{cfg.n_emb} Head:{cfg.n_head} Lay:{cfg.n_layer} Ctx:{cfg.n_ctx} "
              f"FF:{cfg.n_ff_exp} LR:{cfg.lr:.4f} Steps:{cfg.steps} T:{cfg.temperature:.2f} "
              f"Seed:{cfg.seed}", file=out)
        print(file=out)
        out.flush()

    progress, bar = _progress_bar(cfg.steps, not args.quiet and sys.stderr.isatty())
    try:
        result = train_and_generate(cfg, progress=progress, dataset=dataset)
    finally:
        if bar is not None:
            bar.close()
    for name in result.names:
        print(name, file=out)
    origin = "evolved" if genome is not None else "default"
    if changed:
        origin += f" with {', '.join(changed)}"
    print(f"{chr(10) if result.names else ''}Organism: {origin} | Loss: {result.final_loss:.4f} "
          f"| Val loss: {result.val_loss:.4f} | Params: {result.num_params}", file=out)
    return 0


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread, so the command stops as it does on Ctrl-C."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


def exit_status(interrupt):
    """128 + the signal that stopped us: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


def ignore_stop_signals():
    """From here on a second Ctrl-C or SIGTERM does not cut the clean-up short."""
    for sig in (signal.SIGINT, *STOP_SIGNALS):
        signal.signal(sig, signal.SIG_IGN)


class OutputError(ValueError):
    """Writing a result to stdout failed (a full disk, a closed device)."""


# The banner's box characters, for a stream whose encoding lacks them (PYTHONIOENCODING=ascii).
ASCII_FALLBACK = str.maketrans({"━": "=", "—": "-", "·": "-", "×": "x", "…": "...", "→": "->"})


class Output(io.TextIOBase):
    """stdout as the commands write to it: box characters in plain ASCII where the stream cannot
    encode them (other characters escaped), and a failed write turned into one line naming it."""

    def __init__(self, stream, name="stdout"):
        self.stream, self.name = stream, name
        try:
            "━—·×".encode(getattr(stream, "encoding", None) or "utf-8")
            self.plain = False
        except (UnicodeEncodeError, LookupError):
            self.plain = True
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="backslashreplace")

    def _guard(self, write, *args):
        try:
            return write(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write to {self.name} ({exc.strerror or exc})") from None

    def write(self, text):
        return self._guard(self.stream.write, text.translate(ASCII_FALLBACK) if self.plain else text)

    def flush(self):
        self._guard(self.stream.flush)

    def isatty(self):
        return self.stream.isatty()

    def fileno(self):
        return self.stream.fileno()


def _silence_stdout():
    """Point fd 1 at /dev/null, so the interpreter's last flush of stdout cannot fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def error_text(exc):
    """One line for exc: an OSError as 'file: reason', never '[Errno N] ...'."""
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        return f"{where}: {exc.strerror}" if where else exc.strerror
    return str(exc)


def _guarded(prog, debug, run):
    """run()'s exit status, with signals, a closed or full stdout and bad input turned into one
    line: 0 done, 1 bad input or failure, 128 + N on signal N (130 Ctrl-C, 143 SIGTERM), 141
    stdout closed."""
    real_stdout = sys.stdout
    sys.stdout = Output(real_stdout)
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, *STOP_SIGNALS)} if in_main else {}
    for sig in STOP_SIGNALS if in_main else ():
        signal.signal(sig, _raise_stopped)
    try:
        status = run()
        sys.stdout.flush()
        return status
    except KeyboardInterrupt as exc:
        if in_main:
            ignore_stop_signals()
        print(f"{prog}: interrupted", file=sys.stderr)
        return exit_status(exc)
    except BrokenPipeError:                # stdout closed early (`| head`): stop quietly
        _silence_stdout()
        return 141
    except (ValueError, OSError) as exc:   # GenomeError, dataset and file errors
        if isinstance(exc, OutputError):
            _silence_stdout()
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {error_text(exc)}", file=sys.stderr)
        return 1
    finally:
        sys.stdout = real_stdout
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv=None):
    """Run the creature; the exit status: 0 done, 1 bad input, 2 bad flags, 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return _guarded("microgpt", args.debug, lambda: run(args, parser))


# The `microgpt-hydra` command.

HYDRA_DESCRIPTION = """\
microgpt-hydra: breed microgpt's hyperparameters and write the winner to genome.json.

The lifecycle:
  1. Primordial: `microgpt` trains with its defaults ("I am unformed").
  2. Evolution:  `microgpt-hydra` awakens the Hydra. Three heads, each an island of
                 organisms (genomes: n_emb, n_head, n_layer, lr, temperature, n_ctx,
                 n_ff_exp), evolve in isolation: every organism trains a GPT and samples
                 names, which its head scores:
                   Weaver (flow: vowel/consonant rhythm),
                   Mirror (symmetry: palindromes, repeated halves),
                   Spark (creativity: names not in the training data),
                   and, with --heads, Origin (the held-out loss).
                 Each generation a head keeps its 2 best, re-judges them on a fresh seed
                 (an organism ranks on the mean of its trials) and refills with their
                 mutants. Between cycles comes the Gathering: every head takes in the
                 other heads' champions, which replace its worst. At the end the run's
                 best organisms by standing (their mean percentile under the heads among
                 the first generation, which is random genomes) are re-judged on fresh
                 seeds, and the best one's DNA is written to genome.json, with the
                 training seed that reproduces its first evaluation.
  3. Evolved:    `microgpt` in that directory reads genome.json and becomes the evolved
                 creature ("I have become").

--classic runs the seed's legacy evolution instead: one population of 12 for 5 generations
on 1.0*flow + 1.2*symmetry + 2.0*creativity.

Every run leaves experiments/<hydra|classic>-<time>.log (what it printed) and .jsonl (every
evaluation, appended as it finishes). The same --seed gives the same genome.json for any
--workers. Ctrl-C stops at once and leaves any existing genome.json untouched."""


def worker_init():
    """Pool initializer: Ctrl-C is the parent's to handle (it stops the workers itself), and on
    Linux a worker is killed when its parent dies, even by SIGKILL, instead of living on."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in STOP_SIGNALS:            # the parent's handlers came along with the fork
        signal.signal(sig, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


def default_workers():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def build_hydra_parser():
    p = argparse.ArgumentParser(prog="microgpt-hydra", description=HYDRA_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    e = p.add_argument_group("the evolution")
    e.add_argument("--heads", metavar="LIST", type=_heads_list,
                   help=f"comma-separated heads from {', '.join(HYDRA_HEADS)} ({DEFAULT_HEADS})")
    e.add_argument("--cycles", metavar="N", type=_whole(1, 10_000),
                   help="cycles of isolation, with a Gathering between them (5)")
    e.add_argument("--generations", metavar="N", type=_whole(1, 10_000), help="generations per cycle (3)")
    e.add_argument("--population", metavar="N", type=_whole(MIN_POPULATION, 10_000),
                   help="organisms per head (8; 12 with --classic)")
    e.add_argument("--classic", action="store_true",
                   help="the legacy single-objective evolution (one population of 12, 5 generations)")
    o = p.add_argument_group("each organism")
    o.add_argument("--steps", metavar="N", type=_whole(1, 100_000), default=HydraConfig.steps,
                   help="training steps (%(default)s)")
    o.add_argument("--samples", metavar="N", type=_whole(1, 10_000), default=HydraConfig.samples,
                   help="names sampled and scored (%(default)s)")
    o.add_argument("--data", metavar="PATH", type=Path,
                   help="names to train on, one per line (default: the bundled makemore names)")
    r = p.add_argument_group("the run")
    r.add_argument("--workers", metavar="N", type=_whole(1, 4096), default=default_workers(),
                   help="worker processes, at most one per evaluation of a generation "
                        "(all cores: %(default)s)")
    r.add_argument("--seed", metavar="N", type=_whole(0, SEED_MAX),
                   help="run seed, 0 or more; the same seed gives the same run "
                        "(default: a fresh one, printed)")
    r.add_argument("--out", metavar="PATH", type=Path, default=Path("genome.json"),
                   help="where to write the winner (genome.json)")
    r.add_argument("--experiments", metavar="DIR", type=Path, default=Path("experiments"),
                   help="directory for the run's log and records (experiments)")
    r.add_argument("-q", "--quiet", action="store_true",
                   help="print only the final table, not every generation")
    r.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return p


def open_experiment(directory, prefix):
    """(log file, records file) opened new in directory: <prefix>-YYYYmmdd-HHMMSS[-n].log/.jsonl."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"--experiments {directory}: is a file, not a directory") from None
    except OSError as exc:
        raise ValueError(f"--experiments {directory}: cannot create it ({exc.strerror})") from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        stem = f"{prefix}-{stamp}" + (f"-{n}" if n > 1 else "")
        try:
            log = open(directory / f"{stem}.log", "x", encoding="utf-8")
        except FileExistsError:
            continue
        try:
            return log, open(directory / f"{stem}.jsonl", "x", encoding="utf-8")
        except BaseException:
            log.close()
            raise
    raise OSError(f"{directory}: too many runs started in the same second")


def describe(genome):
    return (f"Emb:{genome['n_emb']} Head:{genome['n_head']} Lay:{genome['n_layer']} "
            f"LR:{genome['lr']:.4f} T:{genome['temperature']:.2f} Ctx:{genome['n_ctx']} "
            f"FF:{genome['n_ff_exp']}")


def show_score(x):
    return f"{x:.2f}" if math.isfinite(x) else "failed"


class Report(Observer):
    """The command's view of a run: stdout, the log, the records and a progress bar on stderr."""

    def __init__(self, cfg, heads, log, records, quiet, progress):
        self.cfg, self.heads, self.log, self.records = cfg, heads, log, records
        self.quiet, self.progress = quiet, progress
        self.width = max(len(h.name) for h in heads) + 2
        self.bar = None
        self.todo, self.done = {}, {}       # per head, this generation

    def say(self, text="", chatter=True):
        """A line for the log, and for stdout unless it is chatter and the run is quiet."""
        self.log.write(text + "\n")
        self.log.flush()
        if not (chatter and self.quiet):
            print(text, flush=True)

    def record(self, event, **fields):
        self.records.write(json.dumps({"event": event, **fields}, allow_nan=False) + "\n")
        self.records.flush()

    def note(self, text):
        """A line for the log only."""
        self.log.write(text + "\n")
        self.log.flush()

    def warn(self, text):
        """A line for the log and stderr (around the progress bar)."""
        self.note(text)
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def champion_line(self, head, organism):
        tag = f"[{head.name}]".ljust(self.width)
        born = "" if organism.head == head.name else f" (from {organism.head})"
        return (f"{tag} Champion: {describe(organism.genome)} -> "
                f"Score: {show_score(organism.fitness(head.name))} ({head.objective}){born}")

    def generation_started(self, cycle, generation, todo):
        cfg = self.cfg
        self.say(f"Cycle {cycle + 1}/{cfg.cycles} · Generation {generation + 1}/{cfg.generations}"
                 f" ({len(todo)} to evaluate)")
        self.todo = {h.name: sum(o.head == h.name for o in todo) for h in self.heads}
        self.done = dict.fromkeys(self.todo, 0)
        if self.progress:
            from tqdm import tqdm
            self.bar = tqdm(total=len(todo), unit="eval", file=sys.stderr, leave=False,
                            desc=f"cycle {cycle + 1}/{cfg.cycles} gen {generation + 1}/"
                                 f"{cfg.generations}", postfix=self.counts())

    def counts(self):
        """'Weaver 3/6  Mirror 2/6  Spark 6/6': this generation's evaluations done per head."""
        return "  ".join(f"{h} {self.done[h]}/{n}" for h, n in self.todo.items())

    def evaluated(self, organism):
        birth = organism.of or organism           # a re-judging's organism
        record = {
            "organism": organism.id, "head": organism.head, "cycle": organism.cycle + 1,
            "generation": organism.generation + 1, "index": organism.index, "seed": organism.seed,
            "trial": organism.trial + 1, "parent": birth.parent,
            "genome": full_genome(organism.genome, self.cfg.steps),
            "scores": {h: finite_or_none(s) for h, s in organism.scores.items()},
            "fitness": finite_or_none(organism.scores.get(organism.head)),
            "names": organism.names, "error": organism.error, "attempts": organism.attempts}
        for key in ("val_loss", "final_loss", "num_params", "seconds"):
            record[key] = finite_or_none(organism.result.get(key)) if organism.result else None
        self.record("evaluation", **record)
        if organism.error is not None:
            self.warn(f"microgpt-hydra: {organism.id} ({describe(organism.genome)}) failed, "
                      f"scored worst: {organism.error}")
        self.done[organism.head] += 1
        if self.bar is not None:
            self.bar.set_postfix_str(self.counts(), refresh=False)
            self.bar.update(1)

    def generation(self, cycle, generation, populations):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        for h in self.heads:
            self.say("  " + self.champion_line(h, populations[h.name][0]))
        self.record("generation", cycle=cycle + 1, generation=generation + 1,
                    ranking={h: [o.id for o in pop] for h, pop in populations.items()})

    def gathering(self, cycle, pool, received):
        sizes = sorted({len(v) for v in received.values()})
        took = "/".join(str(n) for n in sizes)
        self.say(f"  >> The Gathering: {len(pool)} champions pooled; each head took in {took} "
                 f"of the others'. The organism learns from all heads.")
        self.record("gathering", cycle=cycle + 1, pool=[o.id for o in pool],
                    received={h: [o.id for o in imm] for h, imm in received.items()})

    def cycle_done(self, cycle, seconds):
        self.say(f"  Cycle {cycle + 1} took {seconds:.1f}s")
        self.say()

    def final_started(self, finalists, todo):
        self.say(f"The final judgement: the run's {plural(len(finalists), 'best organism')} "
                 f"re-judged on fresh seeds ({len(todo)} to evaluate)")
        self.todo = {h.name: sum(o.head == h.name for o in todo) for h in self.heads}
        self.done = dict.fromkeys(self.todo, 0)
        if self.progress:
            from tqdm import tqdm
            self.bar = tqdm(total=len(todo), unit="eval", file=sys.stderr, leave=False,
                            desc="final judgement", postfix=self.counts())

    def retrying(self, organisms):
        self.warn(f"microgpt-hydra: a worker process died; retrying {len(organisms)} lost "
                  f"evaluation{'s' if len(organisms) != 1 else ''} in a new pool")

    def close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class WorkerPool:
    """The command's process pool: replaced when a worker dies, its workers killed on Ctrl-C."""

    def __init__(self, workers):
        self.workers = workers
        self.executor = self._new()

    def _new(self):
        return ProcessPoolExecutor(max_workers=self.workers, initializer=worker_init)

    def respawn(self, broken):
        broken.shutdown(wait=False, cancel_futures=True)
        self.executor = self._new()
        return self.executor

    def kill(self):
        """Stop at once: cancel what waits, terminate what runs."""
        processes = list((getattr(self.executor, "_processes", None) or {}).values())
        self.executor.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            p.terminate()
        for p in processes:
            p.join(timeout=5)

    def close(self):
        self.executor.shutdown(wait=True)


def _configure_hydra(args, parser):
    """(HydraConfig, heads, mode) from the flags; ValueError for bad input."""
    if args.classic and args.heads is not None:
        parser.error("--classic has its own combined objective; drop --heads")
    defaults = CLASSIC if args.classic else {}
    sizes = {k: getattr(args, k) if getattr(args, k) is not None
             else defaults.get(k, getattr(HydraConfig, k))
             for k in ("population", "generations", "cycles")}
    if args.data is not None and str(args.data) == "-":
        parser.error("--data -: Hydra's workers read the names from a file; give its path")
    data = str(args.data.resolve()) if args.data is not None else None
    # before any work: the winner must have somewhere to go, and never over the names
    target = writable_target(args.out, "--out")
    if same_file(target, data if data is not None else bundled_names_path()):
        raise ValueError(f"--out {args.out}: is the file of training names; choose another path")
    with slow_notice(f"loading the names from {args.data}", data is not None and not args.quiet):
        known = KnownNames(load_names(data, progress=not args.quiet and sys.stderr.isatty()))
    if args.classic:
        heads = [Classic(known)]
    else:
        heads = make_heads(args.heads if args.heads is not None else parse_heads(DEFAULT_HEADS), known)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    cfg = HydraConfig(steps=args.steps, samples=args.samples, seed=seed, data=data, **sizes)
    return cfg, heads, "classic" if args.classic else "hydra"


def plural(n, word, words=None):
    """'1 Head', '3 Heads'."""
    return f"{n} {word if n == 1 else words or word + 's'}"


def banner(cfg, heads, mode, workers):
    rule = "━" * 66
    if mode == "classic":
        title = (f"Classic Evolution — one population of {cfg.population}, "
                 f"{plural(cfg.generations, 'generation')}, 1.0·flow + 1.2·symmetry + 2.0·creativity")
    else:
        title = (f"Hydra Evolution — {plural(len(heads), 'Head')}, {plural(cfg.cycles, 'Cycle')} × "
                 f"{plural(cfg.generations, 'Generation')}, "
                 f"{plural(cfg.population, 'organism')} per head")
    return [title, f"  {plural(cfg.steps, 'step')} and {plural(cfg.samples, 'name')} per organism, "
                   f"seed {cfg.seed}, {plural(workers, 'worker')}", rule]


def ascend(evolution, report, mode, out):
    """Print the final table, choose the winner and write it to out: the genome written."""
    head, winner, winner_standing = choose_winner(evolution)
    report.close_bar()
    report.say("━" * 66, chatter=False)
    report.say("Hydra Ascended" if mode == "hydra" else "Evolution Complete", chatter=False)
    for h in evolution.heads:
        champion = evolution.champions[h.name]
        report.say("  " + report.champion_line(h, champion), chatter=False)
        report.say(" " * (report.width + 3) + ", ".join(champion.shown_names()), chatter=False)
    genome = winner_genome(winner, winner_standing, evolution, mode)
    loss = "unknown" if genome["loss"] is None else f"{genome['loss']:.4f}"
    scores = ", ".join(f"{h.name} {show_score(winner.fitness(h.name))}" for h in evolution.heads)
    report.say(f"Winner: [{head}] {describe(winner.genome)}, born in generation "
               f"{genome['generation']} (val_loss {loss})", chatter=False)
    report.say(f"  mean of {plural(genome['trials'], 'trial')}: {scores}; standing "
               f"{winner_standing:.2f} among the first generation's random genomes", chatter=False)
    report.record("winner", genome=genome)     # kept even if writing out fails
    try:
        _, kept = save_genome(out, genome, "--out")
    except (ValueError, OSError) as exc:
        raise ValueError(f"could not write the winner to {out} ({error_text(exc)}); its genome is "
                         f"recorded in {report.records.name}") from None
    if kept is not None:
        report.say(f"Replaced {out}; the genome it held is kept as {kept}", chatter=False)
    return genome


def run_hydra(args, parser, argv, evaluate=evaluate_genome):
    """The command after parsing: 0, or 128 + N on signal N; bad input raises ValueError or OSError."""
    cfg, heads, mode = _configure_hydra(args, parser)
    # never more workers than a generation has evaluations
    workers = min(args.workers, cfg.population * len(heads))
    log, records = open_experiment(args.experiments, mode)
    report = Report(cfg, heads, log, records, args.quiet,
                    progress=sys.stderr.isatty() and not args.quiet)
    started, pool, genome = time.perf_counter(), None, None
    try:
        report.note(f"$ microgpt-hydra {' '.join(argv)}\nstarted {time.strftime('%Y-%m-%d %H:%M:%S')}")
        report.record("run", mode=mode, heads=[h.name for h in heads], population=cfg.population,
                      generations=cfg.generations, cycles=cfg.cycles, steps=cfg.steps,
                      samples=cfg.samples, seed=cfg.seed, data=cfg.data, workers=workers,
                      out=str(args.out))
        for line in banner(cfg, heads, mode, workers):
            report.say(line)
        pool = WorkerPool(workers)
        evolution = evolve(heads, pool.executor, cfg, evaluate=evaluate, respawn=pool.respawn,
                           observer=report)
        pool.close()
        genome = ascend(evolution, report, mode, args.out)
        failed = sum(o.error is not None for o in evolution.evaluations)
        report.say(f"Wrote {args.out} after {len(evolution.evaluations)} evaluations "
                   f"({failed} failed) in {time.perf_counter() - started:.1f}s. "
                   f"Run `microgpt` to meet the evolved creature.", chatter=False)
        report.say(f"Log: {log.name}", chatter=False)
        report.record("end", status="completed", winner=genome["organism"], out=str(args.out),
                      seconds=time.perf_counter() - started)
        return 0
    except KeyboardInterrupt as exc:      # Ctrl-C, SIGTERM, SIGHUP
        ignore_stop_signals()
        if pool is not None:
            pool.kill()
        report.close_bar()
        outcome = f"{args.out} untouched" if genome is None else f"{args.out} was written"
        why = (f"stopped by {signal.Signals(exc.signum).name}" if isinstance(exc, Stopped)
               else "interrupted")
        report.note(f"{why.capitalize()} after {time.perf_counter() - started:.1f}s; {outcome}.")
        report.record("end", status="interrupted", signal=exit_status(exc) - 128,
                      seconds=time.perf_counter() - started)
        print(f"microgpt-hydra: {why}; {outcome} (log: {log.name})", file=sys.stderr)
        return exit_status(exc)
    except Exception as exc:             # recorded, then reported by main
        report.close_bar()
        report.note(f"Failed: {exc}")
        report.record("end", status="failed", reason=str(exc))
        raise
    finally:
        if pool is not None:            # after close() there is nothing left to kill
            pool.kill()
        report.close_bar()
        log.close()
        records.close()


def hydra_main(argv=None):
    """Run the Hydra; the exit status: 0 done, 1 bad input or failure, 2 bad flags, 128 + N on
    signal N (130 Ctrl-C, 143 SIGTERM), 141 stdout closed."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_hydra_parser()
    args = parser.parse_args(argv)
    return _guarded("microgpt-hydra", args.debug, lambda: run_hydra(args, parser, argv))
