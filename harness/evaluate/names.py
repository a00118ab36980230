"""Entry names and places: which names a submission may take, and how the place a file was
evaluated from is recorded.

An entry is a name and a kind (:class:`harness.protocol.EntryKey`). Its name is the file's name, or
``--name``. The rule, checked before anything else is done with a file:

- ``[A-Za-z0-9][A-Za-z0-9_.-]*\\.py``, at most :data:`MAX_NAME` characters: letters, digits, ``_``,
  ``-`` and ``.``, starting with a letter or digit, ending in ``.py``. Such a name reads the same on every
  terminal, in a CSV cell, in Markdown and HTML, and fits as a directory name on every file system
  the runs directory may live on; no invisible or look-alike character can make two names display
  alike.
- A submission never takes a baseline's name, in any letter case: the reference of every comparison is
  the baseline-kind entry, and nothing can sit beside it under the same displayed name.
- A name belongs to the place it was first evaluated from (:func:`place_of`): a file of the same name
  from another directory is another file, and is refused rather than silently made a version of the
  first (rename it, or pass ``--name``). Editing the file in place makes a new version of the entry.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Set as AbstractSet
from pathlib import Path

from harness.errors import SubmissionRejected

SOURCE_BASELINES = Path(__file__).resolve().parents[2] / "baselines"  # the checkout's
"""The baselines of the source checkout: ``harness baselines``' default, and the names reserved for them."""
MAX_NAME = 100
NAME_RULE = (
    "letters, digits, '_', '-' and '.', starting with a letter or digit, ending in '.py', at most "
    f"{MAX_NAME} characters"
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.py")
_ALLOWED = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    invisible = unicodedata.category(ch) in ("Cf", "Cc", "Zs", "Zl", "Zp", "Mn", "Me")
    shown = f"U+{ord(ch):04X}" + (f" {name}" if name else "")
    return (
        shown + (" (invisible)" if invisible else "")
        if invisible or not ch.isprintable() or ord(ch) > 126
        else f"{ch!r}"
    )


def suggest_name(name: str) -> str:
    """A name that follows the rule and reads like ``name``: Unicode compatibility-normalised,
    invisible characters dropped, other characters replaced by ``_``."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cf", "Cc", "Mn", "Me"))
    stem = text[:-3] if text.lower().endswith(".py") else text
    stem = re.sub(r"_+", "_", "".join(c if c in _ALLOWED else "_" for c in stem)).strip("_.-") or "submission"
    return stem[: MAX_NAME - 3] + ".py"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an entry (None when it can): the first thing that breaks the rule."""
    if _NAME.fullmatch(name) and len(name) <= MAX_NAME:
        return None
    bad = next((c for c in name if c not in _ALLOWED), None)
    if bad is not None:
        why = f"it contains {_describe(bad)} at position {name.index(bad) + 1}"
    elif len(name) > MAX_NAME:
        why = f"it has {len(name)} characters (at most {MAX_NAME})"
    elif not name.endswith(".py"):
        why = "it does not end in '.py'"
    else:
        why = f"it starts with {name[0]!r}"
    return f"{why}; a name has {NAME_RULE}"


def check_name(name: str, shown: str, *, option: bool = False, reserved: AbstractSet[str] = frozenset()) -> None:
    """Raise :class:`SubmissionRejected` when ``name`` breaks the rule; ``shown`` is what the user
    gave (the path, or ``--name NAME``). The suggested name avoids the ``reserved`` ones."""
    problem = name_problem(name)
    if problem is None:
        return
    better = suggest_name(name)
    if better.casefold() in {r.casefold() for r in reserved}:
        better = f"my_{better}"
    fix = (
        f"Pass another name, e.g. --name {better}"
        if option
        else f"Rename the file (e.g. to {better}) or pass --name {better}"
    )
    raise SubmissionRejected(f"{ascii(shown)[1:-1]}: the name {ascii(name)} cannot name an entry: {problem}. {fix}")


def reserved_problem(name: str, baselines: set[str]) -> str | None:
    """Why a submission may not take ``name``: a baseline's name, in any letter case (None if it may)."""
    taken = {b.casefold(): b for b in baselines}
    found = taken.get(name.casefold())
    if found is None:
        return None
    return (
        f"{found} is a baseline's name, and a baseline is the reference every entry is compared with; "
        f"evaluate it with `harness baselines --only {found.removesuffix('.py')}`, or give your file another "
        f"name (e.g. --name my_{found})"
    )


def baseline_names(baselines_dir: Path) -> set[str]:
    """The names of the baseline files in ``baselines_dir`` (empty when it does not exist)."""
    try:
        return {p.name for p in Path(baselines_dir).glob("*.py") if not p.name.startswith("_")}
    except OSError:
        return set()


def place_of(path: Path, leaderboard: Path) -> str:
    """Where ``path`` is, as the leaderboard records it: relative to the leaderboard's directory when
    the file lies under it (the record stays true when the checkout moves), else absolute."""
    file = Path(os.path.abspath(path)).resolve()
    base = Path(os.path.abspath(leaderboard)).resolve().parent
    try:
        place = file.relative_to(base).as_posix()
    except ValueError:
        return file.as_posix()
    # a directory name a spreadsheet would read as a formula: the same path, starting with ./
    return f"./{place}" if place.startswith(("=", "+", "-", "@")) else place
