"""The `microgpt` command: the creature.

Follows the seed's main program: read genome.json if there is one, let flags override it, train
on the names (or wake the saved creature beside the genome), print new ones and a one-line
summary of the organism. Parsing and wiring only. Results go to stdout; progress to stderr, only
when it is a terminal; errors are one line. `microgpt-hydra` is in microgpt.hydra_cli.

Only what this command needs is imported (not the evolution, the store or the pool), so a run
stays small in memory.
"""
import argparse
import math
import os
import sys
from pathlib import Path

from microgpt import __version__
from microgpt.creature import (
    GENES,
    check_letters,
    continue_training,
    creature_path,
    from_training,
    load_creature,
    matches,
    save_creature,
)
from microgpt.errors import MicrogptError, UsageError
from microgpt.files import same_file, writable_target
from microgpt.genes import BY_NAME, SPACE
from microgpt.genome import GENE_KEYS, OPTIONAL_GENES, SEED_MAX, GenomeError, check_genes, load_genome
from microgpt.guard import error_text, guarded, slow_notice
from microgpt.train import (
    Dataset,
    TrainingConfig,
    bundled_names_path,
    generate,
    load_names,
    train_and_generate,
)

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

# flag (argparse's dest) -> TrainingConfig field, for the flags that override genes: the gene
# table's (microgpt.genes), and the training length
GENE_FLAGS = {"steps": "steps", **{g.flags[-1].lstrip("-").replace("-", "_"): g.name
                                   for g in SPACE if g.flags}}


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
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    g = p.add_argument_group("the organism (override genome.json and the defaults)")
    g.add_argument("-s", "--steps", type=_whole(1),
                   help=f"training steps, one name each ({TrainingConfig.steps})")
    for gene in SPACE:                  # the gene table's flags (microgpt.genes)
        if gene.flags:
            g.add_argument(*gene.flags, type=_whole(1) if gene.whole else _positive_float,
                           help=f"{gene.help} (the genome's, else {gene.default():g})")
    r = p.add_argument_group("the run")
    r.add_argument("-g", "--genome", type=Path,
                   help="genome file to read (default: genome.json here, if present)")
    r.add_argument("-d", "--data", type=Path,
                   help="names to train on, one per line; - reads them from standard input "
                        "(default: the bundled makemore names)")
    r.add_argument("-n", "--samples", type=_whole(0), default=10, help="names to generate (10)")
    r.add_argument("--top-k", metavar="K", type=_whole(1),
                   help="sample each character among the K likeliest only (all of them)")
    r.add_argument("--prefix", metavar="TEXT", default="",
                   help="every name begins with TEXT (its characters must be in the names)")
    r.add_argument("--seed", type=_whole(0, SEED_MAX),
                   help="random seed, 0 or more; same seed, same run (the genome's, which "
                        "reproduces its evaluation, else 42)")
    r.add_argument("-q", "--quiet", action="store_true",
                   help="print only the names and the summary line")
    r.add_argument("--debug", action="store_true", help="show a traceback on errors")
    c = p.add_argument_group(
        "the saved creature",
        # (the help's descriptions are kept as written: hence the explicit line breaks)
        "A creature file (.npz) holds a trained model whole: genes, vocabulary, weights,\n"
        "Adam's state. microgpt-hydra saves its winner beside genome.json (genome.npz);\n"
        "`microgpt` there speaks from it without training when it is exactly what it\n"
        "would train (same genes, steps, seed and names).")
    c.add_argument("--save", metavar="PATH", type=Path,
                   help="write the trained creature to PATH (the file it replaces is kept under "
                        "a dated name)")
    c.add_argument("--load", metavar="PATH", type=Path,
                   help="speak from the creature in PATH without training; with --steps N, "
                        "train it N more steps first (the learning rate restarts at its lr, or "
                        "--lr, and falls linearly to 0; Adam carries on)")
    c.add_argument("--retrain", action="store_true",
                   help="train anew even when a saved creature sits beside genome.json")
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
    if args.load is not None:
        return run_loaded(args, parser)
    cfg, genome = _genome_config(args)
    changed = _apply_flags(args, cfg, genome, parser)
    cfg.input_file = str(args.data) if args.data is not None else None
    with slow_notice(f"loading the names from {args.data}", args.data is not None and not args.quiet):
        dataset = Dataset(load_names(cfg.input_file, progress=not args.quiet and sys.stderr.isatty()))
    _check_prefix(args.prefix, dataset.tok.chars, cfg.n_ctx)
    _check_save(args, cfg.input_file)
    # which names made a creature: needed only to wake one or to save one (a big file takes a while)
    sha = dataset.names.sha256() if genome is not None or args.save is not None else None
    creature, note = None, None
    if genome is not None:
        creature, note = _creature_beside(_genome_path(args), cfg, sha, args.retrain)

    out = sys.stdout
    if not args.quiet:
        _greet(genome, note, cfg, out)

    loaded = creature is not None
    if not loaded:
        cfg.gen_samples = 0                       # _speak samples, from the trained creature
        progress, bar = _progress_bar(cfg.steps, not args.quiet and sys.stderr.isatty())
        try:
            result = train_and_generate(cfg, progress=progress, dataset=dataset)
        finally:
            if bar is not None:
                bar.close()
        creature = from_training(result, cfg, sha)
    origin = "evolved" if genome is not None else "default"
    if changed:
        origin += f" with {', '.join(changed)}"
    if loaded:
        origin += f", woken from {creature_path(_genome_path(args))}, not retrained"
    _speak(creature, cfg, args, origin, out)
    return 0


