"""The command line: `microgpt`, the creature, and `microgpt-hydra`, the evolution.

`microgpt` follows the seed's main program: read genome.json if there is one, let flags override
it, train on the names, print new ones and a one-line summary of the organism. `microgpt-hydra`
drives microgpt.hydra's engine over a process pool, reports each generation, keeps the run's log
and records in experiments/, and writes the winner to genome.json.
Results go to stdout; progress to stderr, only when it is a terminal; errors are one line.
"""
import argparse
import json
import math
import os
import secrets
import signal
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from microgpt.genome import GENE_KEYS, GenomeError, check_genes, load_genome, save_genome
from microgpt.heads import DEFAULT_HEADS, HYDRA_HEADS, Classic, make_heads
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
from microgpt.train import Dataset, TrainingConfig, load_names, train_and_generate

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


def build_parser():
    p = argparse.ArgumentParser(prog="microgpt", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
                   help="names to train on, one per line (default: the bundled makemore names)")
    r.add_argument("-n", "--samples", type=_whole(0), default=10, help="names to generate (10)")
    r.add_argument("-t", "--temperature", type=_positive_float, default=1.0,
                   help="sampling temperature; lower is safer, higher is wilder (1.0)")
    r.add_argument("--seed", type=int, default=42, help="random seed; same seed, same run (42)")
    r.add_argument("-q", "--quiet", action="store_true",
                   help="print only the names and the summary line")
    r.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return p


def _genome_config(args):
    """(TrainingConfig from the defaults or the genome, the genome dict or None)."""
    cfg = TrainingConfig()
    path = args.genome if args.genome is not None else Path("genome.json")
    if args.genome is None and not path.exists():
        return cfg, None
    genome = load_genome(path)
    for key in GENE_KEYS:
        setattr(cfg, key, genome[key])
    return cfg, genome


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
    for flag, key in GENE_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            setattr(cfg, key, value)
    try:
        check_genes({k: getattr(cfg, k) for k in GENE_FLAGS.values()}, "with these flags")
    except GenomeError as exc:
        parser.error(str(exc))
    cfg.gen_samples = args.samples
    cfg.temperature = args.temperature
    cfg.seed = args.seed
    cfg.input_file = str(args.data) if args.data is not None else None
    dataset = Dataset(load_names(cfg.input_file))

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
              f"FF:{cfg.n_ff_exp} LR:{cfg.lr:.4f} Steps:{cfg.steps} Seed:{cfg.seed}", file=out)
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
    print(f"\nOrganism: {origin} | Loss: {result.final_loss:.4f} | Val loss: {result.val_loss:.4f} "
          f"| Params: {result.num_params}", file=out)
    return 0


def _guarded(prog, debug, run):
    """run()'s exit status, with Ctrl-C, a closed stdout and bad input turned into one line."""
    try:
        return run()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                # stdout closed early (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ValueError, OSError) as exc:   # GenomeError, dataset and file errors
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


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
                 organisms (genomes: n_emb, n_head, n_layer, lr), evolve in isolation:
                 every organism trains a GPT and samples names, which its head scores:
                   Weaver (flow: vowel/consonant rhythm),
                   Mirror (symmetry: palindromes, repeated halves),
                   Spark (creativity: names not in the training data),
                   and, with --heads, Origin (the held-out loss).
                 Each generation a head keeps its 2 best and refills with their mutants.
                 Between cycles comes the Gathering: every head takes in the other heads'
                 champions, which replace its worst. After the last cycle the winner is
                 the champion with the best mean percentile across the heads (its scores
                 ranked against every evaluation of the run, so no head's scale
                 dominates), and its DNA is written to genome.json.
  3. Evolved:    `microgpt` in that directory reads genome.json and becomes the evolved
                 creature ("I have become").

--classic runs the seed's legacy evolution instead: one population of 12 for 5 generations
on 1.0*flow + 1.2*symmetry + 2.0*creativity.

