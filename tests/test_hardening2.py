"""Hostile input, round two (issue 23): the store, the report's folder, resume races, closed
streams, tampered rows. Each store is made in the test's own temporary directory by a run with
the fake evaluation, then tampered with; device nodes and FIFOs are made there too.
"""
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import hydra_faults
import pytest

from microgpt import hydra_cli
from microgpt.evaluators import check_address, probe
from microgpt.files import read_stdin, write_atomic
from microgpt.hydra import HydraConfig
from microgpt.hydra.session import check_paths
from microgpt.store import Store

BIN = Path(sys.executable).parent
MICROGPT, HYDRA = str(BIN / "microgpt"), str(BIN / "microgpt-hydra")
TINY = ["--population", "3", "--generations", "1", "--cycles", "1", "--steps", "5", "--samples", "5",
        "--seed", "3", "--workers", "1", "-q"]
root_only = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                               reason="needs root (a device node, another user)")


def run(cmd, cwd, *args, **kw):
    kw.setdefault("timeout", 120)
    return subprocess.run([cmd, *args], cwd=cwd, capture_output=True, text=True, **kw)


def one_line(text):
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text and "Exception" not in text, text
    return lines[0]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A store holding one completed run of the fake evaluation (run 1)."""
    cwd = tmp_path_factory.mktemp("made")
    here = os.getcwd()
    os.chdir(cwd)
    try:
        parser = hydra_cli.build_hydra_parser()
        args = parser.parse_args(TINY)
        assert hydra_cli.run_hydra(args, parser, TINY, evaluate=hydra_faults.fake_evaluate) == 0
    finally:
        os.chdir(here)
    db = sqlite3.connect(cwd / "experiments" / "microgpt.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return cwd / "experiments" / "microgpt.db"


@pytest.fixture
def store(made, tmp_path, monkeypatch):
    """A copy of the made store in tmp_path/experiments, the test's working directory."""
    (tmp_path / "experiments").mkdir()
    path = tmp_path / "experiments" / "microgpt.db"
    shutil.copy(made, path)
    monkeypatch.chdir(tmp_path)
    return path


def tamper(path, sql, *params):
    db = sqlite3.connect(path)
    db.execute(sql, params)
    db.commit()
    db.close()


def hydra_main(capsys, *argv):
    """microgpt-hydra in process: (status, stdout, stderr)."""
    status = hydra_cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# 1. --out, --store, the names and the store's own files are never one file.

def test_out_is_never_the_store_or_its_files(tmp_path):
    store = tmp_path / "runs.db"
    names = tmp_path / "names.txt"
    names.write_text("emma\nava\n")
    cfg = HydraConfig(data=str(names))
    (tmp_path / "link.json").symlink_to(store)
    for out in ("runs.db", "runs.db-wal", "runs.db-shm", "link.json"):
        with pytest.raises(ValueError, match="is the store"):
            check_paths(tmp_path / out, cfg, store)
    with pytest.raises(ValueError, match="training names"):
        check_paths(tmp_path / "g.json", cfg, names)
    Store(store).close()                                  # an SQLite database is never replaced
    before = store.read_bytes()
    with pytest.raises(ValueError, match="SQLite database"):
        write_atomic(tmp_path / "link.json", b"{}")
    assert store.read_bytes() == before


def test_out_that_is_the_store_is_refused_before_the_run(tmp_path):
    line = one_line(run(HYDRA, tmp_path, *TINY, "--store", "runs.db", "--out", "runs.db").stderr)
    assert "--out runs.db: is the store" in line
    assert not (tmp_path / "runs.db").exists() and not (tmp_path / "experiments").exists()


# 2. The report's files are written carefully: a link's target kept, a FIFO one line.

@pytest.mark.slow
def test_report_writes_through_a_link_keeping_the_file(store, tmp_path, capsys):
    victim = tmp_path / "mine.txt"
    victim.write_text("my notes\n")
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "report.html").symlink_to(victim)
    status, out, err = hydra_main(capsys, "report", "--out", "rep")
    assert status == 0, err
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("mine.") and p != victim]
    assert len(kept) == 1 and kept[0].read_text() == "my notes\n" and f"kept as {kept[0]}" in out


