"""Where Hydra's evaluations run: the one seam between the engine and the machines.

The engine hands an evaluator a batch of tasks (an organism's id, its genome, how many names to
sample, its seed) and takes their outcomes back as they finish, matched by id, so the order they
finish in never matters. What never changes in a run (the evaluation function, the names it
trains on) is bound into the evaluator before the engine sees it, as DEAP binds `toolbox.map`.

- `PoolEvaluator`: any `concurrent.futures` executor; a pool that breaks (a worker died) is
  replaced and its lost evaluations run once more. In tests: a thread pool over a fake evaluation.
- `LocalPool`: this machine's cores, as worker processes that die with their parent.
- `DaskEvaluator`: a Dask cluster (`distributed.Client.get_executor()`), the names scattered to
  every worker once; Dask itself reruns what a lost worker had.
"""
import logging
import multiprocessing
import signal
import sys
import traceback
from concurrent.futures import BrokenExecutor, CancelledError, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from microgpt.errors import MicrogptError, UsageError


@dataclass(frozen=True)
class Task:
    """One evaluation to run: evaluate(genome, samples, seed[, temperatures=...])."""
    key: str                      # the organism's id, unique in the run
    genome: dict                  # the seven genes and the temperature
    samples: int
    seed: int
    temperatures: tuple = ()


@dataclass(frozen=True)
class Outcome:
    """A finished task: its result dict, or why it failed (a line, then any traceback); attempts
    counts the runs it took."""
    key: str
    result: Optional[dict]
    error: Optional[str]
    attempts: int
    seed: Optional[int] = None    # the task's
    genome: Optional[dict] = None  # a recalled one's (the store's): the genes it was trained with


class PoolEvaluator:
    """Tasks through a concurrent.futures executor made by new_executor().

    A worker that raises fails its task (with the reason); a worker that dies breaks the pool,
    which is replaced, and the tasks it lost are retried up to `retries` times, then fail.
    """

    def __init__(self, evaluate, new_executor, retries=1, bound=None):
        self.evaluate, self.new_executor, self.retries = evaluate, new_executor, retries
        self.bound = bound or {}          # keyword arguments every evaluation gets
        self.executor = new_executor()

    def run(self, tasks, on_retry=None):
        """Yield an Outcome per task as it finishes; on_retry(keys) before lost tasks run again."""
        attempts = dict.fromkeys((t.key for t in tasks), 0)
        while tasks:
            futures, lost = {}, []
            try:
                for t in tasks:
                    attempts[t.key] += 1
                    extra = {"temperatures": t.temperatures} if t.temperatures else {}
                    try:
                        futures[self.executor.submit(self.evaluate, t.genome, t.samples, t.seed,
                                                     **self.bound, **extra)] = t
                    except BrokenExecutor:
                        lost.append(t)
                for fut in as_completed(futures):
                    t = futures[fut]
                    try:
                        yield Outcome(t.key, fut.result(), None, attempts[t.key], t.seed)
                    except BrokenExecutor:
                        lost.append(t)
                    except Exception as exc:       # the organism fails, the run goes on
                        self.check(exc)
                        yield Outcome(t.key, None, failure_text(exc), attempts[t.key], t.seed)
            except BaseException:                  # Ctrl-C: nothing more should start
                for fut in futures:
                    fut.cancel()
                raise
            if lost:
                self._replace()
            order = {t.key: i for i, t in enumerate(tasks)}
            lost.sort(key=lambda t: order[t.key])
            tasks = [t for t in lost if attempts[t.key] <= self.retries]
            if tasks and on_retry is not None:
                on_retry([t.key for t in tasks])
            for t in lost:
                n = attempts[t.key]
                if n > self.retries:
                    why = {1: "", 2: " twice"}.get(n, f" {n} times")
                    yield Outcome(t.key, None, f"worker process died{why}", n, t.seed)

    def check(self, exc):
        """Called when an evaluation raised exc: raise instead when the whole evaluator is gone."""

    def _replace(self):
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self.new_executor()

    def close(self):
        """Wait for the workers to finish and stop them."""
        self.executor.shutdown(wait=True)

    def kill(self):
        """Stop at once: cancel what waits (what runs is the executor's to stop)."""
        self.executor.shutdown(wait=False, cancel_futures=True)


def failure_text(exc):
    """Why an evaluation failed: 'KeyError: 'x'' on the first line (what the console shows), then
    its traceback (what the store keeps), the worker's own included: a process pool chains it as
    the cause, Dask puts it on the exception."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return f"{type(exc).__name__}: {exc}\n" + "".join(lines)


def worker_init():
    """Process pool initializer: Ctrl-C is the parent's to handle (it stops the workers itself),
    and on Linux a worker is killed when its parent dies, even by SIGKILL, instead of living on."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("SIGTERM", "SIGHUP"):       # the parent's handlers came along with the fork
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


class LocalPool(PoolEvaluator):
    """This machine: `workers` processes, replaced when one dies, killed on an interrupt."""

    def __init__(self, workers, evaluate, bound=None):
        self.workers = workers
        super().__init__(evaluate, lambda: ProcessPoolExecutor(max_workers=workers,
                                                               initializer=worker_init),
                         bound=bound)

    def kill(self):
        """Stop at once: cancel what waits and terminate the workers that run."""
        super().kill()
        for p in multiprocessing.active_children():   # this process's children: the workers
            p.terminate()
        for p in multiprocessing.active_children():
            p.join(timeout=5)


