"""Instructions per training step, per sampled name and per held-out name, counted by callgrind.

Wall-clock time on a shared machine swings with whatever else runs; the number of instructions a
piece of work executes does not. Each workload runs twice under `valgrind --tool=callgrind`, at a
small and a large count, and the difference over the difference in counts is the cost of one unit:
interpreter start-up, imports, building the model and the training that precedes sampling cancel.

    python benchmarks/instructions.py                        # every workload, the default config
    python benchmarks/instructions.py --config emb32-l2 --workloads train
    python benchmarks/instructions.py --annotate train       # also where a step's instructions go

Workloads (the public API only, so the same script measures an older microgpt):
  train   one step = model.loss(name), backward, Adam (train_steps)
  sample  one name = generate() at temperature 1 from a model trained for 100 steps
  loss    one held-out name = mean_loss() over it (the loss only, no gradient)
  evaluate  one Hydra evaluation of the config (worker.evaluate_genome: 300 steps, then 200
          names at each of Hydra's four voices and the held-out loss over 100 names)

Instructions are not time (a cache miss costs more than an add), but they move with it on one
machine, and they are the same from run to run to a few parts in a million.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

CONFIGS = {  # name: (n_ctx, n_emb, n_layer, n_head, n_ff_exp), as in bench.py
    "default": (16, 16, 1, 4, 4),
    "emb32-l2": (16, 32, 2, 4, 4),
    "emb40-l4": (16, 40, 4, 4, 4),
}
COUNTS = {"train": (100, 400), "sample": (50, 250), "loss": (50, 250), "evaluate": (1, 3)}
PRETRAIN = 100


def workload(kind: str, config: str, count: int) -> None:
    """Run `count` units of `kind` on `config` (called inside valgrind)."""
    from microgpt.train import (
        Adam,
        Dataset,
        TrainingConfig,
        generate,
        load_names,
        mean_loss,
        new_model,
        train_steps,
    )

    n_ctx, n_emb, n_layer, n_head, n_ff_exp = CONFIGS[config]
    if kind == "evaluate":
        from microgpt.worker import evaluate_genome

        genome = {"n_ctx": n_ctx, "n_emb": n_emb, "n_layer": n_layer, "n_head": n_head,
                  "n_ff_exp": n_ff_exp, "steps": 300, "lr": 0.01, "temperature": 1.0, "cooling": 1.0}
        for _ in range(count):
            evaluate_genome(genome, 200, 1, temperatures=(0.7, 0.8, 0.9, 1.0))
        return
    cfg = TrainingConfig(n_ctx=n_ctx, n_emb=n_emb, n_layer=n_layer, n_head=n_head,
                         n_ff_exp=n_ff_exp, seed=1)
    data = Dataset(load_names())
    model = new_model(cfg, data.tok)
    opt = Adam(model.weights.values())
    steps = count if kind == "train" else PRETRAIN
    train_steps(model, opt, data.tok, data.training_order(steps, cfg.seed), cfg.lr)
    if kind == "sample":
        generate(model, data.tok, count, 1.0, seed=2)
    elif kind == "loss":
        mean_loss(model, data.tok, data.held_out_names(count))


def callgrind(kind: str, config: str, count: int, out: str) -> int:
    """Total instructions (Ir) of one workload run under callgrind."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
           sys.executable, __file__, "--run", kind, config, str(count)]
    env = dict(os.environ, PYTHONHASHSEED="0")    # the same dict and set layouts every run
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    found = re.search(r"Collected : (\d+)", done.stderr)
    return int(found.group(1))


def functions(path: str) -> dict[tuple[str, str], int]:
    """{(function, library): its own instructions (exclusive)} from callgrind_annotate."""
    done = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no",
                           "--tree=none", path],
                          capture_output=True, text=True, check=True)
    found = {}
    for line in done.stdout.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(\S.*?)(?: \[(.*)\])?$", line)
        if m and "PROGRAM TOTALS" not in line:
            where, _, name = m.group(2).rpartition(":")
            lib = os.path.basename(m.group(3) or "").split(".")[0] or (   # else from the source
                "_core" if "_core" in where else "libpython3" if "Python-" in where else "libc")
            key = (name, lib)
            found[key] = found.get(key, 0) + int(m.group(1).replace(",", ""))
    return found


def per_function(small: str, big: str, units: int, top: int = 25) -> None:
    """Instructions per unit (the large run's over the small one's) by library, then by
    function, largest first."""
    lo, hi = functions(small), functions(big)
    diff = {f: (hi.get(f, 0) - lo.get(f, 0)) / units for f in hi.keys() | lo.keys()}
    total = sum(diff.values())
    libs = {}
    for (_, lib), n in diff.items():
        libs[lib] = libs.get(lib, 0) + n
    print("  " + ", ".join(f"{lib} {100 * n / total:.0f}%" for lib, n in
                           sorted(libs.items(), key=lambda kv: -kv[1]) if n / total >= 0.01))
    for (f, lib), n in sorted(diff.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {n:10,.0f} {100 * n / total:5.1f}%  {f} ({lib})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="default", choices=CONFIGS)
    ap.add_argument("--workloads", nargs="+", default=list(COUNTS), choices=COUNTS)
    ap.add_argument("--annotate", choices=COUNTS, help="print callgrind_annotate's top functions "
                    "for the large run of this workload")
    ap.add_argument("--run", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        workload(args.run[0], args.run[1], int(args.run[2]))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.workloads:
            lo, hi = COUNTS[kind]
            small = callgrind(kind, args.config, lo, os.path.join(tmp, f"{kind}.lo"))
            big = callgrind(kind, args.config, hi, os.path.join(tmp, f"{kind}.hi"))
            print(f"{args.config:10s} {kind:7s} {(big - small) / (hi - lo):12,.0f} instructions "
                  f"per unit ({lo} and {hi} units: {small:,} and {big:,})", flush=True)
            if kind == args.annotate:
                per_function(os.path.join(tmp, f"{kind}.lo"), os.path.join(tmp, f"{kind}.hi"), hi - lo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
