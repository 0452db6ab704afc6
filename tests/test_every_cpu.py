"""A run is the same on every CPU and every Python. The core's kernels keep their arithmetic in
one order whatever vectors the CPU has (test_decoder checks the vector paths against the op-by-op
graph); exp, log, erfc and whole powers are the core's own (portable_exp, portable_log,
portable_erfc, powi), because the C library's are not the same everywhere: glibc picks a variant
of exp and log by the CPU, one compiled for FMA where the CPU has it, their last bits can differ,
and its erfc calls its exp. And every float sum that reaches a result adds left to right
(the core's total), because from Python 3.12 the built-in sum compensates its rounding.

On glibc x86-64 a tunable makes glibc take its variants for a CPU without FMA or AVX2, which
lets this machine stand in for such a CPU. Before the core had its own exp and log, the pair of
runs below wrote two different genome.json files that way."""
import filecmp
import hashlib
import math
import os
import platform
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from microgpt._core import half_erfc_total, portable_erfc, portable_exp, portable_log, powi, total

BIN = Path(sys.executable).parent
HYDRA = [str(BIN / "microgpt-hydra")] if (BIN / "microgpt-hydra").exists() else [
    sys.executable, "-m", "microgpt.hydra"]
NO_FMA = "glibc.cpu.hwcaps=-AVX2_Usable,-FMA_Usable,-AVX2,-FMA"
GLIBC_X86_64 = (sys.platform.startswith("linux") and platform.machine() == "x86_64"
                and platform.libc_ver()[0] == "glibc")


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


def test_portable_erfc_is_within_3e_13_of_the_c_librarys():
    rng = random.Random(2)
    zs = [rng.uniform(-6, 6) for _ in range(20000)] + [rng.uniform(1.9, 2.1) for _ in range(5000)]
    zs += [0.0, 2.0, -2.0, 26.0]
    assert max(abs(portable_erfc(z) - math.erfc(z)) / math.erfc(z) for z in zs) < 3e-13
    assert portable_erfc(0.0) == 1.0 and portable_erfc(30.0) == 0.0 and portable_erfc(-30.0) == 2.0


def test_the_portable_functions_give_the_bits_they_gave_when_written():
    # the same bits from any build: a compiler that fused a multiply-add, or reordered a sum,
    # would change some of these 16,000 results
    rng = random.Random(2026)
    xs = [rng.uniform(-745.0, 709.7) for _ in range(3000)] + [rng.uniform(-2, 2) for _ in range(3000)]
    ys = ([math.ldexp(rng.uniform(0.5, 1.0), rng.randint(-1070, 1023)) for _ in range(3000)]
          + [rng.uniform(0.5, 2) for _ in range(3000)])
    zs = [rng.uniform(-6.0, 6.0) for _ in range(3000)] + [rng.uniform(1.5, 2.5) for _ in range(1000)]
    h = hashlib.sha256()
    for f, args in ((portable_exp, xs), (portable_log, ys), (portable_erfc, zs)):
        for a in args:
            h.update(struct.pack("<d", f(a)))
    assert h.hexdigest() == "bb7c4023d8de0c99ddf6b8bcc057f56d53c7eae1aac854feace8e2559f69b42b"


def test_powi_multiplies_by_squaring():
    assert powi(0.85, 0) == 1.0 and powi(0.85, 1) == 0.85
    x2 = 0.85 * 0.85
    assert powi(0.85, 5) == 0.85 * (x2 * x2)                 # 5 = 101 in binary: x, then x^4
    assert powi(3.0, 13) == 3.0 ** 13 and powi(2.0, 1100) == math.inf
    with pytest.raises(ValueError, match="0 or more"):
        powi(2.0, -1)


def test_total_adds_left_to_right():
    xs = [1e16, 1.0, -1e16, 1.0]
    assert total(xs) == ((1e16 + 1.0) - 1e16) + 1.0 == 1.0    # Python 3.12's sum() gives 2.0
    assert total([]) == 0.0 and total(x for x in (0.5, 0.25)) == 0.75
    rng = random.Random(4)
    scores = [rng.gauss(0.0, 1.0) for _ in range(500)]
    s = 0.0
    for y in scores:                                          # the same sum in Python
        s += 0.5 * portable_erfc((y - 0.3) / 0.7)
    assert half_erfc_total(scores, 0.3, 0.7) == s


def _exp_digest(tunables):
    """A digest of math.exp over many arguments in a child Python with these glibc tunables."""
    code = ("import hashlib, math, random; rng = random.Random(5); "
            "print(hashlib.sha256(','.join(math.exp(rng.uniform(-20, 20)).hex() "
            "for _ in range(100000)).encode()).hexdigest())")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "GLIBC_TUNABLES": tunables}).stdout


@pytest.mark.slow
@pytest.mark.skipif(not GLIBC_X86_64, reason="the stand-in for a CPU without FMA is a glibc tunable")
def test_a_run_is_the_same_where_the_c_library_has_no_fma(tmp_path):
    here = os.environ.get("GLIBC_TUNABLES", "")
    if _exp_digest(here) == _exp_digest(NO_FMA):
        pytest.skip("this CPU or glibc gives the same exp either way: nothing to stand in for")
    outs = []
    for name, tunables in (("fma", here), ("no-fma", NO_FMA)):
        cwd = tmp_path / name
        cwd.mkdir()
        proc = subprocess.run(HYDRA + ["--seed", "0", "--cycles", "1", "--generations", "2"], cwd=cwd,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "GLIBC_TUNABLES": tunables})
        assert proc.returncode == 0, proc.stderr[-500:]
        outs.append(cwd)
    for name in ("genome.json", "genome.npz"):
        assert filecmp.cmp(outs[0] / name, outs[1] / name, shallow=False), name
