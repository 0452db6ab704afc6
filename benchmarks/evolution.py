"""Does Hydra's evolution beat random search? Its champions re-judged on fresh seeds, as a user would.

For each run seed: one single-head run per head (`microgpt-hydra --heads H --seed S`) and one
default run (`microgpt-hydra --seed S`). Every genome.json they write, at least 12 random genomes
drawn from Hydra's new-organism distribution (`microgpt.hydra.new_genome`, the run's 300 steps)
and the primordial creature (no genome) are then re-trained by the `microgpt` command on fresh
training seeds (`microgpt -g genome.json --seed T -n N -q`) and their names scored with the heads'
rules. A genome's score under a head is its mean over those seeds. Printed: each single-head
champion's percentile among the random genomes on its own head, and each default winner's (and the
primordial creature's) mean percentile across the three heads. Percentiles count ties half.

With --judges K, K independent judges each draw their own random genomes and their own training
seeds (the first is the one judge of the default), and every percentile is printed per judge and
averaged: how much a verdict owes to the judge's draw is then visible. --genomes judges genome.json
files of your own beside the runs' (a hand-made genome, a run from elsewhere).

    python benchmarks/evolution.py                          # run seeds 1 2 3, 12 random genomes
    python benchmarks/evolution.py --seeds 1 --randoms 16 --judge-seeds 5 --names 300
    python benchmarks/evolution.py --runs default --seeds 0 1 2 3 4 5 6 7 8 --judges 5
    python benchmarks/evolution.py --runs none --genomes mine.json --judges 5
"""
import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from microgpt.genome import GenomeError, load_genome
from microgpt.heads import Mirror, Spark, Weaver
from microgpt.hydra import full_genome, new_genome
from microgpt.train import load_names

BIN = Path(sys.executable).parent
HEADS = ("weaver", "mirror", "spark")


def command(name):
    path = BIN / name
    return str(path) if path.exists() else shutil.which(name)


def evolve(args, heads, seed, where):
    """Run microgpt-hydra in where: (the genome.json written, wall seconds)."""
    where.mkdir(parents=True)
    cmd = [command("microgpt-hydra"), "--seed", str(seed), "--workers", str(args.workers), "-q"]
    if heads:
        cmd += ["--heads", heads]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=where, check=True, capture_output=True, text=True)
    return where / "genome.json", time.perf_counter() - start


def hear(genome_path, seed, names, where):
    """The names `microgpt` prints for a genome (None: the primordial creature) and a seed."""
    cmd = [command("microgpt"), "--seed", str(seed), "-n", str(names), "-q"]
    if genome_path is not None:
        cmd += ["-g", str(genome_path)]
    out = subprocess.run(cmd, cwd=where, check=True, capture_output=True, text=True).stdout
    return out.split("\n\nOrganism:")[0].splitlines() if not out.startswith("Organism:") else []


def judge(genomes, seeds, args, where):
    """{label: {head: mean score over the seeds}} for {label: genome path or None}."""
    heads = {"weaver": Weaver(), "mirror": Mirror(), "spark": Spark(load_names())}
    jobs = [(label, path, s) for label, path in genomes.items() for s in seeds]
    with ThreadPoolExecutor(args.workers) as pool:
        heard = list(pool.map(lambda job: hear(job[1], job[2], args.names, where), jobs))
    scores = {label: {h: [] for h in heads} for label in genomes}
    for (label, _, _), names in zip(jobs, heard):
        for h, head in heads.items():
            scores[label][h].append(head.score(names))
    return {label: {h: statistics.mean(v) for h, v in per.items()} for label, per in scores.items()}


def verdict(j, runs, args, where):
    """Judge j's verdict on the genomes in runs: ({label: {head: percentile among its random
    genomes}}, its random genomes' scores {head: [score]}, every score {label: {head: score}})."""
    rng = random.Random(2026 + j)                   # judge 0: the one judge of earlier tables
    genomes = dict(runs)
    for k in range(args.randoms):
        path = where / f"judge-{j}-random-{k}.json"
        path.write_text(json.dumps(full_genome(new_genome(rng), 300)))
        genomes[f"random {k}"] = path
    seeds = [10_000 + 7919 * k + 104_729 * j for k in range(args.judge_seeds)]  # no run's seed
    scores = judge(genomes, seeds, args, where)
    pop = {h: [scores[f"random {k}"][h] for k in range(args.randoms)] for h in HEADS}
    return {label: {h: percentile(scores[label][h], pop[h]) for h in HEADS} for label in runs}, pop, scores


def describe(path):
    g = json.loads(Path(path).read_text())
    return (f"emb {g['n_emb']} head {g['n_head']} layer {g['n_layer']} lr {g['lr']:.4f} "
            f"T {g.get('temperature', 1.0):.2f} cool {g.get('cooling', 1.0):.2f} "
            f"ctx {g['n_ctx']} ff {g['n_ff_exp']}")


