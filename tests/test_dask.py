"""Hydra on a Dask cluster: a real scheduler and two workers started here on 127.0.0.1, each its own
process; the same genome.json as the local pool, a worker killed mid-run, a scheduler lost."""
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="needs dask's distributed (microgpt-hydra[dask])")
pytestmark = pytest.mark.slow          # a cluster of processes per test

BIN = Path(sys.executable).parent
HYDRA, DASK = str(BIN / "microgpt-hydra"), str(BIN / "dask")
RUN = ["--population", "4", "--generations", "2", "--cycles", "2", "--steps", "200", "--samples", "6",
       "--seed", "8", "-q"]


def wait_for_evaluations(cwd, proc, count):
    """Return once the run's store holds count evaluations (the run still going)."""
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, "the run ended before the fault could be made"
        assert time.monotonic() < deadline
        try:
            db = sqlite3.connect(cwd / "experiments" / "microgpt.db", timeout=5)
            try:
                if db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] >= count:
                    return
            finally:
                db.close()
        except sqlite3.OperationalError:            # not created yet
            pass
        time.sleep(0.02)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A scheduler and n workers (no nanny: a killed worker stays dead), stopped by stop()."""

    def __init__(self, n, tmp_path):
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.log = open(tmp_path / f"dask-{self.port}.log", "w")
        self.scheduler = self._start(["scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--no-dashboard"])
        self.workers = [self._start(["worker", self.address, "--nworkers", "1", "--nthreads", "1",
                                     "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"])
                        for _ in range(n)]
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(n, timeout=60)

    def _start(self, args):
        return subprocess.Popen([DASK, *args], stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self):
        for p in [*self.workers, self.scheduler]:
            p.terminate()
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(2, tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


def hydra(cwd, *args, timeout=300):
    return subprocess.run([HYDRA, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The local pool's genome.json for RUN, with the bundled names and with a names file."""
    cwd = tmp_path_factory.mktemp("local")
    (cwd / "names.txt").write_text("emma\nava\nmia\nzoe\nliam\nnoah\nella\nlily\nsam\nmax\nivy\n")
    assert hydra(cwd, *RUN, "--out", "bundled.json").returncode == 0
    assert hydra(cwd, *RUN, "--data", "names.txt", "--out", "file.json").returncode == 0
    return cwd


def test_the_same_genome_on_a_cluster_and_locally(cluster, local, tmp_path):
    res = hydra(tmp_path, *RUN, "--scheduler", cluster.address)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "genome.json").read_bytes() == (local / "bundled.json").read_bytes()
    # a names file the workers do not have travels with the work
    (tmp_path / "names.txt").write_bytes((local / "names.txt").read_bytes())
    res = hydra(tmp_path, *RUN, "--data", "names.txt", "--scheduler", cluster.address, "--out", "f.json")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "f.json").read_bytes() == (local / "file.json").read_bytes()


def test_a_worker_killed_mid_run(tmp_path, local):
    c = Cluster(2, tmp_path)
    try:
        proc = subprocess.Popen([HYDRA, *RUN, "--scheduler", c.address], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_evaluations(tmp_path, proc, 3)
        c.workers[0].send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        c.stop()
    assert proc.returncode == 0, err
    assert (tmp_path / "genome.json").read_bytes() == (local / "bundled.json").read_bytes()


def test_a_lost_scheduler_stops_in_one_line_and_the_run_resumes_locally(tmp_path, local):
    c = Cluster(1, tmp_path)
    try:
        proc = subprocess.Popen([HYDRA, *RUN, "--scheduler", c.address],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_evaluations(tmp_path, proc, 3)
        c.scheduler.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        c.stop()
    assert proc.returncode == 1 and err.strip().splitlines() == [err.strip()]
    assert "lost the Dask scheduler" in err and "--resume" in err
    res = hydra(tmp_path, "--resume", "-q")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "genome.json").read_bytes() == (local / "bundled.json").read_bytes()


def test_an_unreachable_scheduler_is_one_line_in_bounded_time(tmp_path):
    start = time.monotonic()
    res = hydra(tmp_path, *RUN, "--scheduler", f"tcp://127.0.0.1:{free_port()}", timeout=60)
    assert res.returncode == 1 and "no Dask scheduler answered" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and time.monotonic() - start < 40