Every run leaves experiments/<hydra|classic>-<time>.log (what it printed) and .jsonl (every
evaluation, appended as it finishes). The same --seed gives the same genome.json for any
--workers. Ctrl-C stops at once and leaves any existing genome.json untouched."""


def ignore_sigint():
    """Pool initializer: Ctrl-C is the parent's to handle; it stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def default_workers():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def build_hydra_parser():
    p = argparse.ArgumentParser(prog="microgpt-hydra", description=HYDRA_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    e = p.add_argument_group("the evolution")
    e.add_argument("--heads", metavar="LIST", help=f"comma-separated heads from {', '.join(HYDRA_HEADS)} "
                                   f"({DEFAULT_HEADS})")
    e.add_argument("--cycles", metavar="N", type=_whole(1, 10_000),
                   help="cycles of isolation, with a Gathering between them (5)")
    e.add_argument("--generations", metavar="N", type=_whole(1, 10_000), help="generations per cycle (3)")
    e.add_argument("--population", metavar="N", type=_whole(MIN_POPULATION, 10_000),
                   help="organisms per head (8; 12 with --classic)")
    e.add_argument("--classic", action="store_true",
                   help="the legacy single-objective evolution (one population of 12, 5 generations)")
    o = p.add_argument_group("each organism")
    o.add_argument("--steps", metavar="N", type=_whole(1, 100_000), default=300, help="training steps (300)")
    o.add_argument("--samples", metavar="N", type=_whole(1, 10_000), default=20,
                   help="names sampled and scored (20)")
    o.add_argument("--data", metavar="PATH", type=Path,
                   help="names to train on, one per line (default: the bundled makemore names)")
    r = p.add_argument_group("the run")
    r.add_argument("--workers", metavar="N", type=_whole(1, 4096), default=default_workers(),
                   help="worker processes (all cores: %(default)s)")
    r.add_argument("--seed", metavar="N", type=_whole(0, 2**63 - 1),
                   help="run seed; the same seed gives the same run (default: a fresh one, printed)")
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
    directory.mkdir(parents=True, exist_ok=True)
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
            f"LR:{genome['lr']:.4f}")


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
        record = {
            "organism": organism.id, "head": organism.head, "cycle": organism.cycle + 1,
            "generation": organism.generation + 1, "index": organism.index, "seed": organism.seed,
            "genome": full_genome(organism.genome, self.cfg.steps),
            "scores": {h: finite_or_none(s) for h, s in organism.scores.items()},
            "fitness": finite_or_none(organism.fitness(organism.head)),
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
        return ProcessPoolExecutor(max_workers=self.workers, initializer=ignore_sigint)

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
    data = str(args.data.resolve()) if args.data is not None else None
    training_names = load_names(data)
    if args.classic:
        heads = [Classic(training_names)]
    else:
        heads = make_heads(args.heads if args.heads is not None else DEFAULT_HEADS, training_names)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    cfg = HydraConfig(steps=args.steps, samples=args.samples, seed=seed, data=data, **sizes)
    out = args.out
    if out.is_dir():
        raise ValueError(f"--out {out}: is a directory")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise ValueError(f"--out {out}: directory {out.parent} does not exist")
    return cfg, heads, "classic" if args.classic else "hydra"


def banner(cfg, heads, mode, workers):
    rule = "━" * 66
    if mode == "classic":
        title = (f"Classic Evolution — one population of {cfg.population}, "
                 f"{cfg.generations} generations, 1.0·flow + 1.2·symmetry + 2.0·creativity")
    else:
        title = (f"Hydra Evolution — {len(heads)} Heads, {cfg.cycles} Cycles × {cfg.generations} "
                 f"Generations, {cfg.population} organisms per head")
    return [title, f"  {cfg.steps} steps and {cfg.samples} names per organism, seed {cfg.seed}, "
                   f"{workers} worker{'s' if workers != 1 else ''}", rule]


def ascend(evolution, report, mode, out):
    """Print the final table, choose the winner and write it to out: the genome written."""
    head, winner, winner_standing = choose_winner(evolution)
    report.say("━" * 66, chatter=False)
    report.say("Hydra Ascended" if mode == "hydra" else "Evolution Complete", chatter=False)
    for h in evolution.heads:
        champion = evolution.champions[h.name]
        report.say("  " + report.champion_line(h, champion), chatter=False)
        report.say(" " * (report.width + 3) + ", ".join(champion.shown_names()), chatter=False)
    genome = winner_genome(head, winner, winner_standing, evolution, mode)
    loss = "unknown" if genome["loss"] is None else f"{genome['loss']:.4f}"
    how = "" if len(evolution.heads) == 1 else (
        f", mean standing {winner_standing:.2f} across {', '.join(h.name for h in evolution.heads)}")
    bred = "" if winner.head == head else f", bred by {winner.head}"
    report.say(f"Winner: [{head}] {describe(winner.genome)}, born in generation "
               f"{genome['generation']}{bred} (val_loss {loss}{how})", chatter=False)
    save_genome(out, genome)
    return genome


def run_hydra(args, parser, argv, evaluate=evaluate_genome):
    """The command after parsing: 0, or 130 on Ctrl-C; bad input raises ValueError or OSError."""
    cfg, heads, mode = _configure_hydra(args, parser)
    log, records = open_experiment(args.experiments, mode)
    report = Report(cfg, heads, log, records, args.quiet,
                    progress=sys.stderr.isatty() and not args.quiet)
    started, pool, genome = time.perf_counter(), None, None
    try:
        report.note(f"$ microgpt-hydra {' '.join(argv)}\nstarted {time.strftime('%Y-%m-%d %H:%M:%S')}")
        report.record("run", mode=mode, heads=[h.name for h in heads], population=cfg.population,
                      generations=cfg.generations, cycles=cfg.cycles, steps=cfg.steps,
                      samples=cfg.samples, seed=cfg.seed, data=cfg.data, workers=args.workers,
                      out=str(args.out))
        for line in banner(cfg, heads, mode, args.workers):
            report.say(line)
        pool = WorkerPool(args.workers)
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
    except KeyboardInterrupt:
        if pool is not None:
            pool.kill()
        report.close_bar()
        outcome = f"{args.out} untouched" if genome is None else f"{args.out} was written"
        report.note(f"Interrupted after {time.perf_counter() - started:.1f}s; {outcome}.")
        report.record("end", status="interrupted", seconds=time.perf_counter() - started)
        print(f"microgpt-hydra: interrupted; {outcome} (log: {log.name})", file=sys.stderr)
        return 130
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
    """Run the Hydra; the exit status: 0 done, 1 bad input or failure, 2 bad flags, 130 Ctrl-C,
    141 stdout closed."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_hydra_parser()
    args = parser.parse_args(argv)
    return _guarded("microgpt-hydra", args.debug, lambda: run_hydra(args, parser, argv))