def _apply_flags(args, cfg, genome, parser):
    """Set cfg's genes from the flags given (over the genome's and the defaults), each checked
    against the gene table's caps (a usage error otherwise), and the seed: the genes the flags
    changed, as ['n_emb=32', ...] (a gene of the voice counts as changed only against a
    genome's own value)."""
    changed = []
    for flag, key in (*GENE_FLAGS.items(), ("seed", "seed")):
        value = getattr(args, flag)
        if value is None:
            continue
        gene = BY_NAME.get(key)                     # None: the steps, or the seed
        if key == "seed" or (gene is not None and gene.voice):
            differs = genome is not None and key in genome and value != genome[key]
        else:
            differs = value != getattr(cfg, key)
        if differs:
            changed.append(f"{key}={value}")
        setattr(cfg, key, value)
    try:
        for flag, key in GENE_FLAGS.items():      # each flag given, named, then them together
            if getattr(args, flag) is not None:
                check_genes({key: getattr(args, flag)}, f"--{flag.replace('_', '-')}")
        check_genes({k: getattr(cfg, k) for k in GENE_FLAGS.values()}, "with these flags")
    except GenomeError as exc:
        parser.error(str(exc))
    return changed


def _greet(genome, note, cfg, out):
    """The seed's greeting: Evolved (from which generation) or Primordial, then the config."""
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
    if note:
        print(note, file=out)
    _print_config(cfg, out)


def _genome_path(args):
    return args.genome if args.genome is not None else Path("genome.json")


def _creature_beside(genome_path, cfg, sha, retrain):
    """(the saved creature beside the genome when it is exactly what cfg would train on these
    names, else None; a line saying which it is, or None when there is no creature there)."""
    path = creature_path(genome_path)
    if not os.path.lexists(path):
        return None, None
    if retrain:
        return None, f"Training anew (--retrain); {path} is left as it is."
    try:
        creature = load_creature(path)
    except MicrogptError as exc:
        return None, f"Training anew: {path} cannot be used ({error_text(exc)})."
    if not matches(creature, cfg, sha):
        return None, (f"Training anew: {path} holds another organism (other genes, seed or "
                      f"names than this run's).")
    return creature, (f"Woke the creature saved in {path} ({creature.steps_done} steps, seed "
                      f"{creature.seed}): speaking without training (--retrain trains anew).")


def _print_config(cfg, out):
    """'Config: Emb:16 Head:4 Lay:1 Ctx:16 FF:4 LR:0.0050 Steps:200 T:1.00 Cool:1.00 Seed:42': the
    gene table's model sizes, then its other training genes, the steps, the voice, the seed."""
    def shown(genes):
        return [g.show(getattr(cfg, g.name)) for g in genes]
    sizes = shown(g for g in SPACE if g.whole)
    training = shown(g for g in SPACE if not g.whole and not g.voice)
    voice = shown(g for g in SPACE if g.voice)
    print("Config: " + " ".join([*sizes, *training, f"Steps:{cfg.steps}", *voice, f"Seed:{cfg.seed}"]),
          file=out)
    print(file=out)
    out.flush()


def _speak(creature, cfg, args, origin, out):
    """Print the creature's names and the summary line; save it when --save says so."""
    names = generate(creature.model, creature.tok, args.samples, cfg.temperature, cfg.seed,
                     args.top_k, args.prefix, cfg.cooling)
    for name in names:
        print(name, file=out)
    loss = "unknown" if creature.final_loss is None else f"{creature.final_loss:.4f}"
    val = "unknown" if creature.val_loss is None else f"{creature.val_loss:.4f}"
    print(f"{chr(10) if names else ''}Organism: {origin} | Loss: {loss} | Val loss: {val} "
          f"| Params: {len(creature.model.parameters())}", file=out)
    if args.save is not None:
        out.flush()
        target, kept = save_creature(args.save, creature)
        if not args.quiet:
            print(f"Saved the creature to {args.save}" + (f"; the file it replaced is kept as "
                                                          f"{kept}" if kept else ""), file=out)