def _microgpt_version():
    """The microgpt version a Dask worker runs (module-level: it travels by name)."""
    import microgpt

    return microgpt.__version__


def check_address(address):
    """address, if it looks like a Dask scheduler's (tcp://HOST:PORT); UsageError otherwise."""
    shown = address if len(address) <= 80 else address[:77] + "..."
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    if (parts.scheme not in ("tcp", "tls", "ws", "wss") or not host or port is None
            or parts.username is not None or parts.path or parts.query or parts.fragment):
        raise UsageError(f"not a scheduler address, got {shown!r}; expected tcp://HOST:PORT "
                         f"(a Dask scheduler listens on 8786)")
    if len(host) > 253 or any(not 0 < len(label) <= 63 for label in host.strip("[]").split(".")):
        raise UsageError(f"not a host name, got {shown!r} (at most 253 characters, 63 a label)")
    return address


def probe(address, timeout):
    """None if a Dask scheduler answers at address within timeout seconds (a handshake and an
    `identity` call, both bounded: distributed's own connect waits for a silent server's
    handshake forever); else UsageError in one line."""
    import asyncio

    from distributed.comm import connect

    async def ask():
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    try:
        answer = asyncio.run(asyncio.wait_for(ask(), timeout))
    except (OSError, asyncio.TimeoutError, ValueError, TypeError) as exc:
        why = "it did not answer" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
        raise UsageError(f"--scheduler {address}: no Dask scheduler answered within {timeout} s "
                         f"({why})") from None
    except Exception:                            # junk on the wire that the protocol rejects
        raise UsageError(f"--scheduler {address}: not a Dask scheduler (it speaks another "
                         f"protocol)") from None
    if not (isinstance(answer, dict) and answer.get("type") == "Scheduler"):
        kind = answer.get("type") if isinstance(answer, dict) else type(answer).__name__
        raise UsageError(f"--scheduler {address}: not a Dask scheduler (it answered as "
                         f"{str(kind)[:40]})")


class SchedulerLost(MicrogptError):
    """The Dask scheduler went away in the middle of a run."""


class DaskEvaluator(PoolEvaluator):
    """A Dask cluster: every evaluation to the scheduler at address, on whichever worker is free.

    Workers need nothing on disk but the microgpt package, of this very version (checked, for the
    workers there at the start). The names travel with the work: names, (sha256, bytes) of the
    file, are scattered to every worker once and each worker prepares them once; None means the
    bundled names, which every worker has. A worker that dies loses its tasks to another worker
    (Dask's own rescheduling); a scheduler that goes away stops the run with one line.
    """

    def __init__(self, address, evaluate, names=None, timeout=10):
        try:
            from distributed import Client
        except ImportError:
            raise UsageError("--scheduler needs Dask's distributed: pip install 'microgpt-hydra[dask]' "
                             "(in a checkout: pip install '.[dask]')") from None
        self.address = check_address(address)
        # its errors become our one line; distributed sets tornado.application's level itself
        for name in ["tornado", *logging.root.manager.loggerDict]:
            if name.startswith(("distributed", "tornado")):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        probe(address, timeout)
        try:
            self.client = Client(address, timeout=f"{timeout}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(f"--scheduler {address}: no Dask scheduler answered within {timeout} s "
                             f"({type(exc).__name__})") from None
        try:
            self.client.wait_for_workers(1, timeout=timeout)
            versions = self.client.run(_microgpt_version)
        except (OSError, TimeoutError) as exc:
            self.client.close()
            raise UsageError(f"--scheduler {address}: no worker joined within {timeout} s "
                             f"({type(exc).__name__})") from None
        except Exception as exc:               # a worker that cannot import microgpt
            self.client.close()
            raise UsageError(f"--scheduler {address}: a worker cannot run microgpt "
                             f"({type(exc).__name__}: {exc})") from None
        mine = _microgpt_version()
        for worker, version in sorted(versions.items()):
            if version != mine:
                self.client.close()
                raise UsageError(f"--scheduler {address}: worker {worker} runs microgpt {version}, "
                                 f"this is {mine}; install the same version on every worker")
        self.workers = len(versions)
        bound = {}
        if names is not None:
            bound["names"] = self.client.scatter(names, broadcast=True, hash=False)
        super().__init__(evaluate, self.client.get_executor, retries=0, bound=bound)

    def check(self, exc):
        # this run never cancels a future but to stop: a cancelled one means the client lost
        # its scheduler (and gave up reconnecting), not that the organism failed
        if isinstance(exc, CancelledError) or self.client.status not in ("running", "connecting"):
            raise SchedulerLost(f"lost the Dask scheduler at {self.address} ({type(exc).__name__}); "
                                f"`microgpt-hydra --resume` continues from the store")

    def close(self):
        self.client.close()

    def kill(self):
        """Stop at once: cancel every evaluation (closing the client does), free the cluster."""
        self.client.close()
