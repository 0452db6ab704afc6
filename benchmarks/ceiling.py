"""How high can any winner stand? An oracle search on the judges' own terms, for issue 22's bar.

benchmarks/baselines.py places each method's winner among random genomes, under outside judges.
This asks what the best winner the gene space holds would score there, by searching with the
judges' own measure and far more training than any method gets:

  1. `--genomes` genomes drawn over the extended space (as random search draws them; half of
     them, with `--mixed`, from the seed's distribution), each trained on the selecting judge's
     fresh seeds and heard at a grid of voices (temperature x cooling; hearing is free);
  2. the selecting judge (judge "A", its own random genomes and seeds, as in baselines.py) places
     every (genome, voice) among its random genomes of the seed's distribution and of the
     extended space;
  3. the best `--top` by A (on the mean of both standings) are judged again by fresh judges
     ("B", "C", ...: other random genomes, other seeds): their verdicts are what such a winner
     stands at. A's own figure for them is the winner's curse: it is measured on the seeds it
     was chosen on.

If the best winner here stands under the issue's bar, no method given a few hundred trainings
will meet it; the gap between A and B is how much a single judge's noise flatters a choice.

    python benchmarks/ceiling.py --genomes 400 --top 8 --judges 2
"""
import argparse
import os
import random
import statistics
import sys
import time

from microgpt.evaluators import LocalPool, Task
from microgpt.heads import DEFAULT_HEADS, make_heads
from microgpt.hydra import HydraConfig, extended_genome, full_genome, new_genome
from microgpt.train import load_names
from microgpt.worker import evaluate_genome

STEPS = HydraConfig.steps
TEMPERATURES = (0.5, 0.7, 0.9, 1.0, 1.2, 1.5, 1.9, 2.4, 3.0)
COOLINGS = (0.6, 0.7, 0.8, 0.9, 1.0)


class Judge:
    """An outside judge as benchmarks/baselines.py has it: `randoms` random genomes of each kind,
    trained on `seeds` fresh seeds at their own voice; `verdict` places head scores among them."""

    def __init__(self, name, args, heads):
        rng = random.Random(f"ceiling judge:{name}")
        self.heads, self.args = heads, args
        self.seeds = [rng.randrange(10**9, 2 * 10**9) for _ in range(args.judge_seeds)]
        self.pops = {"seed": [full_genome(new_genome(rng), STEPS) for _ in range(args.randoms)],
                     "extended": [full_genome(extended_genome(rng), STEPS)
                                  for _ in range(args.randoms)]}
        tasks = [Task(f"{kind}|{k}|{s}", g, args.names, s)
                 for kind, pop in self.pops.items() for k, g in enumerate(pop) for s in self.seeds]
        heard = {}
        for o in run(tasks, args.workers):
            kind, k, _ = o.key.split("|")
            heard.setdefault((kind, int(k)), []).append(o.result["names"])
        self.scores = {kind: [self.means(heard[(kind, k)]) for k in range(len(pop))]
                       for kind, pop in self.pops.items()}

    def means(self, samples):
        """{head: its mean score over the samples (one list of names per seed)}."""
        return {h.name: statistics.mean(h.score(n) for n in samples) for h in self.heads}

    def verdict(self, scores):
        """{kind: mean percentile over the heads among that kind's random genomes (ties half)}."""
        out = {}
        for kind, pop in self.scores.items():
            pcts = []
            for h in self.heads:
                x = scores[h.name]
                others = [s[h.name] for s in pop]
                pcts.append((sum(o < x for o in others) + 0.5 * sum(o == x for o in others))
                            / len(others))
            out[kind] = statistics.mean(pcts)
        return out

    def hear(self, genomes, voices):
        """{(genome index, voice): head means}: each genome trained on this judge's seeds and
        heard at every voice, as `microgpt -g` with that voice's temperature and cooling would."""
        tasks = [Task(f"{i}|{s}", g, self.args.names, s, tuple(voices))
                 for i, g in enumerate(genomes) for s in self.seeds]
        heard = {}
        for o in run(tasks, self.args.workers):
            if o.result is None:
                continue
            i = int(o.key.split("|")[0])
            for v, names in zip(voices, o.result["names_at"]):
                heard.setdefault((i, v), []).append(names)
        return {key: self.means(samples) for key, samples in heard.items()
                if len(samples) == len(self.seeds)}


