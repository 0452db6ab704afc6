"""Hostile input, as a new user (as root, in an empty directory) would give it: no file outside the
run's own is ever replaced, no read is unbounded, no worker outlives a signal, every error is one
line. Device nodes are made in the test's own temporary directory (os.mknod, root only).
"""
import io
import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import microgpt
from microgpt import hydra_cli
from microgpt.console import banner
from microgpt.genome import GenomeError, load_genome, save_genome
from microgpt.guard import Output
from microgpt.heads import make_heads
from microgpt.hydra import HydraConfig
from microgpt.train import Dataset, Names, draw, load_names

BIN = Path(sys.executable).parent
MICROGPT, HYDRA = str(BIN / "microgpt"), str(BIN / "microgpt-hydra")
TINY = ["--population", "3", "--generations", "1", "--cycles", "1", "--steps", "3", "--samples", "3",
        "--seed", "1", "--workers", "1"]
GENOME = {"n_emb": 16, "n_ctx": 16, "n_layer": 1, "n_head": 4, "n_ff_exp": 4, "steps": 5, "lr": 0.01}
root_only = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                               reason="making a device node needs root")


def run(cmd, cwd, *args, **kw):
    kw.setdefault("timeout", 120)
    return subprocess.run([cmd, *args], cwd=cwd, capture_output=True, text=True, **kw)


def one_line_error(res, status=1):
    assert res.returncode == status, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr and "Errno" not in res.stderr, res.stderr
    return lines[0]


def char_device(path, major_minor):
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(*major_minor))
    return path


# 1. --out never replaces what is not a regular file; symlinks are written through.

@root_only
@pytest.mark.parametrize("kind", ["null", "full", "fifo", "dir"])
def test_out_refuses_what_is_not_a_regular_file(tmp_path, kind):
    path = tmp_path / kind
    if kind == "null":
        char_device(path, (1, 3))
    elif kind == "full":
        char_device(path, (1, 7))
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    before = os.lstat(path)
    line = one_line_error(run(HYDRA, tmp_path, *TINY, "--out", str(path)))
    assert str(path) in line and "regular file" in line
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
    assert not (tmp_path / "experiments").exists() or not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_a_symlinked_genome_is_written_through_and_keeps_its_mode(tmp_path):
    real = tmp_path / "store" / "g.json"
    real.parent.mkdir()
    real.write_text(json.dumps(GENOME))
    real.chmod(0o600)
    (tmp_path / "genome.json").symlink_to(real)
    res = run(HYDRA, tmp_path, *TINY)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "genome.json").is_symlink()
    assert load_genome(real)["evolved"] is True
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    kept = [p for p in real.parent.iterdir() if p != real]
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == GENOME      # the old genome
    assert f"kept as {kept[0]}" in res.stdout


# 2. --out is never the training data.

@pytest.mark.parametrize("through_link", [False, True])
def test_out_may_not_be_the_names(tmp_path, through_link):
    names = tmp_path / "names.txt"
    names.write_text("emma\nava\nmia\nzoe\nliam\n")
    data = names
    if through_link:
        data = tmp_path / "link.txt"
        data.symlink_to(names)
    line = one_line_error(run(HYDRA, tmp_path, *TINY, "--data", str(data), "--out", "names.txt"))
    assert "training names" in line
    assert names.read_text() == "emma\nava\nmia\nzoe\nliam\n"


# 3. Only regular files are read, and genome.json only up to 1 MiB.

