"""Our errors and how the commands end: a user's bad input (a MicrogptError) or a file's OSError is
one line; any other exception is a bug and keeps its traceback; a failed evaluation keeps its
traceback in the store while the console shows its first line. All in-process: no subprocess."""
import functools
import io
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import hydra_faults
import pytest

from microgpt import cli, hydra_cli
from microgpt.console import Console
from microgpt.creature import CreatureError
from microgpt.errors import DataError, MicrogptError, UsageError
from microgpt.evaluators import PoolEvaluator, SchedulerLost
from microgpt.genome import GenomeError
from microgpt.guard import BUG_HINT, OutputError, guarded
from microgpt.heads import make_heads
from microgpt.hydra import HydraConfig, Observers, derive_seed, evolve
from microgpt.store import Recorder, Store, StoreError


def test_every_kind_is_ours_and_still_a_value_error():
    for kind in (UsageError, DataError, GenomeError, CreatureError, StoreError, OutputError,
                 SchedulerLost):
        assert issubclass(kind, MicrogptError) and issubclass(kind, ValueError)


def raising(exc):
    def run():
        raise exc
    return run


def one_line(err):
    assert err.count("\n") == 1 and "Traceback" not in err and BUG_HINT not in err, err
    return err


@pytest.mark.parametrize("exc, shown", [
    (GenomeError("genome.json: n_emb must be whole"), "genome.json: n_emb must be whole"),
    (DataError("names.txt: no names in it"), "names.txt: no names in it"),
    (OSError(28, "No space left on device", "genome.json"), "genome.json: No space left on device"),
])
def test_our_errors_and_a_files_are_one_line(capsys, exc, shown):
    assert guarded("microgpt", False, raising(exc)) == 1
    assert one_line(capsys.readouterr().err) == f"microgpt: error: {shown}\n"


@pytest.mark.parametrize("exc", [KeyError("n_emb"), TypeError("unsupported operand"),
                                 ValueError("math domain error"),
                                 sqlite3.ProgrammingError("Incorrect number of bindings")])
def test_anything_else_is_a_bug_with_its_traceback(capsys, exc):
    assert guarded("microgpt-hydra", False, raising(exc)) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and f"{type(exc).__name__}: " in err and "raise exc" in err
    assert err.splitlines()[-1] == f"microgpt-hydra: error: {BUG_HINT}"


def test_a_bug_inside_microgpt_shows_its_traceback_and_the_hint(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)

    def broken(args, parser):
        return {}["n_emb"]
    monkeypatch.setattr(cli, "run", broken)
    assert cli.main(["-n", "0"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "in broken" in err and "KeyError: 'n_emb'" in err
    assert err.splitlines()[-1] == f"microgpt: error: {BUG_HINT}"


def test_a_bug_inside_microgpt_hydra_shows_its_traceback_and_the_hint(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)

    def broken(args, parser, argv):
        return None + 1
    monkeypatch.setattr(hydra_cli, "run_hydra", broken)
    assert hydra_cli.main(["--seed", "1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "in broken" in err and "TypeError" in err
    assert err.splitlines()[-1] == f"microgpt-hydra: error: {BUG_HINT}"


def test_bad_input_through_main_stays_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--genome", "nope.json"]) == 1
    assert one_line(capsys.readouterr().err) == "microgpt: error: nope.json: no such file\n"
    (tmp_path / "genome.json").write_text("{")
    assert cli.main(["-n", "0"]) == 1
    assert "genome.json: not valid JSON" in one_line(capsys.readouterr().err)
    (tmp_path / "names.txt").write_text("\n \n")
    assert cli.main(["-g", "nope.json", "--save", "names.txt", "-d", "names.txt"]) == 1
    one_line(capsys.readouterr().err)
    assert hydra_cli.main(["report"]) == 1
    assert "no store, so no run to report" in one_line(capsys.readouterr().err)
    assert hydra_cli.main(["--resume"]) == 1
    assert "no store, so no run to resume" in one_line(capsys.readouterr().err)


def test_debug_shows_the_traceback_of_bad_input(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--genome", "nope.json", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "GenomeError" in err and BUG_HINT not in err
    assert err.splitlines()[-1] == "microgpt: error: nope.json: no such file"


def test_a_failed_evaluation_keeps_its_traceback_in_the_store_and_one_line_on_the_console(
        capsys, tmp_path):
    heads = make_heads("weaver,spark", ["anna"])
    cfg = HydraConfig(population=4, generations=1, cycles=1, steps=5, samples=6, seed=3)
    log = io.StringIO()
    store = Store(tmp_path / "microgpt.db")
    try:
        run_id = store.new_run(cfg, "hydra", heads, "0" * 64, [], tmp_path / "genome.json")
        victim = derive_seed(3, 0, 0, "Spark", 1)
        evaluator = PoolEvaluator(functools.partial(hydra_faults.raise_for, victim=victim),
                                  lambda: ThreadPoolExecutor(2))
        console = Console(cfg, heads, log, quiet=True, progress=False)
        try:
            evolve(heads, evaluator, cfg, observer=Observers(console, Recorder(store, run_id, cfg)))
        finally:
            evaluator.close()
        failed = [o for o in store.recall(run_id).values() if o.error is not None]
    finally:
        store.close()
    assert len(failed) == 1
    first, _, trace = failed[0].error.partition("\n")
    assert first == "RuntimeError: the organism could not be born"
    assert trace.startswith("Traceback") and "in raise_for" in trace
    shown = [line for line in capsys.readouterr().err.splitlines() if "failed" in line]
    assert len(shown) == 1 and shown[0].endswith(f"scored worst: {first}")
    assert "Traceback" not in log.getvalue() and f"scored worst: {first}" in log.getvalue()
