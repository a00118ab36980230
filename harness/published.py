"""What produced each published row of ``leaderboard.csv`` (``origin=published``), as data for the
views that show those rows: per published row name (the ``submission`` cell: ``dwa``, ``pcgrad``,
``uncertainty``, and the language models' entries of the task's table), a one-line note saying which
implementation produced its numbers, and the baseline file in ``baselines/`` that reproduces that
implementation here, where there is one.

The baseline rows come from the benchmark task's own fills of its ``MultiTaskLoss`` class, which
are not always the methods their names suggest (docs/baselines.md): the published DWA is per
batch, and the published PCGrad never trained the coarse head. Each reproduction is checked
against the fill as described, run in one process (``tests/test_published_reproductions.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PUBLISHED", "Published", "published"]


@dataclass(frozen=True)
class Published:
    """``note``: one line, which implementation produced the row; ``baseline``: the file in
    ``baselines/`` that reproduces it (None: nothing here does)."""

    note: str
    baseline: str | None = None


_BASELINE_ROWS = {
    "dwa": Published(
        "the task's per-batch DWA: this batch's losses over the previous batch's, weights 2 softmax(r / 2), "
        "uniform in epoch 0 (not the paper's epoch averages: dwa.py)",
        "dwa_batch.py",
    ),
    "pcgrad": Published(
        "the task's PCGrad fill, whose parameter list leaves out the coarse head: its coarse head was never "
        "trained (correct PCGrad: pcgrad.py)",
        "pcgrad_mlsbench.py",
    ),
    "uncertainty": Published(
        "the task's uncertainty weighting: exp(-s_k) L_k + s_k, s from 0, trained by the model's SGD", "uncertainty.py"
    ),
}

_MODELS = (
    "anthropic/claude-opus-4.6",
    "deepseek-reasoner",
    "google/gemini-3.1-pro-preview",
    "openai/gpt-5.4",
    "qwen/qwen3.6-plus",
)

PUBLISHED: dict[str, Published] = {
    **_BASELINE_ROWS,
    **{
        f"{model} ({setting})": Published(
            f"a loss strategy written by {model} for the task (its {setting} setting); the code is not "
            "published, so nothing here reproduces it"
        )
        for model in _MODELS
        for setting in ("vanilla", "agent")
    },
}
"""Every published row name of the shipped ``leaderboard.csv``, with what produced it."""


def published(name: str) -> Published | None:
    """What produced the published row ``name`` (its ``submission`` cell), or None if it is not one
    the harness knows."""
    return PUBLISHED.get(name)
