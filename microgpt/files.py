"""Files, read and written with care: the user's and the system's files are never clobbered.

Reading takes regular files only (a FIFO, a device such as /dev/zero, a socket or a directory is
refused before a byte is read) and stops at a size limit. Writing follows symbolic links to the
file they name, refuses anything but a regular file there, checks up front that the directory
takes a new file, writes a temporary file beside the target and moves it into place (a reader
sees the old file or the new one), keeps the old file's permission bits, and keeps the old file
itself under a dated name, saying where it went.
"""
import json
import os
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from microgpt.errors import DataError, UsageError

try:
    import fcntl
except ImportError:          # Windows: no advisory locks; the write itself stays atomic
    fcntl = None

KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
         (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
         (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


def kind_of(mode):
    """'a directory', 'a character device', ... for a st_mode that is not a regular file."""
    return next((name for test, name in KINDS if test(mode)), "not a regular file")


def size_text(n):
    """n bytes in words: '512 bytes', '1.0 MiB', '3.2 GiB'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _missing(path):
    """The message for a path that does not exist: a dangling symlink is named as one."""
    if os.path.islink(path):
        return f"{path}: a broken symbolic link (its target {os.readlink(path)} does not exist)"
    return f"{path}: no such file"


def read_bytes(path, what, limit=None, progress=False):
    """The bytes of the regular file at path (at most limit); DataError naming the file otherwise.

    what says what the file should be ('a genome file'). progress draws a bar on stderr when the
    read takes more than a second.
    """
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise DataError(_missing(path)) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    st = os.fstat(fd)
    mode, size = st.st_mode, st.st_size
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise DataError(f"{path}: is {kind_of(mode)}, not {what}")
    with open(fd, "rb", buffering=0) as f:
        return _read_checked(f, path, what, size, limit, progress)


def read_stdin(what, limit=None, progress=False):
    """The bytes of standard input (at most limit), under the rules of read_bytes: a regular
    file, a pipe, a socket or a terminal is read; a device (< /dev/zero), a directory, or a
    closed stdin is DataError naming <stdin>."""
    path = Path("<stdin>")
    stream = sys.stdin
    try:
        fd = stream.fileno() if stream is not None else -1
        st = os.fstat(fd) if fd >= 0 else None
    except (OSError, ValueError, AttributeError):
        st = None
    if st is None:
        raise DataError(f"{path}: standard input is closed; give the names with -d PATH")
    mode = st.st_mode
    streamed = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or (stat.S_ISCHR(mode) and os.isatty(fd))
    if not (stat.S_ISREG(mode) or streamed):
        raise DataError(f"{path}: is {kind_of(mode)}, not {what}")
    with open(fd, "rb", buffering=0, closefd=False) as f:
        return _read_checked(f, path, what, st.st_size if stat.S_ISREG(mode) else 0, limit, progress)


def _read_checked(f, path, what, size, limit, progress):
    """The rest of the open file f (size: what fstat says it holds), at most limit bytes."""
    if limit is not None and size > limit:
        raise DataError(f"{path}: {size_text(size)} is too large for {what} "
                         f"(at most {size_text(limit)})")
    try:
        return _read_all(f, path, what, size, limit, progress)
    except OSError as exc:           # a disk error, or a file that refuses reads (/proc/self/mem)
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read_all(f, path, what, size, limit, progress):
    """The rest of the open file f, at most limit bytes (DataError past it), with a bar."""
    chunks, total = [], 0
    with _progress(progress, total=size, unit="B", unit_scale=True, desc=f"reading {path.name}",
                   delay=1.0, file=sys.stderr, leave=False) as bar:
        # the file can grow while we read it: never read past the limit
        while chunk := f.read(1 << 24 if limit is None else min(1 << 24, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            bar.update(len(chunk))
            if limit is not None and total > limit:
                raise DataError(f"{path}: too large for {what} (at most {size_text(limit)})")
    return b"".join(chunks)


class _NoBar:
    """What a progress bar offers, doing nothing: without one, tqdm is never imported."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass


def _progress(enabled, **options):
    """A tqdm bar with options when enabled, else a bar that draws nothing."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(**options)


def decode_text(data, path):
    """data as text: UTF-8, a leading byte-order mark dropped; DataError naming path otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def parse_json(text, where):
    """The JSON value in text; DataError naming where (a file, or a store's run and column)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: not valid JSON (nested too deeply)") from None
    except TypeError:
        raise DataError(f"{where}: not JSON text (a {type(text).__name__})") from None


def same_file(a, b):
    """True when paths a and b name the same file (through links too), existing or not."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def writable_target(path, flag="--out"):
    """The file that writing path will create or replace (symlinks followed): UsageError naming
    flag and the path unless it is a regular file or absent, in a directory that takes new files.

    Call it before long work, so a destination that cannot be written is found at once.
    """
    target = Path(os.path.realpath(path))
    where = f"{flag} {path}" if flag else str(path)
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"{where}: cannot be checked ({exc.strerror or exc})") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(f"{where}: is {kind_of(mode)}; only a regular file is replaced")
    if mode is not None and _is_database(target):
        raise UsageError(f"{where}: is an SQLite database (a store?); it is never replaced, "
                         f"choose another path")
    if not target.parent.is_dir():
        raise UsageError(f"{where}: directory {target.parent} does not exist")
    try:                   # the only sure test: make (and remove) a file there
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=target.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{where}: cannot write in {target.parent} ({exc.strerror or exc})") from None
    return target


# The first bytes of an SQLite database, and of its write-ahead log (either byte order).
DATABASE_MAGIC = (b"SQLite format 3\x00", b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")


def _is_database(path):
    """Whether the regular file at path is an SQLite database or its -wal file (a store)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return any(head.startswith(magic) for magic in DATABASE_MAGIC)


@contextmanager
def _locked(directory):
    """Hold an advisory lock on directory, so two writers replace a file one after the other."""
    if fcntl is None:
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)             # closing releases the lock


def _keep_old(target):
    """Link the file at target to a new dated name beside it: that name, e.g. genome.20261125-141503.json."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        kept = target.with_name(f"{target.stem}.{stamp}{'' if n == 1 else f'-{n}'}{target.suffix}")
        try:
            os.link(target, kept)
            return kept
        except FileExistsError:
            continue
        except OSError:        # no hard links here: copy it, never over another file
            with open(target, "rb") as src, open(kept, "xb") as dst:
                dst.write(src.read())
            return kept
    raise OSError(f"{target}: too many kept copies named {target.stem}.{stamp}*")


def write_atomic(path, data, flag=None, keep=True):
    """Write data (bytes) to path: (the file written, where the old file was kept or None).

    Symlinks are written through; a non-regular file is refused (UsageError); the temporary file
    is made beside the target and moved over it, with the old file's permission bits. An old
    file that holds exactly data is replaced without a kept copy (nothing would be lost), and so
    is any with keep False (a file this process wrote itself, written again).
    """
    target = writable_target(path, flag)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with _locked(target.parent):
            try:
                mode = stat.S_IMODE(os.stat(target).st_mode)
                kept = None if not keep or _holds(target, data) else _keep_old(target)
            except FileNotFoundError:
                mode, kept = 0o666 & ~_umask(), None     # mkstemp makes it private; ours is not
            os.chmod(tmp, mode)
            os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target, kept


def _holds(path, data):
    """Whether the file at path holds exactly data."""
    if os.path.getsize(path) != len(data):
        return False
    with open(path, "rb") as f:
        return f.read() == data


def _umask():
    """The process's umask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