@root_only
def test_a_genome_that_is_a_device_or_a_fifo_is_refused_at_once(tmp_path):
    (tmp_path / "genome.json").symlink_to(char_device(tmp_path / "zero", (1, 5)))
    line = one_line_error(run(MICROGPT, tmp_path, "-s", "1", timeout=20))
    assert "genome.json" in line and "character device" in line
    os.mkfifo(tmp_path / "fifo.json")
    line = one_line_error(run(MICROGPT, tmp_path, "-g", "fifo.json", "-s", "1", timeout=20))
    assert "named pipe" in line
    (tmp_path / "genome.json").unlink()
    line = one_line_error(run(MICROGPT, tmp_path, "-d", "zero", "-s", "1", timeout=20))
    assert "zero" in line and "character device" in line


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc/self/mem")
def test_a_regular_file_that_refuses_reads_is_named(tmp_path):
    # /proc/self/mem is a regular file of size 0 whose read fails with EIO
    for flags in (["-d", "/proc/self/mem"], ["-g", "/proc/self/mem"]):
        line = one_line_error(run(MICROGPT, tmp_path, *flags, "-s", "1", timeout=20))
        assert "/proc/self/mem: cannot read" in line


def test_a_huge_genome_is_refused_unread(tmp_path):
    path = tmp_path / "genome.json"
    path.write_text(json.dumps(dict(GENOME, pad="x" * (1 << 20))))
    with pytest.raises(GenomeError, match="too large"):
        load_genome(path)


# 4 and 10. SIGTERM and SIGHUP stop like Ctrl-C; a SIGINT to the parent alone leaves one line.