def percentile(x, population):
    below = sum(p < x for p in population) + 0.5 * sum(p == x for p in population)
    return below / len(population)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="run seeds (1 2 3)")
    p.add_argument("--randoms", type=int, default=12, help="random genomes (12)")
    p.add_argument("--judge-seeds", type=int, default=3, help="fresh training seeds per genome (3)")
    p.add_argument("--names", type=int, default=200, help="names per judging seed (200)")
    p.add_argument("--workers", type=int, default=2, help="hydra workers and parallel judgings (2)")
    p.add_argument("--runs", choices=("all", "single", "default", "none"), default="all",
                   help="which runs: the single-head ones, the default ones, all or none (all)")
    p.add_argument("--judges", type=int, default=1,
                   help="independent judges, each with its own random genomes and seeds (1)")
    p.add_argument("--genomes", type=Path, nargs="+", default=[],
                   help="genome.json files to judge beside the runs' winners")
    p.add_argument("--json", type=Path, help="also write every score here")
    args = p.parse_args()
    if args.judges < 1 or args.randoms < 1 or args.judge_seeds < 1:
        p.error("--judges, --randoms and --judge-seeds must be at least 1")
    for path in args.genomes:              # before any run: a bad file is one line, not a crash
        try:
            load_genome(path)
        except GenomeError as exc:
            p.error(str(exc))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs, walls = {"primordial": None}, {}
        for path in args.genomes:
            runs[path.name if path.name not in runs else str(path)] = path.resolve()
        for seed in args.seeds:
            for heads in {"all": (*HEADS, None), "single": HEADS, "default": (None,),
                          "none": ()}[args.runs]:
                label = f"{heads or 'default'} seed {seed}"
                runs[label], walls[label] = evolve(args, heads, seed, tmp / label.replace(" ", "-"))
                print(f"evolved {label} in {walls[label]:.0f}s", file=sys.stderr)
        verdicts, pops, scores = zip(*(verdict(j, runs, args, tmp) for j in range(args.judges)))
        genome_texts = {label: describe(path) for label, path in runs.items() if path is not None}

    judges = range(args.judges)
    print(f"{args.judges} judge(s), each with {args.randoms} random genomes re-judged on "
          f"{args.judge_seeds} seeds x {args.names} names; the random genomes' scores:")
    for j in judges:
        print(f"  judge {j + 1}: " + ", ".join(f"{h} {min(pops[j][h]):.2f}-{max(pops[j][h]):.2f}"
                                               for h in HEADS))
    columns = " ".join(f"{f'judge {j + 1}':>8}" for j in judges) + (f" {'mean':>6}" * (args.judges > 1))

    def row(label, values, wall=""):
        mean = f" {statistics.mean(values):6.2f}" if args.judges > 1 else ""
        return f"{label:20} " + " ".join(f"{x:8.2f}" for x in values) + mean + f" {wall}"

    if args.runs in ("all", "single"):
        print("\nSingle-head champions: percentile among the random genomes on their own head")
        print(f"{'run':20} {columns} {'run time':>9}")
        for seed in args.seeds:
            for h in HEADS:
                label = f"{h} seed {seed}"
                print(row(label, [verdicts[j][label][h] for j in judges], f"{walls[label]:8.0f}s"))
    print("\nThe winners (and the primordial creature): percentile per head, averaged over the "
          "judges, and the mean")
    print(f"{'run':20} " + " ".join(f"{h:>8}" for h in HEADS) + f" {'mean':>6} {'run time':>9}")
    singles = {f"{h} seed {seed}" for h in HEADS for seed in args.seeds}
    others = [label for label in runs if label not in singles]
    for label in others:
        ps = [statistics.mean(verdicts[j][label][h] for j in judges) for h in HEADS]
        wall = f"{walls[label]:8.0f}s" if label in walls else ""
        print(f"{label:20} " + " ".join(f"{x:8.2f}" for x in ps) + f" {statistics.mean(ps):6.2f} {wall}")
    if args.judges > 1:
        print("\nTheir mean percentile across the three heads, under each judge")
        print(f"{'run':20} {columns} {'>= 0.70':>8}")
        for label in others:
            means = [statistics.mean(verdicts[j][label].values()) for j in judges]
            print(row(label, means, f"{sum(m >= 0.70 for m in means):4} of {args.judges}"))
    print("\nThe genomes (re-judged scores, averaged over the judges: " + ", ".join(HEADS) + ")")
    for label, genes in genome_texts.items():
        mean = [statistics.mean(scores[j][label][h] for j in judges) for h in HEADS]
        print(f"{label:20} {genes}  ->  " + ", ".join(f"{x:.2f}" for x in mean))
    if args.json:
        args.json.write_text(json.dumps({"scores": scores, "percentiles": verdicts, "walls": walls},
                                        indent=2))


if __name__ == "__main__":
    main()
