"""microgpt against other people's microGPT ports, side by side: training steps per second.

Each implementation is run as a whole program, twice per round (a short and a long step count),
so start-up, reading the names and sampling cancel: its speed is (long - short) steps over the
difference in wall time. Rounds interleave every implementation in a shuffled order, so a change
in the machine's load falls on all of them alike. One name per step, the same config for all.

    pip install .                          # the installed microgpt, never the source tree
    benchmarks/build_peers.sh /tmp/peers path/to/microgpt.cpp path/to/rust-microgpt path/to/microgpt-c
    python benchmarks/peers.py --peer cpp=/tmp/peers/cpp-{config}-{steps} \\
        --peer rust=/tmp/peers/rust-{config}-{steps} --peer c=/tmp/peers/c-{config}-{steps}

A peer is NAME=PATH, where PATH may hold {config} and {steps}: the ports fix both at compile
time, so each is its own binary (build_peers.sh makes them). A binary runs in a scratch directory
holding the bundled names as input.txt and c_names.txt, which is where the ports read them. A
binary that is missing is reported and skipped.
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {  # name: (n_emb, n_layer); all n_head 4, n_ctx 16, MLP 4x
    "default": (16, 1),
    "emb32-l2": (32, 2),
    "emb64-l2": (64, 2),
}


def cpu_model():
    """The CPU's model and its widest vector extensions (the ratios depend on both: a port built
    with -march=native uses AVX-512 where there is one), from /proc/cpuinfo where there is one."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform

        return platform.processor() or "unknown"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), "unknown")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines()
                  if line.startswith("flags")), [])
    wide = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512vl") if f in flags]
    return f"{model}; {' '.join(wide) or 'no SSE4.2/AVX'}"


def ours(steps, config):
    n_emb, n_layer = CONFIGS[config]
    exe = shutil.which("microgpt")
    if exe is None:
        raise SystemExit("microgpt is not installed here: pip install . first")
    return [exe, "--steps", str(steps), "--emb", str(n_emb), "--layer", str(n_layer), "--head", "4",
            "--ctx", "16", "--ff", "4", "--lr", "0.01", "-n", "20", "-q"]


def timed(argv, cwd):
    """Wall seconds of one run of argv; SystemExit if it fails. (Peak memory is not measured
    here: a child's ru_maxrss counts the Python it was forked from. See the README for ours.)"""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-300:]
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {err}")
    return seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer", action="append", default=[], metavar="NAME=PATH",
                   help="a peer's binary; PATH may hold {config} and {steps}")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--short", type=int, default=300, help="the short run's steps (300)")
    p.add_argument("--long", type=int, default=1300, help="the long run's steps (1300)")
    p.add_argument("--json", type=Path, help="also write every timing here")
    args = p.parse_args()
    peers = {}
    for spec in args.peer:
        name, sep, path = spec.partition("=")
        if not sep or not name or name == "microgpt":
            p.error(f"--peer {spec!r}: expected NAME=PATH")
        peers[name] = path

    from importlib import resources

    scratch = Path(tempfile.mkdtemp(prefix="microgpt-peers-"))
    for name in ("input.txt", "c_names.txt"):          # microgpt-c reads the latter
        shutil.copyfile(str(resources.files("microgpt") / "input.txt"), scratch / name)
    print(f"{args.rounds} rounds; steps {args.long} - {args.short}; load {os.getloadavg()[0]:.1f}; "
          f"{os.cpu_count()} CPUs; every impl interleaved in each round")
    print(f"CPU: {cpu_model()}\n")
    results, rng = {}, random.Random(0)
    try:
        for config in args.configs:
            impls = {"microgpt": lambda steps, c=config: ours(steps, c)}
            for name, path in peers.items():
                binaries = [path.format(config=config, steps=s) for s in (args.short, args.long)]
                missing = [b for b in binaries if not os.access(b, os.X_OK)]
                if missing:
                    print(f"{config}: {name} skipped, no binary at {missing[0]}")
                    continue
                by_steps = dict(zip((args.short, args.long), binaries))
                impls[name] = lambda steps, b=by_steps: [b[steps]]
            runs = {name: [] for name in impls}
            for _ in range(args.rounds):
                order = list(impls)
                rng.shuffle(order)
                for name in order:
                    short = timed(impls[name](args.short), scratch)
                    long = timed(impls[name](args.long), scratch)
                    runs[name].append({"short_s": short, "long_s": long,
                                       "steps_per_s": (args.long - args.short) / (long - short)})
            results[config] = runs
            report(config, runs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def report(config, runs):
    """Print a config's table: each impl's steps/s, and ours over its, round by round."""
    mine = [r["steps_per_s"] for r in runs["microgpt"]]
    print(f"{config} (n_emb {CONFIGS[config][0]}, {CONFIGS[config][1]} layer(s))")
    print(f"  {'impl':10}  {'steps/s median [min-max]':28}  microgpt / it [min-max]")
    for name, rs in runs.items():
        rates = [r["steps_per_s"] for r in rs]
        ratios = [m / r for m, r in zip(mine, rates)]          # the same round's runs
        print(f"  {name:10}  {statistics.median(rates):8.0f} [{min(rates):.0f}-{max(rates):.0f}]"
              f"{'':4}  {statistics.median(ratios):5.2f} [{min(ratios):.2f}-{max(ratios):.2f}]")
    print()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