def test_report_over_a_fifo_is_one_line_and_writes_nothing(store, tmp_path, capsys):
    (tmp_path / "rep").mkdir()
    os.mkfifo(tmp_path / "rep" / "fitness.png")
    status, out, err = hydra_main(capsys, "report", "--out", "rep")
    assert status == 1 and "fitness.png: is a named pipe" in one_line(err)
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["fitness.png"]


# 3. --save is never the genome (with --load too) nor the names stdin reads.

def test_save_is_never_the_genome_or_the_names_read(tmp_path):
    assert run(MICROGPT, tmp_path, "-s", "2", "-n", "0", "-q", "--save", "c.npz").returncode == 0
    (tmp_path / "genome.json").write_text('{"keep": 1}')
    line = one_line(run(MICROGPT, tmp_path, "--load", "c.npz", "--save", "genome.json").stderr)
    assert "is the genome file" in line
    assert (tmp_path / "genome.json").read_text() == '{"keep": 1}'
    (tmp_path / "genome.json").unlink()
    names = tmp_path / "names.txt"
    names.write_text("emma\nava\nzoe\n")
    (tmp_path / "alias.txt").symlink_to(names)
    for save in ("names.txt", "alias.txt"):
        with open(names) as stdin:
            res = run(MICROGPT, tmp_path, "-d", "-", "-s", "2", "--save", save, stdin=stdin)
        assert "training names" in one_line(res.stderr)
    assert names.read_text() == "emma\nava\nzoe\n"


# 4. Nothing read from the store or stdin grows without limit.

@pytest.mark.slow
def test_a_lineage_loop_ends(store, capsys):
    from microgpt import report

    db = sqlite3.connect(store)
    winner = db.execute("SELECT winner FROM runs").fetchone()[0].split("/")[0].split("@")[0]
    db.execute("UPDATE evaluations SET parent = organism WHERE organism = ?", (winner,))
    db.commit()
    db.close()
    def endless(signum, frame):
        pytest.fail("the lineage never ends")

    previous = signal.signal(signal.SIGALRM, endless)
    signal.alarm(60)                     # a loop that never ends fails instead of hanging
    try:
        s = Store(store, readonly=True)
        chain = report.lineage(report.load_run(s, 1))
        s.close()
        status, out, err = hydra_main(capsys, "report")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert [a["organism"] for a in chain if not a.get("final")] == [winner]
    assert status == 0, err


@pytest.mark.parametrize("column, value, message", [
    ("population", 100_000_000, "population must be a whole number from 3 to 10000"),
    ("population", "many", "population must be a whole number"),
    ("heads", '["Weaver", "Hydra"]', "heads must list distinct heads"),
    ("heads", "[[[", "heads: not valid JSON"),
    ("pid", 2**40, "pid must be a process id"),
])
def test_a_tampered_run_is_one_line_naming_it(store, capsys, column, value, message):
    tamper(store, f"UPDATE runs SET {column} = ?, status = 'interrupted'", value)
    status, out, err = hydra_main(capsys, "--resume", "1")
    assert status == 1 and f"experiments/microgpt.db: run 1: {message}" in one_line(err)
    status, out, err = hydra_main(capsys, "--list")
    assert status == 0 and out.splitlines()[1].startswith("   1  damaged: ") and message in out
    status, out, err = hydra_main(capsys, "report", "1")
    assert status == 1 and message in one_line(err)


@pytest.mark.slow
def test_a_tampered_evaluation_is_one_line_for_resume_and_skipped_by_the_report(store, capsys):
    tamper(store, "UPDATE runs SET status = 'interrupted'")
    tamper(store, "UPDATE evaluations SET scores = '\"high\"' WHERE rowid = 1")
    tamper(store, "UPDATE evaluations SET scores = '{\"Weaver\": 1e308}' WHERE rowid = 2")
    tamper(store, "UPDATE evaluations SET val_loss = ?, seconds = 'slow' WHERE rowid = 3", float("inf"))
    status, out, err = hydra_main(capsys, "--resume")
    # the first row is the primordial creature's (heard first)
    assert status == 1 and "experiments/microgpt.db: run 1: primordial: scores must map heads to" \
        " numbers" in one_line(err)
    status, out, err = hydra_main(capsys, "report")
    assert status == 0, err
    assert "3 evaluation(s) skipped" in out and "scores must map heads" in out


