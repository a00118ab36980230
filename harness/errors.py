"""User-facing errors and the exit codes they map to. The CLI prints their message (no traceback):
:class:`UsageError` and :class:`SubmissionRejected` exit 2, every other :class:`HarnessError` exits 1."""

from enum import IntEnum


class ExitCode(IntEnum):
    """The ``harness`` command's exit status; a larger code is the worse outcome of several."""

    OK = 0
    RUN_FAILED = 1  # a run failed, a row could not be written, or the setup is wrong (data, leaderboard)
    REJECTED = 2  # a submission was rejected (bad file or interface), or the command line is wrong
    INTERRUPTED = 130  # Ctrl-C or SIGTERM: finished runs are recorded, unfinished ones keep checkpoints


class HarnessError(Exception):
    """An error whose message tells the user what went wrong and what to do."""


class UsageError(HarnessError):
    """A bad option or name on the command line (unknown architecture, profile, sandbox...)."""


class SubmissionRejected(HarnessError):
    """The file or its interface is not acceptable; the message says why and where."""


class DatasetError(HarnessError):
    """The dataset is missing or damaged; the message names the path and the fix."""


class LeaderboardError(HarnessError):
    """The leaderboard file cannot be appended to; it was left unchanged."""


class RunFailed(HarnessError):
    """A run could not finish; the message is the reason shown to the user."""