def _check_prefix(prefix, chars, n_ctx):
    """UsageError when the creature cannot say prefix: a letter it never saw, or a prefix that
    fills its whole context (every name would be the prefix and nothing more)."""
    unknown = sorted({c for c in prefix if not c.isspace()} - set(chars))
    if unknown:
        raise UsageError(f"--prefix {prefix!r}: {', '.join(map(repr, unknown))} never occurs "
                         f"in the names, so the creature cannot say it")
    letters = sum(not c.isspace() for c in prefix)
    if letters >= n_ctx:
        raise UsageError(f"--prefix {prefix!r}: {letters} letters fill the creature's context "
                         f"of {n_ctx}; it could add nothing (give fewer)")


def _check_save(args, data):
    """Before any training: --save must be writable, and never over the names or the genome."""
    if args.save is None:
        return
    target = writable_target(args.save, "--save")
    if _is_stdin(target) if data == "-" else same_file(target, data or bundled_names_path()):
        raise UsageError(f"--save {args.save}: is the file of training names; choose another path")
    if same_file(target, _genome_path(args)):       # with --load too: genome.json is never a zip
        raise UsageError(f"--save {args.save}: is the genome file; choose another path")


def _is_stdin(path):
    """Whether path is the file standard input reads (`-d - < names.txt`)."""
    try:
        return os.path.samestat(os.fstat(0), os.stat(path))
    except OSError:
        return False


# a saved creature's shape is its own: the flags of whole-number genes (the model's sizes) would
# change it
LOAD_CONFLICTS = (*(f for f, key in GENE_FLAGS.items() if key in BY_NAME and BY_NAME[key].whole),
                  "genome", "retrain")


def run_loaded(args, parser):
    """`microgpt --load PATH`: sample from a saved creature, after --steps more training if asked."""
    given = [f"--{flag}" for flag in LOAD_CONFLICTS if getattr(args, flag) not in (None, False)]
    if given:
        parser.error(f"--load takes the creature as it was saved: {', '.join(given)} cannot "
                     f"change it (only --steps, --lr, -d and the sampling flags apply)")
    if args.data is not None and args.steps is None:
        parser.error("-d/--data is read only to train on: with --load, give --steps N too")
    if args.lr is not None and args.steps is None:
        parser.error("--lr sets the continued training's rate: with --load, give --steps N too")
    creature = load_creature(args.load)
    _check_prefix(args.prefix, creature.tok.chars, creature.genes["n_ctx"])
    cfg = TrainingConfig(**{k: creature.genes[k] for k in GENES}, seed=creature.seed)
    cfg.steps = creature.steps_done + (args.steps or 0)      # after any more training
    voice = {key: getattr(args, flag) for flag, key in GENE_FLAGS.items()
             if key in BY_NAME and BY_NAME[key].voice and getattr(args, flag) is not None}
    for key, value in voice.items():
        setattr(cfg, key, value)
    try:
        for key, value in voice.items():
            check_genes({key: value}, f"--{key}")
    except GenomeError as exc:
        parser.error(str(exc))
    if args.seed is not None:
        cfg.seed = args.seed
    out, dataset = sys.stdout, None
    data = str(args.data) if args.data is not None else None
    if args.steps is not None:
        with slow_notice(f"loading the names from {args.data}", data is not None and not args.quiet):
            dataset = Dataset(load_names(data, progress=not args.quiet and sys.stderr.isatty()))
        check_letters(creature, dataset)             # before anything is printed
    _check_save(args, data)
    lr = args.lr if args.lr is not None else creature.genes["lr"]
    if not args.quiet:
        print("=== MicroGPT [Loaded] ===", file=out)
        print(f"Loaded the creature in {args.load}: {creature.steps_done} steps trained "
              f"(seed {creature.seed}).", file=out)
        if args.steps is not None:
            print(f"Training {args.steps} more steps: the learning rate restarts at {lr:g} and "
                  f"falls to 0; Adam carries on from step {creature.opt.t}.", file=out)
        else:
            print("Speaking without training.", file=out)
        _print_config(cfg, out)
    origin = f"loaded from {args.load}"
    if args.steps is not None:
        progress, bar = _progress_bar(args.steps, not args.quiet and sys.stderr.isatty())
        try:
            continue_training(creature, dataset, args.steps, lr, progress)
        finally:
            if bar is not None:
                bar.close()
        origin += f", trained {args.steps} more steps (now {creature.steps_done})"
    else:
        origin += ", not retrained"
    _speak(creature, cfg, args, origin, out)
    return 0


def main(argv=None):
    """Run the creature; the exit status: 0 done, 1 bad input, 2 bad flags, 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return guarded("microgpt", args.debug, lambda: run(args, parser))
