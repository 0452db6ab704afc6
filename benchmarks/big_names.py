"""What a very large names file costs: wall time and peak memory of `microgpt` and a tiny Hydra.

Generates a names file of the asked size (default 200 MB, about 23 million names: the bundled
names, each with up to three letters of another appended) in a temporary directory, never in the
repo, and runs each command on it a few times, each in a fresh process, reporting wall seconds and
the peak RSS of the largest process (`ru_maxrss` of the waited-for children), also as a multiple of
the file's size. The file is deleted at the end.

    python benchmarks/big_names.py                  # 200 MB, 3 runs each
    python benchmarks/big_names.py --mb 50 --runs 1
"""
import argparse
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_names(path, size, seed=0):
    """Write about size bytes of names to path: the number of names written."""
    from microgpt.train import load_names

    base = list(load_names())
    rng = random.Random(seed)
    count = total = 0
    with open(path, "w", encoding="utf-8") as f:
        while total < size:
            block = [rng.choice(base) + rng.choice(base)[:rng.randint(0, 3)] for _ in range(100_000)]
            text = "\n".join(block) + "\n"
            f.write(text)
            count, total = count + len(block), total + len(text)
    return count


def measure(cmd, cwd):
    """(wall seconds, peak RSS in bytes of the largest process) of one run of cmd."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest so far: a later, smaller run cannot show its own peak,
    # so every command runs in its own interpreter below (see main)
    return wall, max(peak, before) * 1024


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=200, help="size of the generated file in MB (200)")
    p.add_argument("--runs", type=int, default=3, help="runs per command (3)")
    p.add_argument("--one", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:                      # a child: run one command, print its wall time and peak
        wall, peak = measure(args.one, Path.cwd())
        print(f"{wall} {peak}")
        return
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        names = Path(tmp) / "big.txt"
        count = make_names(names, int(args.mb * 1e6))
        size = names.stat().st_size
        print(f"names file: {size / 1e6:.0f} MB, {count:,} names")
        commands = {
            "microgpt -s 10 -n 1 -q": [str(bin_dir / "microgpt"), "-d", str(names), "-s", "10",
                                       "-n", "1", "-q"],
            "microgpt-hydra, 3 x 1 x 1, 1 step": [
                str(bin_dir / "microgpt-hydra"), "--data", str(names), "--population", "3",
                "--generations", "1", "--cycles", "1", "--steps", "1", "--seed", "1", "-q",
                "--workers", "2", "--out", str(Path(tmp) / "genome.json"),
                "--experiments", str(Path(tmp) / "experiments")],
        }
        print(f"{'command':40} {'wall s (median [min-max])':28} peak RSS")
        for label, cmd in commands.items():
            walls, peaks = [], []
            for _ in range(args.runs):
                out = subprocess.run([sys.executable, __file__, "--one", *cmd], cwd=tmp,
                                     capture_output=True, text=True, check=True).stdout.split()
                walls.append(float(out[0]))
                peaks.append(int(out[1]))
            peak = max(peaks)
            print(f"{label:40} {statistics.median(walls):6.1f} [{min(walls):.1f}-{max(walls):.1f}]"
                  f"{'':13} {peak / 2**20:,.0f} MiB ({peak / size:.1f}x the file)")


if __name__ == "__main__":
    main()
