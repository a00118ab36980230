"""What produced each published row of ``leaderboard.csv`` (``origin=published``), as data for the
views that show those rows: per published row name (the ``submission`` cell: ``dwa``, ``pcgrad``,
``uncertainty``, and the language models' entries of the task's table), a one-line note saying which
implementation produced its numbers, and the baseline file in ``baselines/`` that reproduces that
implementation here, where there is one.

The baseline rows come from the benchmark task's own fills of its ``MultiTaskLoss`` class, which
are not always the methods their names suggest (docs/baselines.md): the published DWA is per
batch, and the published PCGrad never trained the coarse head. Each reproduction is checked
against the fill as described, run in one process (``tests/test_published_reproductions.py``).

:func:`reference_standings` turns the published rows into the views' unranked standings, and
:func:`reproductions` puts the measured row of each reproduction under the rows it reproduces.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from harness.results.aggregate import DEFAULT_SETTINGS, Standing, arch_stats, score_of
from harness.util.text import one_line

__all__ = ["PUBLISHED", "Published", "published", "reference_standings", "reproductions"]


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


def reference_standings(rows: pd.DataFrame, archs: list[str], phase: str | None = None) -> list[Standing]:
    """The published rows (``origin == "published"``) as unranked standings, one per (submission,
    source), their accuracies on ``archs``. They never enter the measured ranking or tests. A row
    of another phase than ``phase`` (None: any) gets no score: it was scored on that phase's
    architectures (the final phase's three), not on these. A row of one seed gets no score either,
    beside the measured means of several: its value is kept apart (``single_seed_score``)."""
    shipped = rows[rows["origin"] == "published"]
    out = []
    for (method, source), runs in shipped.groupby(["submission", "source"], sort=True):
        per_arch = {}
        for arch in archs:
            sel = runs[runs["arch"] == arch]
            per_arch[arch] = arch_stats({int(s): float(a) for s, a in zip(sel["seed"], sel["best_fine_acc"])}, 0)
        row_phase = str(runs["phase"].iloc[0])
        score = score_of(per_arch) if phase is None or row_phase == phase else None
        one_seed = all(s.n == 1 for s in per_arch.values())
        out.append(
            Standing(
                label=one_line(str(method)),
                kind="reference",
                submission=method,
                sha256="",
                archs=per_arch,
                score=None if one_seed else score,
                single_seed_score=score if one_seed else None,
                source=source,
                note=what.note if (what := published(str(method))) is not None else "",
                phase=row_phase,
            )
        )
    return out


def reproductions(references: list[Standing], measured: list[Standing]) -> list[Standing]:
    """``references`` with, after the published rows of each name, the measured row of the baseline that
    reproduces its implementation (:mod:`harness.results.published`), when the task's settings have one: its
    accuracies and score only (kind ``reproduction``, unranked, untested here)."""
    out = []
    for i, ref in enumerate(references):
        out.append(ref)
        if i + 1 < len(references) and references[i + 1].submission == ref.submission:
            continue  # after the last published row of this name (they are sorted by name)
        what = published(ref.submission)
        found = [
            e
            for e in measured
            if what is not None
            and e.kind == "baseline"
            and e.submission == what.baseline
            and e.settings == DEFAULT_SETTINGS
            and e.current
        ]
        for e in found:
            plain = {a: dataclasses.replace(s, diff=None, p_value=None, ci=None, n_pairs=0) for a, s in e.archs.items()}
            out.append(
                dataclasses.replace(
                    e,
                    label=f"measured here: {e.label}",
                    kind="reproduction",
                    archs=plain,
                    rank=None,
                    rank_range=None,
                    vs_ref=None,
                    vs_tuned=None,
                    tuned_label="",
                    improvement=None,
                    score_ci=None,
                    cost=None,
                    cost_on="",
                    pairs={},
                    above=(),
                    source=f"measured here, reproducing the implementation of the published {one_line(ref.label)}",
                )
            )
    return out
