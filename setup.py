"""Build the compiled core (microgpt/_core.pyx, with its C kernels in microgpt/_kernels.h) and ship
the bundled names inside the package.

Cython compiler directives live here, and only here.
"""
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

try:
    from Cython.Build import cythonize
except ImportError as exc:  # pip installs Cython from pyproject.toml; a bare `setup.py` may not
    raise SystemExit("microgpt needs Cython 3 to build its core: pip install 'cython>=3'") from exc

ROOT = Path(__file__).parent

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": True,          # IEEE semantics (inf, nan) for C doubles, as in the Rust seed
    "auto_pickle": False,       # a Val never crosses a process boundary
    "embedsignature": True,
}


class BuildPyWithNames(build_py):
    """Copy the repo-root input.txt into the built package, so one copy serves repo and wheel."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "microgpt" / "input.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "input.txt", target)


setup(
    ext_modules=cythonize(
        [Extension("microgpt._core", ["microgpt/_core.pyx"],
                   extra_compile_args=[] if sys.platform == "win32"
                   else ["-O3", "-fno-math-errno", "-ffp-contract=off"])],
        compiler_directives=DIRECTIVES,
    ),
    cmdclass={"build_py": BuildPyWithNames},
)
