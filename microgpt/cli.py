"""The `microgpt` command: the creature. Primordial with the defaults, evolved from genome.json.

Follows the seed's main program: read genome.json if there is one, let flags override it, train
on the names, print new ones and a one-line summary of the organism.
"""
import argparse
import math
import os
import sys
import traceback
from pathlib import Path

from microgpt.genome import GenomeError, check_genes, load_genome
from microgpt.train import TrainingConfig, load_names, train_and_generate

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


def _whole(lowest):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be at least {lowest}, got {value}")
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
    for key in ("n_emb", "n_ctx", "n_layer", "n_head", "n_ff_exp", "steps", "lr"):
        setattr(cfg, key, genome[key])
    return cfg, genome


def _progress_bar(total, enabled):
    """A progress callback drawing a bar with the running loss on stderr, or None."""
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
    names = load_names(cfg.input_file)

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
        result = train_and_generate(cfg, progress=progress, names=names)
    finally:
        if bar is not None:
            bar.close()
    for name in result.names:
        print(name, file=out)
    origin = "evolved" if genome is not None else "default"
    print(f"\nOrganism: {origin} | Loss: {result.final_loss:.4f} | Val loss: {result.val_loss:.4f} "
          f"| Params: {result.num_params}", file=out)
    return 0


def main(argv=None):
    """Run the creature; the exit status: 0 done, 1 bad input, 2 bad flags, 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args, parser)
    except KeyboardInterrupt:
        print("microgpt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                # stdout closed early (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ValueError, OSError) as exc:   # GenomeError and dataset errors are ValueErrors
        if args.debug:
            traceback.print_exc()
        print(f"microgpt: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
