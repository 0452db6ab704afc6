"""How a creature's voice moves its standing: flat temperatures against cooling ones, out of sample.

A handful of models (the genes below; 300 steps) are each trained on 2 x S training seeds and heard
at many voices: a flat temperature, or a temperature that cools letter by letter (`cooling`: letter
i samples at temperature x cooling^i). Random genomes from Hydra's new-organism distribution are
trained on as many seeds and heard at their own voice (temperature 1, no cooling). A (model, voice)
stands at its mean percentile under the three heads among the random genomes (each averaged over
its seeds). The best few are picked on the first S seeds and re-measured on the other S: a
voice that stands high only by luck falls back there. Printed for flat voices and for cooled ones.

    python benchmarks/voices.py                       # 6 + 6 seeds, 24 random genomes, ~3 min
    python benchmarks/voices.py --seeds 3 --randoms 12 --top 10
"""
import argparse
import itertools
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

from microgpt.heads import Mirror, Spark, Weaver
from microgpt.hydra import full_genome, new_genome
from microgpt.train import Dataset, TrainingConfig, generate, load_names, train_and_generate

HEADS = ("weaver", "mirror", "spark")
MODELS = [  # n_emb, n_layer, n_ctx, lr
    (16, 1, 7, 0.01), (24, 1, 7, 0.01), (32, 2, 7, 0.01), (16, 2, 7, 0.005),
    (32, 1, 8, 0.01), (32, 2, 9, 0.01), (32, 1, 16, 0.01), (24, 3, 16, 0.005),
]
FLAT = [(t, 1.0) for t in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2)]
COOLED = [(t, c) for t, c in itertools.product((1.0, 1.3, 1.6, 2.0, 2.5), (0.95, 0.9, 0.85, 0.8,
                                                                         0.75, 0.7, 0.6))]
_STATE = {}


def dataset_and_heads():
    if not _STATE:
        names = load_names()
        _STATE.update(data=Dataset(names), heads={"weaver": Weaver(), "mirror": Mirror(),
                                                   "spark": Spark(names)})
    return _STATE["data"], _STATE["heads"]


def hear(job):
    """{voice: {head: score}} for one genome trained on one seed, heard at each voice."""
    genome, seed, voices, n = job
    data, judge = dataset_and_heads()
    cfg = TrainingConfig(**{k: genome[k] for k in ("n_emb", "n_ctx", "n_layer", "n_head", "n_ff_exp",
                                                   "steps", "lr")}, seed=seed, gen_samples=0)
    result = train_and_generate(cfg, dataset=data)
    out = {}
    for t, c in voices:
        names = generate(result.model, result.tok, n, t, seed, cooling=c)
        out[(t, c)] = {h: judge[h].score(names) for h in HEADS}
    return out


def percentile(x, scores):
    return (sum(s < x for s in scores) + 0.5 * sum(s == x for s in scores)) / len(scores)


def standing(per_seed, pop):
    mean = {h: statistics.mean(s[h] for s in per_seed) for h in HEADS}
    return statistics.mean(percentile(mean[h], pop[h]) for h in HEADS)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=6, help="training seeds to pick on, and as many "
                                                        "to re-measure on (6)")
    p.add_argument("--randoms", type=int, default=24, help="random genomes (24)")
    p.add_argument("--names", type=int, default=200, help="names per hearing (200)")
    p.add_argument("--top", type=int, default=30, help="how many of the best to re-measure (30)")
    p.add_argument("--workers", type=int, default=2, help="processes (2)")
    args = p.parse_args()
    start = time.perf_counter()
    seeds = [70_000 + 7919 * k for k in range(2 * args.seeds)]
    rng = random.Random(2026)
    randoms = [full_genome(new_genome(rng), 300) for _ in range(args.randoms)]
    models = []
    for emb, layer, ctx, lr in MODELS:
        models.append(dict(randoms[0], n_emb=emb, n_head=4, n_layer=layer, n_ctx=ctx, lr=lr,
                           n_ff_exp=4))
    voices = FLAT + COOLED
    jobs = ([(g, s, [(1.0, 1.0)], args.names) for g in randoms for s in seeds]
            + [(g, s, voices, args.names) for g in models for s in seeds])
    with ProcessPoolExecutor(args.workers) as ex:
        heard = list(ex.map(hear, jobs, chunksize=2))
    n = len(seeds)
    rnd, mod = heard[:len(randoms) * n], heard[len(randoms) * n:]

    def pop(which):
        return {h: [statistics.mean(rnd[i * n + k][(1.0, 1.0)][h] for k in which)
                    for i in range(len(randoms))] for h in HEADS}

    pops = {"pick": pop(range(args.seeds)), "check": pop(range(args.seeds, n))}
    rows = []
    for i, g in enumerate(models):
        for v in voices:
            per = [mod[i * n + k][v] for k in range(n)]
            rows.append((standing(per[:args.seeds], pops["pick"]),
                         standing(per[args.seeds:], pops["check"]), g, v))
    print(f"{len(models)} models x {len(voices)} voices, {args.seeds} + {args.seeds} seeds, "
          f"{args.randoms} random genomes, {args.names} names a hearing "
          f"({time.perf_counter() - start:.0f}s)")
    for label, family in (("flat", FLAT), ("cooled", COOLED)):
        best = sorted((r for r in rows if r[3] in family), key=lambda r: -r[0])[:args.top]
        print(f"\n{label} voices: the {len(best)} best on the first seeds stand at "
              f"{statistics.mean(r[0] for r in best):.2f} there and "
              f"{statistics.mean(r[1] for r in best):.2f} on the other seeds; the first five:")
        for a, b, g, (t, c) in best[:5]:
            print(f"  {a:.2f} -> {b:.2f}  n_emb {g['n_emb']} n_layer {g['n_layer']} n_ctx "
                  f"{g['n_ctx']} lr {g['lr']}  temperature {t} cooling {c}")


if __name__ == "__main__":
    main()
