"""Test-session setup: helper modules in tests/ import as top-level names; microgpt is the installed one.

pytest runs in importlib mode, which puts nothing on sys.path, so tests/ is added here (only tests/,
never the repo root) for `from reference import RefVal`. `python -m pytest` does put the working
directory first on sys.path; run from the repo root, that would import the uncompiled source tree
instead of the installed package, so that entry is dropped.
"""
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