@pytest.mark.slow
def test_tampered_times_workers_stages_and_champions_are_skipped_by_the_report(store, capsys):
    tamper(store, "UPDATE evaluations SET started = 'soon' WHERE rowid = 1")
    tamper(store, "UPDATE evaluations SET worker = X'07' WHERE rowid = 2")
    tamper(store, "UPDATE evaluations SET stage = 'lunch' WHERE rowid = 3")
    tamper(store, "UPDATE champions SET scores = 'not json' WHERE rowid = 1")
    tamper(store, "UPDATE champions SET scores = '{\"Weaver\": \"high\"}' WHERE rowid = 2")
    status, out, err = hydra_main(capsys, "report")
    assert status == 0, err
    assert "3 evaluation(s) skipped" in out and "started must be a number or NULL" in out


def test_stdin_has_a_files_rules_and_cap(tmp_path, monkeypatch):
    r, w = os.pipe()

    def write():
        try:
            os.write(w, b"ab\n" * (1 << 20))          # 3 MiB, past a 1 MiB cap
        except OSError:                               # the reader stopped at the cap
            pass
        os.close(w)

    class Stdin:
        def fileno(self):
            return r

    writer = threading.Thread(target=write)
    writer.start()
    monkeypatch.setattr(sys, "stdin", Stdin())
    try:
        with pytest.raises(ValueError, match="<stdin>: too large for names"):
            read_stdin("names", limit=1 << 20)
    finally:
        os.close(r)
        writer.join()
    with open(os.devnull, "rb") as null:            # a device, as -d /dev/null is refused
        res = run(MICROGPT, tmp_path, "-d", "-", "-s", "1", stdin=null, timeout=20)
    assert "<stdin>: is a character device" in one_line(res.stderr) and res.returncode == 1


# 5. A --scheduler that is not one: one line, in bounded time, and nothing after it.

@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786/path", "tcp://user:pw@127.0.0.1:8786",
                                     "tcp://" + "h" * 10_000 + ":8786"])
def test_scheduler_addresses_that_are_not_addresses(address):
    with pytest.raises(ValueError, match="not a"):
        check_address(address)