def run(tasks, workers):
    pool = LocalPool(workers, evaluate_genome)
    try:
        return list(pool.run(tasks))
    finally:
        pool.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--genomes", type=int, default=400, help="genomes searched (400)")
    p.add_argument("--mixed", action="store_true", help="half of them from the seed's distribution")
    p.add_argument("--top", type=int, default=8, help="the best by judge A, judged again (8)")
    p.add_argument("--judges", type=int, default=2, help="fresh judges for the verdict (2)")
    p.add_argument("--randoms", type=int, default=16, help="random genomes per judge and kind (16)")
    p.add_argument("--judge-seeds", type=int, default=3, help="fresh training seeds per genome (3)")
    p.add_argument("--names", type=int, default=200, help="names per judging seed (200)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    args = p.parse_args()
    heads = make_heads(DEFAULT_HEADS, load_names())
    voices = [(t, c) for t in TEMPERATURES for c in COOLINGS]
    rng = random.Random("ceiling search")
    genomes = [full_genome(new_genome(rng) if args.mixed and i % 2 else extended_genome(rng), STEPS)
               for i in range(args.genomes)]
    start = time.perf_counter()
    a = Judge("A", args, heads)
    heard = a.hear(genomes, voices)
    ranked = sorted(heard, key=lambda key: statistics.mean(a.verdict(heard[key]).values()),
                    reverse=True)
    print(f"judge A: {len(heard)} (genome, voice) pairs from {len(genomes)} genomes x "
          f"{len(voices)} voices, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    best_seed = max(a.verdict(s)["seed"] for s in heard.values())
    best_ext = max(a.verdict(s)["extended"] for s in heard.values())
    print(f"judge A's best on each yardstick alone: seed-distribution {best_seed:.2f}, "
          f"extended {best_ext:.2f}")
    top = []
    for key in ranked:
        if key[0] not in {k[0] for k in top}:          # different genomes
            top.append(key)
        if len(top) == args.top:
            break
    chosen = [dict(genomes[i], temperature=v[0], cooling=v[1]) for i, v in top]
    fresh = [Judge(chr(ord("B") + j), args, heads) for j in range(args.judges)]
    verdicts = []
    for judge in fresh:
        own = judge.hear(chosen, sorted({(g["temperature"], g["cooling"]) for g in chosen}))
        verdicts.append([judge.verdict(own[key]) if key in own else {"seed": 0.0, "extended": 0.0}
                         for key in ((i, (g["temperature"], g["cooling"]))
                                     for i, g in enumerate(chosen))])     # failed: stands nowhere
    print(f"the best {len(top)} by judge A (mean of both standings), judged again by "
          f"{args.judges} fresh judge(s); seed-distribution / extended yardstick:")
    print(f"{'A':>11} " + " ".join(f"{chr(ord('B') + j):>11}" for j in range(args.judges))
          + f" {'mean':>11}  genome")
    for k, g in enumerate(chosen):
        va = a.verdict(heard[top[k]])
        fs = [v[k] for v in verdicts]
        ms = statistics.mean(f["seed"] for f in fs), statistics.mean(f["extended"] for f in fs)
        genes = (f"emb {g['n_emb']} head {g['n_head']} lay {g['n_layer']} lr {g['lr']:.4f} "
                 f"T {g['temperature']:.2f} cool {g['cooling']:.2f} ctx {g['n_ctx']} ff {g['n_ff_exp']}")
        print(f"{va['seed']:5.2f} {va['extended']:5.2f} "
              + " ".join(f"{f['seed']:5.2f} {f['extended']:5.2f}" for f in fs)
              + f" {ms[0]:5.2f} {ms[1]:5.2f}  {genes}")
    best = max(range(len(chosen)), key=lambda k: statistics.mean(
        statistics.mean(v[k].values()) for v in verdicts))
    print(f"\nthe best of them under the fresh judges (itself a choice on their seeds): "
          f"{statistics.mean(v[best]['seed'] for v in verdicts):.2f} / "
          f"{statistics.mean(v[best]['extended'] for v in verdicts):.2f}")
    print(f"judge A's first choice under the fresh judges: "
          f"{statistics.mean(v[0]['seed'] for v in verdicts):.2f} / "
          f"{statistics.mean(v[0]['extended'] for v in verdicts):.2f}")
    print(f"{time.perf_counter() - start:.0f} s in all", file=sys.stderr)


if __name__ == "__main__":
    main()
