"""How the commands end: signals, a closed or full stdout, errors as one line, bugs in full;
and a notice on stderr when a slow step would otherwise be a silent wait (`slow_notice`).

SIGTERM and SIGHUP stop a command as Ctrl-C does (exit 128 + the signal); stdout that cannot take
the box characters gets ASCII; a write to stdout that fails, an error of the user's input (a
MicrogptError) or a file's OSError is one line naming the file or stream, never a traceback
(unless --debug). Any other exception is a bug in microgpt: its traceback, and a line asking
for a report.
"""
import io
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager

from microgpt.errors import MicrogptError


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread, so the command stops as it does on Ctrl-C."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


def exit_status(interrupt):
    """128 + the signal that stopped us: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


def ignore_stop_signals():
    """From here on a second Ctrl-C or SIGTERM does not cut the clean-up short."""
    for sig in (signal.SIGINT, *STOP_SIGNALS):
        signal.signal(sig, signal.SIG_IGN)


class OutputError(MicrogptError):
    """Writing a result to stdout failed (a full disk, a closed device)."""


# The console's box characters and arrows, for a stream whose encoding lacks them
# (PYTHONIOENCODING=ascii).
ASCII_FALLBACK = str.maketrans({"━": "=", "—": "-", "·": "-", "×": "x", "…": "...", "→": "->",
                               "←": "<-"})


class Output(io.TextIOBase):
    """stdout as the commands write to it: box characters in plain ASCII where the stream cannot
    encode them (other characters escaped), and a failed write turned into one line naming it."""

    def __init__(self, stream, name="stdout"):
        self.stream, self.name = stream, name
        try:
            "━—·×".encode(getattr(stream, "encoding", None) or "utf-8")
            self.plain = False
        except (UnicodeEncodeError, LookupError):
            self.plain = True
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="backslashreplace")

    def _guard(self, write, *args):
        try:
            return write(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write to {self.name} ({exc.strerror or exc})") from None

    def write(self, text):
        return self._guard(self.stream.write, text.translate(ASCII_FALLBACK) if self.plain else text)

    def flush(self):
        self._guard(self.stream.flush)

    def isatty(self):
        return self.stream.isatty()

    def fileno(self):
        return self.stream.fileno()


def _silence_stdout():
    """Point fd 1 at /dev/null, so the interpreter's last flush of stdout cannot fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def fill_closed_streams():
    """The standard streams that were closed (`>&-`), each now open on /dev/null, so that no file
    opened later takes its number (a store on fd 1 would get what is printed); stdin stays None."""
    closed = []
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)       # the lowest free number: fd itself
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            closed.append(name)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)
    return closed


def error_text(exc):
    """One line for exc: an OSError as 'file: reason', never '[Errno N] ...'."""
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        return f"{where}: {exc.strerror}" if where else exc.strerror
    return str(exc)


def guarded(prog, debug, run):
    """run()'s exit status, with signals, a closed or full stdout and bad input turned into one
    line: 0 done, 1 bad input, failure or bug, 128 + N on signal N (130 Ctrl-C, 143 SIGTERM),
    141 stdout closed. A bug (any exception not ours, nor a file's) prints its traceback."""
    if "stdout" in fill_closed_streams():
        print(f"{prog}: error: cannot write to stdout (it is closed)", file=sys.stderr)
        return 1
    real_stdout = sys.stdout
    sys.stdout = Output(real_stdout)
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, *STOP_SIGNALS)} if in_main else {}
    for sig in STOP_SIGNALS if in_main else ():
        signal.signal(sig, _raise_stopped)
    try:
        status = run()
        sys.stdout.flush()
        return status
    except KeyboardInterrupt as exc:
        if in_main:
            ignore_stop_signals()
        print(f"{prog}: interrupted", file=sys.stderr)
        return exit_status(exc)
    except BrokenPipeError:                # stdout closed early (`| head`): stop quietly
        _silence_stdout()
        return 141
    except _store_error() as exc:          # the store: locked for too long, a full disk
        if isinstance(exc, _store_misuse()):
            return _bug(prog)
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: the store: {exc}", file=sys.stderr)
        return 1
    except (MicrogptError, OSError) as exc:   # bad input (GenomeError, DataError, ...), a file
        if isinstance(exc, OutputError):
            _silence_stdout()
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {error_text(exc)}", file=sys.stderr)
        return 1
    except Exception:                       # not the user's input: ours to fix
        return _bug(prog)
    finally:
        sys.stdout = real_stdout
        for sig, handler in previous.items():
            signal.signal(sig, handler)


BUG_HINT = "this is a bug in microgpt; please report it with the traceback above"


def _bug(prog):
    """Print the exception being handled with its traceback, and what to do about it: 1."""
    traceback.print_exc()
    print(f"{prog}: error: {BUG_HINT}", file=sys.stderr)
    return 1


class _NeverRaised(Exception):
    """Stands for sqlite3.Error when sqlite3 was never imported (nothing can raise it then)."""


def _store_error():
    """sqlite3.Error, looked up only when an exception is being matched, so `microgpt` (which
    has no store) never imports sqlite3."""
    sqlite3 = sys.modules.get("sqlite3")
    return sqlite3.Error if sqlite3 is not None else _NeverRaised


def _store_misuse():
    """The sqlite3 errors that only a bug raises (wrong bindings, a closed connection)."""
    sqlite3 = sys.modules.get("sqlite3")
    return (sqlite3.ProgrammingError, sqlite3.InterfaceError) if sqlite3 is not None else ()


@contextmanager
def slow_notice(what, enabled=True):
    """Say on stderr (a terminal) what is happening when it takes more than a second, and when it
    is done, so a big dataset's load is not a silent wait."""
    if not (enabled and sys.stderr.isatty()):
        yield
        return
    start = time.perf_counter()
    timer = threading.Timer(1.0, lambda: print(f"{what} ...", file=sys.stderr, flush=True))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if time.perf_counter() - start >= 1.0:
            print(f"{what}: done in {time.perf_counter() - start:.1f}s", file=sys.stderr)
