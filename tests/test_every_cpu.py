"""A run is the same on every CPU. The core's kernels keep their arithmetic in one order whatever
vectors the CPU has (test_decoder checks the vector paths against the op-by-op graph); exp, log
and whole powers are the core's own (portable_exp, portable_log, powi), because the C library's
are not the same everywhere: glibc picks a variant of each by the CPU, one compiled for FMA where
the CPU has it, and their last bits can differ.

On glibc x86-64 a tunable makes glibc take its variants for a CPU without FMA or AVX2, which
lets this machine stand in for such a CPU. Before the core had its own exp and log, the run below
wrote another genome.json that way (a winner's loss apart in the 15th digit, then another
winner)."""
import filecmp
import math
import os
import platform
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from microgpt._core import portable_exp, portable_log, powi

BIN = Path(sys.executable).parent
HYDRA = [str(BIN / "microgpt-hydra")] if (BIN / "microgpt-hydra").exists() else [
    sys.executable, "-m", "microgpt.hydra"]
NO_FMA = "glibc.cpu.hwcaps=-AVX2_Usable,-FMA_Usable,-AVX2,-FMA"


def ulps(a, b):
    """How many doubles apart a and b are (both finite, the same sign)."""
    ia, ib = (struct.unpack("<q", struct.pack("<d", x))[0] for x in (a, b))
    return abs(ia - ib)


def test_portable_exp_and_log_are_within_one_ulp_of_the_c_librarys():
    rng = random.Random(1)
    xs = ([rng.uniform(-745.0, 709.7) for _ in range(20000)]
          + [rng.uniform(-1, 1) for _ in range(20000)]
          + [0.0, -0.0, 1e-300, -1e-300, 709.78, -745.1, -708.4, 1.0, -1.0])
    assert max(ulps(portable_exp(x), math.exp(x)) for x in xs) <= 1
    ys = ([math.exp(rng.uniform(-740, 709)) for _ in range(20000)]
          + [rng.uniform(0.5, 2) for _ in range(20000)]
          + [5e-324, 1e-310, 2.2250738585072014e-308, 1.0, 2.0, 27.0])
    assert max(ulps(portable_log(y), math.log(y)) for y in ys) <= 1
    assert portable_exp(0.0) == 1.0 and portable_log(1.0) == 0.0
    assert portable_exp(710.0) == math.inf and portable_exp(-746.0) == 0.0
    assert math.isnan(portable_exp(math.nan)) and portable_exp(-math.inf) == 0.0
    assert portable_log(math.inf) == math.inf
    with pytest.raises(ValueError, match="not positive"):
        portable_log(0.0)


def test_powi_multiplies_by_squaring():
    assert powi(0.85, 0) == 1.0 and powi(0.85, 1) == 0.85
    x2 = 0.85 * 0.85
    assert powi(0.85, 5) == 0.85 * (x2 * x2)                 # 5 = 101 in binary: x, then x^4
    assert powi(3.0, 13) == 3.0 ** 13 and powi(2.0, 1100) == math.inf
    with pytest.raises(ValueError, match="0 or more"):
        powi(2.0, -1)


@pytest.mark.slow
@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.machine() == "x86_64"
                         and platform.libc_ver()[0] == "glibc"),
                    reason="the stand-in for a CPU without FMA is a glibc x86-64 tunable")
def test_a_run_is_the_same_where_the_c_library_has_no_fma(tmp_path):
    outs = []
    for name, tunables in (("fma", os.environ.get("GLIBC_TUNABLES", "")), ("no-fma", NO_FMA)):
        cwd = tmp_path / name
        cwd.mkdir()
        proc = subprocess.run(HYDRA + ["--seed", "0", "--cycles", "1", "--generations", "2"], cwd=cwd,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "GLIBC_TUNABLES": tunables})
        assert proc.returncode == 0, proc.stderr[-500:]
        outs.append(cwd / "genome.json")
    assert filecmp.cmp(*outs, shallow=False)
