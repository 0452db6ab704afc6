"""microgpt's own errors: a user's bad input, or a failure we can name, printed as one line.

Follows Optuna's OptunaError: every error the commands expect is a MicrogptError (or a kind under
it), and microgpt.guard prints it as one line naming the file or flag and the problem. Any other
exception is a bug in microgpt and keeps its traceback. MicrogptError is a ValueError, so code that
catches ValueError keeps catching it.

The kinds: UsageError and DataError here; GenomeError (genome.json and the genes' caps) in
microgpt.genome, CreatureError (a saved creature file) in microgpt.creature, StoreError (the
SQLite store) in microgpt.store, OutputError (stdout failed) in microgpt.guard, SchedulerLost
(the Dask cluster went away) in microgpt.evaluators.
"""


class MicrogptError(ValueError):
    """Bad input or a named failure; the message is one line naming the file or flag."""


class UsageError(MicrogptError):
    """Flags that cannot work as given: paths that clash (--save over the names), a directory
    that cannot be made, an extra that is not installed, a run that cannot be resumed."""


class DataError(MicrogptError):
    """A file (or stdin) that cannot be read as what it should be: missing, not a regular file,
    too large, not UTF-8, not JSON, no names in it."""