def _children(pid):
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to find workers")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_stops_the_workers_and_closes_the_records(tmp_path, sig):
    (tmp_path / "genome.json").write_text(json.dumps(GENOME))
    proc = subprocess.Popen([HYDRA, "--seed", "2", "--workers", "2", "--population", "4",
                             "--steps", "300"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert workers, "no workers started"
        time.sleep(0.3)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "Exception" not in err
    time.sleep(0.5)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()
                and "zombie" not in Path(f"/proc/{w}/status").read_text()], "a worker outlived its parent"
    assert json.loads((tmp_path / "genome.json").read_text()) == GENOME
    db = sqlite3.connect(tmp_path / "experiments" / "microgpt.db")
    status, reason = db.execute("SELECT status, reason FROM runs").fetchone()
    db.close()
    assert status == "interrupted" and reason is not None


# 5. An unwritable --out is found before the run; a failed final write says where the winner is.

def test_an_unwritable_out_is_refused_before_any_evaluation(tmp_path):
    (tmp_path / "file").write_text("")
    for out in ("file/genome.json", "/proc/self/no-such-dir/g.json"):
        line = one_line_error(run(HYDRA, tmp_path, *TINY, "--out", out))
        assert out in line
    assert not (tmp_path / "experiments").exists()


def test_a_failed_final_write_names_where_the_winner_is(tmp_path, monkeypatch, capsys):
    import hydra_faults

    from microgpt.hydra import session

    def fail(*args, **kw):
        raise OSError(28, "No space left on device", str(tmp_path / "genome.json"))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(session, "save_genome", fail)
    argv = [*TINY]
    args = hydra_cli.build_hydra_parser().parse_args(argv)
    with pytest.raises(ValueError, match="its genome is in .*microgpt.db, run 1"):
        hydra_cli.run_hydra(args, hydra_cli.build_hydra_parser(), argv, evaluate=hydra_faults.fake_evaluate)
    db = sqlite3.connect(tmp_path / "experiments" / "microgpt.db")
    status, genome = db.execute("SELECT status, winner_genome FROM runs").fetchone()
    db.close()
    assert status == "failed" and json.loads(genome)["evolved"] is True


# 6. Any positive temperature samples; as it goes to zero, sampling becomes argmax.

def test_tiny_temperatures_sample_the_argmax():
    rng = random.Random(0)
    for t in (1e-310, 5e-324, 1e-3):
        assert {draw(rng, [0.5, 2.0, -1.0, 1.9], t) for _ in range(50)} == {1}
    assert {draw(rng, [0.0, 1e308, -1e308], 1e300) for _ in range(200)} <= {0, 1, 2}


def test_microgpt_samples_at_a_tiny_temperature(tmp_path):
    res = run(MICROGPT, tmp_path, "-s", "3", "-t", "1e-310", "-q", "-n", "2")
    assert res.returncode == 0, res.stderr


# 7. A byte-order mark is not a character.

def test_a_bom_is_stripped_from_names_and_genomes(tmp_path):
    (tmp_path / "names.txt").write_bytes("\ufeffemma\nava\nzoe\n".encode())
    assert list(load_names(tmp_path / "names.txt")) == ["emma", "ava", "zoe"]
    res = run(MICROGPT, tmp_path, "-d", "names.txt", "-s", "3", "-n", "5", "-q")
    assert res.returncode == 0 and "\ufeff" not in res.stdout
    (tmp_path / "genome.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(GENOME).encode())
    assert load_genome(tmp_path / "genome.json") == GENOME


# 9. Never more workers than a generation has evaluations.

@pytest.mark.slow
def test_workers_are_capped_at_a_generations_evaluations(tmp_path):
    res = run(HYDRA, tmp_path, *TINY[:-2], "--workers", "1000", "--heads", "weaver")
    assert res.returncode == 0, res.stderr
    assert "3 workers" in res.stdout


# 11. A dangling genome.json is an error, not "no genome".

def test_a_dangling_genome_link_is_an_error(tmp_path):
    (tmp_path / "genome.json").symlink_to(tmp_path / "gone.json")
    line = one_line_error(run(MICROGPT, tmp_path, "-s", "1"))
    assert "genome.json" in line and "broken symbolic link" in line


# 12. A replaced genome is kept, and the run says where.

def test_replacing_a_genome_keeps_the_old_one(tmp_path):
    path = tmp_path / "genome.json"
    save_genome(path, GENOME)
    written, kept = save_genome(path, dict(GENOME, steps=6))
    assert written == path and kept is not None and kept.parent == tmp_path
    assert json.loads(kept.read_text()) == GENOME and load_genome(path)["steps"] == 6
    _, again = save_genome(path, dict(GENOME, steps=7))
    assert again != kept and json.loads(again.read_text())["steps"] == 6


# 13. One line naming the file or stream; plain ASCII where the terminal cannot take more.

def test_experiments_that_is_a_file(tmp_path):
    (tmp_path / "exp").write_text("")
    line = one_line_error(run(HYDRA, tmp_path, *TINY, "--experiments", "exp"))
    assert "--experiments exp" in line and "not a directory" in line


@root_only
def test_a_full_stdout_is_one_line(tmp_path):
    full = char_device(tmp_path / "full", (1, 7))
    for cmd, args in ((MICROGPT, ["-s", "2"]), (HYDRA, TINY)):
        with open(full, "w") as out:
            res = subprocess.run([cmd, *args], cwd=tmp_path, stdout=out, stderr=subprocess.PIPE,
                                 text=True, timeout=120)
        assert res.returncode == 1
        assert res.stderr.strip().splitlines() == [
            f"{Path(cmd).name}: error: cannot write to stdout (No space left on device)"]


def test_a_stream_without_box_characters_gets_plain_ones():
    raw = io.BytesIO()
    out = Output(io.TextIOWrapper(raw, encoding="ascii", write_through=True))
    out.write("Hydra Evolution — 3 Heads, 2 Cycles × 3 Generations ━━ ←Mirror é\n")
    out.flush()
    assert raw.getvalue() == b"Hydra Evolution - 3 Heads, 2 Cycles x 3 Generations == <-Mirror \\xe9\n"


@pytest.mark.slow
def test_an_ascii_terminal_gets_plain_box_characters(tmp_path):
    res = run(HYDRA, tmp_path, *TINY, env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.isascii() and "Hydra Evolution - 3 Heads" in res.stdout


# 14. A big dataset costs its size once, not once per evaluation.

def test_names_are_stored_compactly_and_read_like_a_list():
    names = Names(b"  emma \n\n\nava\r\n \t \nzo\xc3\xab\nmary ann")
    assert list(names) == ["emma", "ava", "zoë", "maryann"] and len(names) == 4
    assert names[2] == "zoë" and names[-1] == "maryann" and names[1:3] == ["ava", "zoë"]
    assert names.chars == set("emavzoëryn")


def test_a_runs_training_names_are_drawn_without_shuffling_everything():
    data = Dataset([f"n{i}" for i in range(10_000)])
    order = data.training_order(50, seed=3)
    assert order == data.training_order(50, seed=3) != data.training_order(50, seed=4)
    train = {data.names[int(i)] for i in data.train}
    assert len(set(order)) == 50 and set(order) <= train
    small = Dataset(["ab", "cd", "ef"])
    assert sorted(small.training_order(6, seed=0)) == ["ab", "ab", "cd", "cd", "ef", "ef"]


# 15. The small things.

def test_json_types_are_named_the_json_way(tmp_path):
    for value, word in ((None, "null"), (True, "true"), ("16", '"16"')):
        (tmp_path / "g.json").write_text(json.dumps(dict(GENOME, n_emb=value)))
        with pytest.raises(GenomeError, match=f"got {word}$"):
            load_genome(tmp_path / "g.json")
    (tmp_path / "g.json").write_text("[]")
    with pytest.raises(GenomeError, match="got an array"):
        load_genome(tmp_path / "g.json")


def test_the_banner_counts_in_the_singular_when_one():
    cfg = HydraConfig(population=1, generations=1, cycles=1, steps=1, samples=1, seed=1)
    title, line, *_ = banner(cfg, make_heads("mirror", ["anna"]), "hydra", 1)
    assert title.endswith("1 Head, 1 Cycle × 1 Generation, 1 organism per head")
    assert line.startswith("  1 step and 1 name per organism") and line.endswith("1 worker")
    title, line, *_ = banner(HydraConfig(seed=1), make_heads("mirror,spark", ["anna"]), "hydra", 2)
    assert "2 Heads" in title and "Cycles" in title and "Generations" in title
    assert "steps and" in line and line.endswith("2 workers")


@pytest.mark.slow
def test_counts_are_singular_when_one(tmp_path):
    res = run(HYDRA, tmp_path, *TINY, "--heads", "mirror")
    assert "1 Head, 1 Cycle × 1 Generation" in res.stdout


def test_zero_samples_print_no_blank_lines_and_flags_are_named(tmp_path):
    res = run(MICROGPT, tmp_path, "-s", "3", "-n", "0", "-q")
    assert res.returncode == 0
    assert res.stdout.splitlines() == [res.stdout.strip()]
    assert res.stdout.startswith("Organism: default with steps=3 |")


@pytest.mark.parametrize("cmd", [MICROGPT, HYDRA])
def test_one_seed_rule_and_a_version(tmp_path, cmd):
    res = run(cmd, tmp_path, "--seed", "-1")
    assert res.returncode == 2 and "usage:" in res.stderr
    res = run(cmd, tmp_path, "--version")
    assert res.returncode == 0 and res.stdout.split()[-1] == microgpt.__version__


def test_help_shows_no_cython_internals():
    import pydoc

    import microgpt

    assert "__pyx" not in pydoc.render_doc(microgpt, renderer=pydoc.plaintext)
    assert "__pyx" not in pydoc.render_doc(microgpt.Val, renderer=pydoc.plaintext)


def test_a_bad_scheduler_address_is_a_usage_error(tmp_path):
    res = run(HYDRA, tmp_path, *TINY, "--scheduler", "notanaddress")
    assert res.returncode == 2 and "not a scheduler address" in res.stderr
    assert not (tmp_path / "experiments").exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--store", ".", "is a directory, not a store"),
    ("--resume", "abc", "expected a run number"),
])
def test_bad_store_flags(tmp_path, flag, value, message):
    res = run(HYDRA, tmp_path, *TINY, flag, value)
    assert res.returncode in (1, 2) and message in res.stderr and "Traceback" not in res.stderr
