"""How fast microgpt trains, how much memory it takes, and how that compares with PyTorch.

For each config it reports training steps per second (one step = one name: build the loss,
backward, Adam, drop the graph), median and min-max over repetitions; graph nodes and edges per
step when the core can count them; peak RSS; and, when `import torch` works, the same model in
float64 single-threaded PyTorch (benchmarks/torch_gpt.py: one forward over the whole name with a
causal mask) started from the same weights, with the ratio of the two speeds. Every config and
engine runs in a fresh subprocess, so peak RSS is that run's alone and torch's memory never
counts against microgpt. A last section times a `microgpt-hydra` run with 1 and 2 workers.

    python benchmarks/bench.py                      # 5 repetitions of 300 steps per config
    python benchmarks/bench.py --quick              # 3 x 60 steps: a smoke test, noisy
    python benchmarks/bench.py --configs default --skip-hydra --json results.json

Timings are wall-clock on whatever else the machine is doing: compare runs from one machine only.
This is never a test; nothing here asserts a speed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# name: (n_ctx, n_emb, n_layer, n_head, n_ff_exp); the vocabulary comes from the bundled names (27)
CONFIGS = {
    "default": (16, 16, 1, 4, 4),     # the seed's primordial creature
    "emb32-l2": (16, 32, 2, 4, 4),
    "emb40-l4": (16, 40, 4, 4, 4),    # the largest genome Hydra reports
    "emb64-l2": (16, 64, 2, 4, 4),
}
LR = 0.005           # the seed's default; decays linearly to zero over the whole run
PHASES = ("forward", "backward", "adam", "free")


# --- one engine on one config, in its own process ------------------------------------------------

def graph_stats(loss) -> tuple[int, int] | None:
    """(interior nodes, edges) of the graph under `loss`, or None if this microgpt cannot count them.

    Asks the core's public `microgpt.graph_size(root)`; never walks the graph itself: the edges
    are the core's business.
    """
    import microgpt

    counter = getattr(microgpt, "graph_size", None)
    return None if counter is None else tuple(counter(loss))


def maxrss_mib(ru_maxrss: int) -> float:
    """ru_maxrss in MiB: Linux reports KiB, macOS bytes."""
    return ru_maxrss / (1 << 20) if sys.platform == "darwin" else ru_maxrss / 1024


def peak_rss_mib() -> float:
    """This process's peak resident set so far, in MiB."""
    return maxrss_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def run_worker(engine: str, config: str, steps: int, warmup: int, repeats: int, seed: int) -> dict:
    """Train `config` with `engine` ('microgpt' or 'torch'); speeds, phase times, losses, peak RSS."""
    from microgpt.model import GPT
    from microgpt.train import Adam, Tokenizer, load_names

    n_ctx, n_emb, n_layer, n_head, n_ff_exp = CONFIGS[config]
    names = list(load_names())
    tok = Tokenizer.from_names(names)
    random.Random(seed).shuffle(names)
    batches = [tok.encode(names[i % len(names)]) for i in range(warmup + repeats * steps)]
    model = GPT(tok.vocab_size, n_ctx, n_emb, n_layer, n_head, n_ff_exp, seed=seed)
    n_params = len(model.parameters())

    if engine == "microgpt":
        # as train_and_generate does: one Adam group per weight matrix, on its contiguous arrays
        opt = Adam(model.weights.values(), beta1=0.85, beta2=0.99, eps=1e-8)

        def step(tokens, lr):
            t0 = time.perf_counter()
            loss = model.loss(tokens)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            opt.step(lr)
            t3 = time.perf_counter()
            value = loss.data
            del loss                       # the graph is freed here, as in train_and_generate
            return value, (t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3)
    else:
        import torch
        from torch_gpt import TorchGPT, make_adam

        torch.set_num_threads(1)
        ref = TorchGPT(tok.vocab_size, n_ctx, n_emb, n_layer, n_head, n_ff_exp)
        ref.load_numpy(model.state_dict())    # the same starting weights as the microgpt run
        del model
        opt = make_adam(ref, LR)
        batches = [torch.tensor(b, dtype=torch.long) for b in batches]

        def step(tokens, lr):
            t0 = time.perf_counter()
            loss = ref.loss(tokens)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
            opt.zero_grad(set_to_none=False)
            t3 = time.perf_counter()
            value = loss.item()
            del loss
            return value, (t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3)

    rss_before = peak_rss_mib()
    total = len(batches)
    for i in range(warmup):
        step(batches[i], LR * (1 - i / total))
    rates, phase_sums, rep_losses = [], [0.0] * len(PHASES), []
    for r in range(repeats):
        losses = []
        start = time.perf_counter()
        for i in range(warmup + r * steps, warmup + (r + 1) * steps):
            value, phases = step(batches[i], LR * (1 - i / total))
            losses.append(value)
            for k, t in enumerate(phases):
                phase_sums[k] += t
        rates.append(steps / (time.perf_counter() - start))
        rep_losses.append(statistics.fmean(losses))
    phase_total = sum(phase_sums)
    stats = None
    if engine == "microgpt":   # averaged over up to 50 of the timed names, whose lengths vary
        sizes = [graph_stats(model.loss(tokens)) for tokens in batches[warmup:warmup + 50]]
        if all(sizes):
            stats = [round(statistics.fmean(s[k] for s in sizes)) for k in (0, 1)]
    return {
        "engine": engine, "config": config, "n_params": n_params, "steps_per_s": rates,
        "phase_share": {p: s / phase_total for p, s in zip(PHASES, phase_sums)},
        "mean_loss_per_rep": rep_losses, "graph": stats,
        "rss_before_mib": rss_before, "peak_rss_mib": peak_rss_mib(),
    }


