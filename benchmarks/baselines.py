"""Hydra against random search and Optuna at equal compute, judged by outsiders on fresh seeds.

For each run seed S:
  1. `microgpt-hydra --seed S` runs as a user runs it; its store says what it cost: the
     evaluations it made, each a training of 300 steps (`Store.training_steps`).
  2. Random search (`microgpt.baselines.random_search`) and Optuna (multi-objective TPE on the
     three head scores) get exactly that many trainings, and every advantage the engine has:
     the same yardstick (24 random genomes of the seed's distribution), every trained model
     heard at Hydra's voices (Optuna is told each voice as a trial of its own, free), the same
     confirmation of the best four on ten fresh seeds each (`microgpt.baselines.confirm`).
  3. Independent judges re-train each winner from scratch, as `microgpt -g genome.json --seed J
     -n 200` does, on training seeds no method saw, score the names with the counted heads, and
     place the mean scores among random genomes of the seed's distribution (`new_genome`) and,
     separately, of the extended space (`extended_genome`): the standing is the mean percentile
     over the three heads (ties count half).
Printed per method and run seed: both standings under each judge, the head scores, the
evaluations, training steps and CPU seconds (of the process and every worker it waited for).

    python benchmarks/baselines.py --seeds 21 22 23 24 25 26 --judges 2
    python benchmarks/baselines.py --seeds 21 --methods hydra random --judges 1   # a quick look

Needs optuna for the Optuna column (pip install optuna; it is in the test extra, never a
dependency of the package).
"""
import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from microgpt.baselines import REFERENCE, confirm, extended_genome, organism, random_search, reference
from microgpt.evaluators import LocalPool, Task
from microgpt.heads import DEFAULT_HEADS, make_heads
from microgpt.hydra import (
    CONFIRM_TRIALS,
    CONFIRMED,
    SPACE,
    HydraConfig,
    Observer,
    evaluate_all,
    full_genome,
    new_genome,
    repair,
    standing_key,
)
from microgpt.store import Store
from microgpt.train import load_names
from microgpt.worker import evaluate_genome

METHODS = ("hydra", "random", "optuna")
STEPS = HydraConfig.steps


def cpu_seconds():
    """CPU seconds of this process and of every child it has waited for (workers, subprocesses)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_hydra(seed, workers, where):
    """(genome dict, evaluations, training steps) of `microgpt-hydra --seed seed` run in where."""
    where.mkdir(parents=True)
    exe = Path(sys.executable).parent / "microgpt-hydra"
    cmd = [str(exe) if exe.exists() else shutil.which("microgpt-hydra"), "--seed", str(seed),
           "--workers", str(workers), "-q"]
    subprocess.run(cmd, cwd=where, check=True, capture_output=True, text=True)
    store = Store(where / "experiments" / "microgpt.db")
    try:
        evaluations, steps = store.training_steps(1)
    finally:
        store.close()
    return json.loads((where / "genome.json").read_text()), evaluations, steps


def distributions():
    """{gene: its Optuna distribution}: the space Hydra's mutants reach, read from each gene's
    span in microgpt.hydra.SPACE (the same space random search draws from)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space = {}
    for g in SPACE:
        kind, *bounds = g.span
        space[g.name] = (CategoricalDistribution(bounds[0]) if kind == "choice"
                         else IntDistribution(*bounds) if kind == "int"
                         else FloatDistribution(bounds[0], bounds[1], log=bounds[2]))
    return space


