"""The HTML report's figures: what the trade-off plot's legend lists, and the per-step loss
weights and the scalars a loss module reported, read from the run directories."""

from __future__ import annotations

import pytest

from harness import report
from harness.leaderboard import read_rows
from harness.report import figures

from helpers import SEEDS, leaderboard_row, write_leaderboard

ACC = {"resnet20": (60.0, 61.0, 62.0), "resnet56": (70.0, 71.5, 71.0)}


def _rows(name, kind, sha):
    return [
        leaderboard_row(seed=seed, acc=acc + (kind == "submission"), submission=name, kind=kind,
                        submission_sha256=sha * 64, profile="full", arch=arch, epochs=200,
                        run_id=f"full/{name}/public/{arch}-seed{seed}")
        for arch, values in ACC.items() for seed, acc in zip(SEEDS, values)
    ]


def _legend(tmp_path, *entries) -> list[str]:
    rows = [row for name, kind, sha in entries for row in _rows(name, kind, sha)]
    path = write_leaderboard(tmp_path / "leaderboard.csv", rows)
    plt = figures._pyplot()
    fig, caption = figures.tradeoff_figure(report.build(read_rows(path), "public"), plt)
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    plt.close(fig)
    return labels + [caption]


@pytest.mark.parametrize(
    ("entries", "listed"),
    [
        ([("mine.py", "submission", "a")], ["submission"]),
        ([("mine.py", "submission", "a"), ("pcgrad.py", "baseline", "b")], ["submission", "baseline"]),
        ([("pcgrad.py", "baseline", "b")], ["baseline"]),
        ([("mine.py", "submission", "a"), ("equal_weighting.py", "baseline", "c"), ("fine_only.py", "baseline", "d")],
         ["submission", "static-weight sweep (by w)"]),
    ],
)
def test_the_tradeoff_legend_lists_only_what_is_drawn(tmp_path, entries, listed):
    *labels, caption = _legend(tmp_path, *entries)
    assert labels == listed
    assert ("static-weight sweep joined" in caption) == ("static-weight sweep (by w)" in listed)
