"""A Hydra run's wall time on local Dask workers beside the local process pool, same seed.

Starts a scheduler and N single-threaded workers on 127.0.0.1 for each N asked (each its own
process, no nanny), runs `microgpt-hydra --scheduler` through them, and runs the process pool with
1 and 2 workers; prints wall seconds and checks every genome.json is byte-identical. More workers
than cores oversubscribe the machine: on a 2-core machine, 4 workers share 2 cores.

    python benchmarks/dask_scale.py                       # a default run, 1 2 4 Dask workers
    python benchmarks/dask_scale.py --workers 1 2 --hydra-args "--cycles 1"
"""
import argparse
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd, cwd):
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--hydra-args", default="--seed 0", help="arguments for every run (--seed 0)")
    args = p.parse_args()
    hydra = [str(BIN / "microgpt-hydra"), "-q", *shlex.split(args.hydra_args)]
    rows, genomes = [], set()
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 2):
            cwd = Path(tmp) / f"pool-{n}"
            cwd.mkdir()
            wall = timed([*hydra, "--workers", str(n)], cwd)
            rows.append((f"process pool, {n} worker{'s' if n > 1 else ''}", wall))
            print(f"  {rows[-1][0]:28} {wall:7.1f} s", file=sys.stderr, flush=True)
            genomes.add((cwd / "genome.json").read_bytes())
        for n in args.workers:
            port = free_port()
            procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                                       str(port), "--no-dashboard"], stderr=subprocess.DEVNULL)]
            time.sleep(2)
            procs += [subprocess.Popen([str(BIN / "dask"), "worker", f"tcp://127.0.0.1:{port}",
                                        "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                                       stderr=subprocess.DEVNULL) for _ in range(n)]
            try:
                from distributed import Client

                with Client(f"tcp://127.0.0.1:{port}", timeout="30s") as client:
                    client.wait_for_workers(n, timeout=60)
                cwd = Path(tmp) / f"dask-{n}"
                cwd.mkdir()
                wall = timed([*hydra, "--scheduler", f"tcp://127.0.0.1:{port}"], cwd)
                rows.append((f"Dask, {n} worker{'s' if n > 1 else ''}", wall))
                genomes.add((cwd / "genome.json").read_bytes())
            finally:
                for proc in procs[::-1]:              # the workers, then the scheduler
                    proc.terminate()
                    try:
                        proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            print(f"  {rows[-1][0]:28} {rows[-1][1]:7.1f} s", file=sys.stderr, flush=True)
    base = rows[0][1]
    print(f"microgpt-hydra {args.hydra_args}: wall seconds, and speed-up over one pool worker")
    for label, wall in rows:
        print(f"  {label:28} {wall:7.1f} s  {base / wall:5.2f}x")
    print("every genome.json identical:", len(genomes) == 1)


if __name__ == "__main__":
    main()
