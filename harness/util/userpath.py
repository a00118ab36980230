"""Text from the loss worker (a message, a traceback) naming the file the user gave where it names
the submission inside the sandbox, its staged copy or the evaluation's copy."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from harness.isolation.sandbox import INSIDE_SUBMISSION, STAGED_PREFIX

_STAGED = re.compile(re.escape(tempfile.gettempdir()) + "/" + STAGED_PREFIX + r"[A-Za-z0-9_]+/submission\.py")


def as_user_path(text: str, shown: Path, copy: Path | None = None) -> str:
    """``text`` (a worker's message or traceback) naming ``shown`` where it names the file inside
    the sandbox (or its staged copy, which ``--sandbox none`` runs), or ``copy`` (the evaluation's
    copy), whether by its absolute or its given path."""
    text = _STAGED.sub(lambda _: str(shown), text.replace(INSIDE_SUBMISSION, str(shown)))
    if copy is not None:
        for form in dict.fromkeys((str(Path(copy).resolve()), str(copy))):  # the longer, absolute one first
            text = text.replace(form, str(shown))
    return text
