"""Our errors and how the commands end: a user's bad input (a MicrogptError) or a file's OSError is
one line; any other exception is a bug and keeps its traceback. All in-process: no subprocess."""
import sqlite3

import pytest

from microgpt import cli, hydra_cli
from microgpt.creature import CreatureError
from microgpt.errors import DataError, MicrogptError, UsageError
from microgpt.evaluators import SchedulerLost
from microgpt.genome import GenomeError
from microgpt.guard import BUG_HINT, OutputError, guarded
from microgpt.store import StoreError


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