def spawn_worker(engine: str, config: str, args: argparse.Namespace) -> dict:
    """run_worker in a fresh interpreter, so its peak RSS is its own; a dict, or {'error': ...}."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", engine, config, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--repeats", str(args.repeats), "--seed", str(args.seed)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        return {"engine": engine, "config": config, "error": lines[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def torch_available() -> str | None:
    """torch's version when `import torch` works in a subprocess, else None (never imported here)."""
    proc = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


# --- microgpt-hydra, end to end -------------------------------------------------------------------

def time_hydra(exe: str, extra: list[str], workers: int, timeout: float) -> dict:
    """One `microgpt-hydra ... --workers N` in an empty temp dir: wall and CPU seconds, peak RSS."""
    cmd = [exe, *extra, "--workers", str(workers)]
    with tempfile.TemporaryDirectory(prefix="microgpt-bench-") as tmp:
        out_path, err_path = Path(tmp, "stdout.txt"), Path(tmp, "stderr.txt")
        with open(out_path, "w") as out, open(err_path, "w") as err:
            start = time.perf_counter()
            # its own process group, so a timeout kills the pool workers along with it
            proc = subprocess.Popen(cmd, cwd=tmp, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
            timer.start()
            # wait4, not wait: its rusage covers this run's process tree alone (pool workers included)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            timer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
        result = {"workers": workers, "command": shlex.join(cmd), "exit_code": proc.returncode,
                  "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "peak_rss_mib": maxrss_mib(usage.ru_maxrss)}
        if wall >= timeout:
            result["error"] = f"killed after the {timeout:g} s timeout"
        elif proc.returncode != 0:
            lines = err_path.read_text(errors="replace").strip().splitlines()
            result["error"] = lines[-1] if lines else f"exit code {proc.returncode}"
    return result


# --- the report -----------------------------------------------------------------------------------

def spread(values: list[float]) -> str:
    """'median [min-max]' with precision suited to the size."""
    fmt = "{:.0f}" if statistics.median(values) >= 100 else "{:.1f}"
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def print_table(rows: list[dict], have_torch: bool) -> None:
    head = ["config", "params", "microgpt steps/s", "nodes/edges (ns/edge)", "peak RSS (start)"]
    if have_torch:
        head += ["torch steps/s", "torch RSS", "microgpt/torch", "loss diff (rep 1)"]
    table = [head]
    for row in rows:
        mg, tc = row["microgpt"], row.get("torch")
        if "error" in mg:
            line = [row["config"], "-", "error: " + mg["error"], "", ""]
        else:
            graph = "n/a"
            if mg["graph"]:   # and the cost of one edge: a step's time over its edges
                ns = 1e9 / statistics.median(mg["steps_per_s"]) / mg["graph"][1]
                graph = "{}/{} ({:.1f} ns)".format(*mg["graph"], ns)
            line = [row["config"], str(mg["n_params"]), spread(mg["steps_per_s"]), graph,
                    f"{mg['peak_rss_mib']:.0f} MiB ({mg['rss_before_mib']:.0f})"]
        if have_torch:
            if tc is None or "error" in tc:
                line += ["error: " + tc["error"] if tc else "-", "", "", ""]
            else:
                line += [spread(tc["steps_per_s"]), f"{tc['peak_rss_mib']:.0f} MiB",
                         f"{row['ratio']:.2f}x" if "ratio" in row else "-",
                         f"{row['loss_rel_diff']:.0e}" if "loss_rel_diff" in row else "-"]
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for k, r in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def print_phases(rows: list[dict]) -> None:
    print("\nwhere a step's time goes (share of timed steps): " + ", ".join(PHASES))
    for row in rows:
        for engine in ("microgpt", "torch"):
            res = row.get(engine)
            if res and "phase_share" in res:
                shares = "  ".join(f"{p} {res['phase_share'][p]:5.1%}" for p in PHASES)
                print(f"  {row['config']:<10} {engine:<9} {shares}")


def write_json(path: str, data: dict) -> None:
    """Write data to path atomically (temp file in the same directory, then os.replace)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, target)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="See benchmarks/README.md.")
    ap.add_argument("--quick", action="store_true", help="3 repetitions of 60 steps, 10 warm-up steps")
    ap.add_argument("--repeats", type=int, help="timed repetitions per config (default 5)")
    ap.add_argument("--steps", type=int, help="training steps per repetition (default 300)")
    ap.add_argument("--warmup", type=int, help="untimed steps before the first repetition (default 30)")
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS),
                    help="which configs to run (default: all)")
    ap.add_argument("--seed", type=int, default=0,
                    help="weights, name order and the hydra run's seed (default 0)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--skip-hydra", action="store_true", help="skip timing microgpt-hydra")
    ap.add_argument("--hydra-args", default="", metavar="ARGS",
                    help="extra flags for microgpt-hydra, one shell-quoted string; --workers is added, "
                         "and --seed (this run's) unless given")
    ap.add_argument("--hydra-timeout", type=float, default=3600, metavar="S",
                    help="kill a hydra run after this many seconds (default 3600)")
    ap.add_argument("--json", metavar="PATH", help="also save every number to PATH")
    ap.add_argument("--worker", nargs=2, metavar=("ENGINE", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    quick = (3, 60, 10) if args.quick else (5, 300, 30)
    args.repeats = quick[0] if args.repeats is None else args.repeats
    args.steps = quick[1] if args.steps is None else args.steps
    args.warmup = quick[2] if args.warmup is None else args.warmup
    if min(args.repeats, args.steps) < 1 or args.warmup < 0:
        ap.error("--repeats and --steps must be >= 1, --warmup >= 0")

    if args.worker:
        engine, config = args.worker
        print(json.dumps(run_worker(engine, config, args.steps, args.warmup, args.repeats, args.seed)))
        return 0

    try:
        import microgpt
    except ImportError as exc:
        print(f"bench.py: cannot import microgpt ({exc}); pip install the package first", file=sys.stderr)
        return 1

    torch_version = None if args.no_torch else torch_available()
    load = os.getloadavg()[0]   # other work on the machine makes every number here noisier
    print(f"microgpt {microgpt.__version__} | Python {platform.python_version()} | "
          f"{platform.machine()} {os.cpu_count()} CPUs, load {load:.1f} | "
          f"torch {torch_version or 'not available'}")
    print(f"{args.repeats} repetitions x {args.steps} steps after {args.warmup} warm-up steps; "
          "steps/s as median [min-max]\n")
    rows = []
    for config in args.configs:
        n_ctx, n_emb, n_layer, n_head, n_ff_exp = CONFIGS[config]
        row = {"config": config, "n_ctx": n_ctx, "n_emb": n_emb, "n_layer": n_layer, "n_head": n_head,
               "n_ff_exp": n_ff_exp, "microgpt": spawn_worker("microgpt", config, args)}
        if torch_version:
            row["torch"] = spawn_worker("torch", config, args)
            mg, tc = row["microgpt"], row["torch"]
            if "error" not in mg and "error" not in tc:
                row["ratio"] = statistics.median(mg["steps_per_s"]) / statistics.median(tc["steps_per_s"])
                # Same weights, same names: the losses agree to rounding at first; later the two
                # runs drift apart as Adam amplifies rounding differences (more so in deep models).
                pairs = zip(mg["mean_loss_per_rep"], tc["mean_loss_per_rep"])
                diffs = [abs(a - b) / abs(b) for a, b in pairs]
                row["loss_rel_diff"], row["loss_rel_diff_per_rep"] = diffs[0], diffs
        rows.append(row)
    print_table(rows, bool(torch_version))
    print_phases(rows)
    if not any(row["microgpt"].get("graph") for row in rows):
        print("\nnodes/edges: n/a (this microgpt has no graph_size; see graph_stats in this file)")

    print("\nmicrogpt-hydra, default run:")
    hydra = []
    exe = shutil.which("microgpt-hydra")
    if args.skip_hydra:
        print("  skipped (--skip-hydra)")
    elif exe is None:
        print("  skipped: microgpt-hydra not installed")
    else:
        extra = shlex.split(args.hydra_args)
        if not any(a == "--seed" or a.startswith("--seed=") for a in extra):
            extra += ["--seed", str(args.seed)]     # both runs then do the very same work
        print(f"  {shlex.join(['microgpt-hydra', *extra])} --workers N, in an empty temp dir")
        for workers in (1, 2):
            res = time_hydra(exe, extra, workers, args.hydra_timeout)
            hydra.append(res)
            line = (f"  --workers {workers}: {res['wall_s']:.1f} s wall, {res['cpu_s']:.1f} s CPU, "
                    f"peak RSS {res['peak_rss_mib']:.0f} MiB")
            print(line + (f"  FAILED: {res['error']}" if "error" in res else ""))
        if len(hydra) == 2 and not any("error" in r for r in hydra):
            print(f"  speed-up with 2 workers: {hydra[0]['wall_s'] / hydra[1]['wall_s']:.2f}x")

    if args.json:
        write_json(args.json, {
            "meta": {"microgpt": microgpt.__version__, "torch": torch_version,
                     "python": platform.python_version(), "machine": platform.machine(),
                     "cpus": os.cpu_count(), "load_before": load,
                     "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "repeats": args.repeats, "steps": args.steps, "warmup": args.warmup,
                     "seed": args.seed, "lr": LR},
            "configs": rows, "hydra": hydra})
        print(f"\nsaved {args.json}")
    failed = any("error" in row[e] for row in rows for e in ("microgpt", "torch") if e in row)
    return 1 if failed or any("error" in r for r in hydra) else 0


if __name__ == "__main__":
    sys.exit(main())