@pytest.fixture
def fake_server():
    """A server on 127.0.0.1 that accepts and then says nothing, or only junk: its port setter."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    talk = {"say": b""}
    conns = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conns.append(conn)
            if talk["say"]:
                conn.sendall(talk["say"])

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], talk
    server.close()
    for c in conns:
        c.close()


def test_a_silent_or_foreign_server_is_not_waited_for(fake_server):
    pytest.importorskip("distributed")
    port, talk = fake_server
    start = time.monotonic()
    with pytest.raises(ValueError, match="no Dask scheduler answered within 1 s"):
        probe(f"tcp://127.0.0.1:{port}", 1)
    assert time.monotonic() - start < 6
    talk["say"] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" * 4
    with pytest.raises(ValueError, match="not a Dask scheduler"):
        probe(f"tcp://127.0.0.1:{port}", 1)


def test_a_foreign_server_is_one_line_and_nothing_after(fake_server, tmp_path):
    pytest.importorskip("distributed")
    port, talk = fake_server
    talk["say"] = b"HTTP/1.1 400 Bad Request\r\n\r\n" * 8
    res = run(HYDRA, tmp_path, *TINY, "--scheduler", f"tcp://127.0.0.1:{port}", timeout=60)
    assert res.returncode == 1 and "not a Dask scheduler" in one_line(res.stderr)


# 6. A run is held while it runs: a stale pid is no obstacle, two resumes are one.

def test_a_stale_pid_is_interrupted_and_a_held_run_is_running(store):
    tamper(store, "UPDATE runs SET status = 'running', pid = ?, host = ?", os.getpid(),
           socket.gethostname())                     # a live process that is not running it
    s = Store(store)
    try:
        assert s.state(s.run(1)) == "interrupted"
        assert s.hold(1) and s.state(s.run(1)) == "running"
        other = subprocess.run(                     # another process sees it held
            [sys.executable, "-c", "import sys; from microgpt.store import Store; s = Store(sys.argv[1]);"
             " print(s.hold(1), s.state(s.run(1)))", str(store)], capture_output=True, text=True)
        assert other.stdout.split() == ["False", "running"], other.stderr
        res = run(HYDRA, store.parent.parent, "--resume", "1")
        assert res.returncode == 1 and "run 1 is still running" in one_line(res.stderr)
    finally:
        s.close()


@pytest.mark.slow
def test_two_resumes_of_one_run_write_once(store, tmp_path):
    tamper(store, "UPDATE runs SET status = 'interrupted', winner = NULL, winner_genome = NULL")
    tamper(store, "DELETE FROM evaluations WHERE trial > 1 OR idx > 0")
    procs = [subprocess.Popen([HYDRA, "--resume", "1", "-q"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    wrote = [out for out, _ in outs if "Wrote genome.json" in out]
    assert len(wrote) == 1, outs
    other = [err for (out, err), p in zip(outs, procs) if "Wrote genome.json" not in out][0]
    assert other == "" or "run 1 is" in one_line(other)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("genome")) == \
        ["genome.json", "genome.npz"]


def test_force_is_only_for_resume(tmp_path):
    res = run(HYDRA, tmp_path, "--force")
    assert res.returncode == 2 and "--force" in res.stderr


# 7. No tracebacks: closed streams, deep JSON, huge run numbers.

@pytest.mark.parametrize("command", ["microgpt -s 2 >&-", "microgpt-hydra --list >&-",
                                     "microgpt -d - -s 2 <&-"])
def test_closed_streams_are_one_line(tmp_path, command):
    res = subprocess.run(str(BIN / command), shell=True, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1 and "closed" in one_line(res.stderr)


def test_a_creature_whose_meta_nests_deeply(tmp_path):
    import numpy as np

    from microgpt.creature import load_creature

    np.savez(tmp_path / "deep.npz", meta=np.frombuffer(b"[" * 100_000 + b"]" * 100_000, np.uint8))
    with pytest.raises(ValueError, match="nested too deeply"):
        load_creature(tmp_path / "deep.npz")


def test_run_numbers_past_sqlites_range(store, capsys):
    for argv in (["--resume", "99999999999999999999"], ["report", "99999999999999999999"]):
        status, out, err = hydra_main(capsys, *argv)
        assert status == 1 and "has no run 99999999999999999999" in one_line(err)


# 8. Read-only commands in a read-only directory; names that are not UTF-8.

@root_only
def test_list_and_report_read_a_store_in_a_read_only_directory(made):
    # another user, for whom the directory is read-only; SQLite resolves the whole path, so the
    # directory is one that user can reach (pytest's own is root's alone), removed at the end
    with tempfile.TemporaryDirectory() as top:
        experiments = Path(top) / "experiments"
        experiments.mkdir()
        shutil.copy(made, experiments / "microgpt.db")
        os.chmod(experiments / "microgpt.db", 0o644)
        os.chmod(experiments, 0o555)
        os.chmod(top, 0o755)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                s = Store(experiments / "microgpt.db", readonly=True)
                code = 0 if [r["id"] for r in s.runs()] == [1] else 2
                s.close()
            except BaseException as exc:
                os.write(2, f"{type(exc).__name__}: {exc}\n".encode())
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        os.chmod(experiments, 0o755)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_name_that_is_not_utf8_is_one_line(store, capsys):
    name = os.fsdecode(b"n\xff.txt")
    status, out, err = hydra_main(capsys, *TINY, "--data", name)
    assert status == 1 and "--data n\\xff.txt: the name is not valid UTF-8" in one_line(err)
    s = Store(store, readonly=True)
    assert len(s.runs()) == 1                        # refused before any run was recorded
    s.close()
