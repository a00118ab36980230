"""User-facing errors. The CLI prints their message (no traceback) and maps them to exit codes:
:class:`UsageError` and :class:`SubmissionRejected` exit 2, every other :class:`HarnessError` exits 1."""


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
