"""Where a result came from: harness version and commit, torch version, device."""

from __future__ import annotations

import functools
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from harness import __version__

if TYPE_CHECKING:  # torch is imported where a device is named, not by the views that read provenance
    import torch

SOURCE_DIR = Path(__file__).resolve().parents[2]  # the checkout (harness/util/provenance.py)
TRACKED_LEADERBOARD = "leaderboard.csv"  # the repository's own, with the published rows


@functools.cache
def harness_commit() -> str:
    """The source checkout's commit, with ``-dirty`` if tracked files other than the top-level
    ``leaderboard.csv`` changed; ``unknown`` outside a git checkout (an installed wheel)."""
    try:
        run = functools.partial(subprocess.run, cwd=SOURCE_DIR, capture_output=True, text=True, timeout=10)
        head = run(["git", "rev-parse", "HEAD"])
        if head.returncode != 0:
            return "unknown"
        # the leaderboard that evaluations append to is tracked, but its growth does not change the harness
        dirty = run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){TRACKED_LEADERBOARD}"]
        ).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def harness_version() -> str:
    return __version__


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        import torch

        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