def suggest(trial, space):
    """A genome from an Optuna trial over space (`distributions`), n_head repaired."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    genome = {}
    for name, d in space.items():           # in SPACE's order, as Hydra draws them
        if isinstance(d, CategoricalDistribution):
            genome[name] = trial.suggest_categorical(name, d.choices)
        elif isinstance(d, IntDistribution):
            genome[name] = trial.suggest_int(name, d.low, d.high)
        else:
            genome[name] = trial.suggest_float(name, d.low, d.high, log=d.log)
    return repair(genome)


def optuna_search(heads, evaluator, cfg, evaluations, batch):
    """Optuna's multi-objective TPE (ask and tell, `batch` trials at a time) with the same
    machinery as random search; (winner, its standing, evaluations made)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [h.name for h in heads]
    study = optuna.create_study(directions=["maximize"] * len(heads),
                                sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    space = distributions()

    def tell_voices(o):
        """Each voice o was heard at, told as a finished trial (hearing costs no training)."""
        birth = o.birth
        for k, t in enumerate(birth.temperatures):
            lo, hi = space["temperature"].low, space["temperature"].high
            if t != o.genome["temperature"] and lo <= t <= hi and birth.result is not None:
                values = [birth.scores_at[k][n] for n in names]
                if all(v > -1e9 for v in values):
                    study.add_trial(optuna.trial.create_trial(
                        params=dict(o.genome, temperature=t), distributions=space, values=values))

    ref = reference(heads, evaluator, cfg, "optuna")
    for o in ref:
        values = [o.birth.scores[n] for n in names]
        if all(v > -1e9 for v in values):
            study.add_trial(optuna.trial.create_trial(params=dict(o.genome), distributions=space,
                                                      values=values))
        tell_voices(o)
    searched, left = [], evaluations - REFERENCE - CONFIRMED * CONFIRM_TRIALS
    while left > 0:
        trials = [study.ask() for _ in range(min(batch, left))]
        todo = [organism(suggest(t, space), "optuna", len(searched) + i, cfg.seed)
                for i, t in enumerate(trials)]
        evaluate_all([o.birth for o in todo], evaluator, cfg, heads, Observer())
        for t, o in zip(trials, todo):
            values = [o.birth.scores[n] for n in names]
            if o.birth.result is None or not all(v > -1e9 for v in values):
                study.tell(t, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(t, values)
            tell_voices(o)
        searched += todo
        left -= len(todo)
    ranked, stick = confirm(searched, ref, heads, evaluator, cfg)
    made = len(ref) + len(searched) + CONFIRMED * CONFIRM_TRIALS
    return ranked[0], standing_key(ranked[0], stick)[0], made


def judge(j, genomes, args, heads):
    """Judge j's verdict: {label: {"seed": standing among seed-distribution random genomes,
    "extended": among extended-space ones, "scores": {head: mean}}}."""
    rng = random.Random(f"judge:{j}")
    pops = {"seed": [full_genome(new_genome(rng), STEPS) for _ in range(args.randoms)],
            "extended": [full_genome(extended_genome(rng), STEPS) for _ in range(args.randoms)]}
    everyone = dict(genomes)
    for kind, pop in pops.items():
        everyone.update({f"{kind} random {k}": g for k, g in enumerate(pop)})
    seeds = [7_000_000 + 1_009 * k + 99_991 * j for k in range(args.judge_seeds)]   # no run's
    tasks = [Task(f"{label}|{s}", {k: g[k] for k in (*full_genome(g, STEPS),)}, args.names, s)
             for label, g in everyone.items() for s in seeds]
    pool = LocalPool(args.workers, evaluate_genome)
    try:
        heard = {o.key: o.result["names"] for o in pool.run(tasks) if o.result is not None}
    finally:
        pool.close()
    means = {}
    for label in everyone:
        per_seed = [heard[f"{label}|{s}"] for s in seeds if f"{label}|{s}" in heard]
        means[label] = {h.name: statistics.mean(h.score(n) for n in per_seed) for h in heads}
    out = {}
    for label in genomes:
        verdict = {"scores": means[label]}
        for kind in pops:
            pcts = []
            for h in heads:
                others = [means[f"{kind} random {k}"][h.name] for k in range(args.randoms)]
                x = means[label][h.name]
                pcts.append((sum(o < x for o in others) + 0.5 * sum(o == x for o in others)) / len(others))
            verdict[kind] = statistics.mean(pcts)
        out[label] = verdict
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23], help="run seeds (21 22 23)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--judges", type=int, default=2, help="independent judges (2)")
    p.add_argument("--randoms", type=int, default=16, help="random genomes per judge and kind (16)")
    p.add_argument("--judge-seeds", type=int, default=4, help="fresh training seeds per genome (4)")
    p.add_argument("--names", type=int, default=200, help="names per judging seed (200)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--json", type=Path, help="also write every number here")
    args = p.parse_args()
    heads = make_heads(DEFAULT_HEADS, load_names())
    rows, genomes = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            cpu, wall = cpu_seconds(), time.perf_counter()
            hydra, evaluations, steps = run_hydra(seed, args.workers, Path(tmp) / f"hydra-{seed}")
            cost = {"evaluations": evaluations, "steps": steps, "cpu": cpu_seconds() - cpu,
                    "wall": time.perf_counter() - wall}
            if "hydra" in args.methods:
                genomes[f"hydra {seed}"] = hydra
                rows.append((f"hydra {seed}", "hydra", seed, hydra["standing"], cost))
            cfg = HydraConfig(seed=seed)
            for method in [m for m in args.methods if m != "hydra"]:
                cpu, wall = cpu_seconds(), time.perf_counter()
                pool = LocalPool(args.workers, evaluate_genome)
                try:
                    if method == "random":
                        winner, own, made = random_search(heads, pool, cfg, evaluations)
                    else:
                        winner, own, made = optuna_search(heads, pool, cfg, evaluations, 8)
                finally:
                    pool.close()
                label = f"{method} {seed}"
                genomes[label] = full_genome(winner.genome, STEPS)
                rows.append((label, method, seed, own, {
                    "evaluations": made, "steps": made * STEPS, "cpu": cpu_seconds() - cpu,
                    "wall": time.perf_counter() - wall}))
            print(f"run seed {seed} done", file=sys.stderr)
    verdicts = [judge(j, genomes, args, heads) for j in range(args.judges)]

    print(f"{args.judges} judge(s), each: {args.randoms} random genomes of each kind, "
          f"{args.judge_seeds} fresh seeds x {args.names} names, counted heads")
    print(f"{'run':12} {'own':>5} " + " ".join(f"{'seed j' + str(j + 1):>8} {'ext j' + str(j + 1):>7}"
                                              for j in range(args.judges))
          + "  " + " ".join(f"{h.name:>7}" for h in heads)
          + f" {'evals':>6} {'steps':>7} {'cpu s':>6} {'wall s':>6}  genome")
    for label, _method, _seed, own, cost in rows:
        stand = " ".join(f"{v[label]['seed']:8.2f} {v[label]['extended']:7.2f}" for v in verdicts)
        scores = " ".join(f"{statistics.mean(v[label]['scores'][h.name] for v in verdicts):7.2f}"
                          for h in heads)
        g = genomes[label]
        genes = (f"emb {g['n_emb']} head {g['n_head']} lay {g['n_layer']} lr {g['lr']:.4f} "
                 f"T {g['temperature']:.2f} cool {g['cooling']:.2f} ctx {g['n_ctx']} ff {g['n_ff_exp']}")
        print(f"{label:12} {own:5.2f} {stand}  {scores} {cost['evaluations']:6} {cost['steps']:7} "
              f"{cost['cpu']:6.0f} {cost['wall']:6.0f}  {genes}")
    print("\nMean standing by method (seed-distribution yardstick / extended), over seeds and judges:")
    for method in args.methods:
        labels = [r[0] for r in rows if r[1] == method]
        s = statistics.mean(v[lb]["seed"] for v in verdicts for lb in labels)
        e = statistics.mean(v[lb]["extended"] for v in verdicts for lb in labels)
        print(f"  {method:8} {s:.3f} / {e:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "genomes": genomes, "verdicts": verdicts},
                                        indent=2))


if __name__ == "__main__":
    main()
