"""Build the compiled core (microgpt/_core.pyx, with its C kernels in microgpt/_kernels.h) and ship
the bundled names inside the package.

Cython compiler directives live here, and only here.
"""
import platform
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


# Doubles computed as doubles, never fused or widened, so every CPU gives the same bits (the
# kernels' header says why): no contraction into fused multiply-adds, and on 32-bit x86 SSE2
# instead of the x87's 80-bit registers. MSVC's defaults already do both (and the header says
# fp_contract off).
FLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=off"]
if platform.machine().lower() in ("i386", "i486", "i586", "i686", "x86"):
    FLAGS += ["-msse2", "-mfpmath=sse"]

setup(
    ext_modules=cythonize(
        [Extension("microgpt._core", ["microgpt/_core.pyx"],
                   extra_compile_args=[] if sys.platform == "win32" else FLAGS)],
        compiler_directives=DIRECTIVES,
    ),
    cmdclass={"build_py": BuildPyWithNames},
)
