"""``harness.api.leaderboard`` and ``harness.api.compare``: the board and a direct comparison as
typed records, the same data as ``--format json`` and ``harness compare``, checked against scipy;
wrong arguments give a clear error, never a raw validation dump."""

from __future__ import annotations

import json

import pytest
from helpers import SEEDS, leaderboard_row, write_leaderboard
from scipy import stats

from harness import api, report
from harness.errors import UsageError
from harness.report.data import BoardRecord
from harness.results import read_rows

EW = {"resnet20": (60.0, 61.0, 62.0), "resnet56": (70.0, 71.5, 71.0)}
MINE = {"resnet20": (61.5, 62.0, 63.6), "resnet56": (71.2, 72.4, 72.5)}


@pytest.fixture
def lb(tmp_path):
    rows = [
        leaderboard_row(
            seed=s,
            acc=v,
            submission=name,
            kind=kind,
            submission_sha256=name[0] * 64,
            profile="full",
            arch=arch,
            epochs=200,
            run_id=f"full/{name}/{arch}-{s}",
        )
        for name, kind, accs in (("equal_weighting.py", "baseline", EW), ("mine.py", "submission", MINE))
        for arch, values in accs.items()
        for s, v in zip(SEEDS, values)
    ]
    return write_leaderboard(tmp_path / "leaderboard.csv", rows)


def test_leaderboard_is_the_json_as_typed_records(lb):
    board = api.leaderboard(lb)
    assert isinstance(board, BoardRecord)
    assert board.model_dump() == json.loads(report.render_json(report.build(read_rows(lb), "public")))
    mine = next(e for e in board.entries if e.name == "mine.py")
    assert (mine.version, mine.rank, mine.current, mine.kind) == ("m" * 8, 1, True, "submission")
    assert mine.vs_equal_weighting.family == "primary" and board.tests[0].a == "mine.py"
    one = api.leaderboard(lb, arch="resnet20", versions="mine@mmmm")
    assert one.ranked_on == "resnet20" and one.archs == ["resnet20"]


def test_compare_pairs_by_seed_like_scipy(lb):
    result = api.compare("mine", "equal_weighting", path=lb)
    assert result.a.name == "mine.py" and result.b.name == "equal_weighting.py"
    for arch in ("resnet20", "resnet56"):
        assert result.rows[arch].p == pytest.approx(stats.ttest_rel(MINE[arch], EW[arch]).pvalue, rel=1e-12)
    score = {n: [stats.gmean(p) for p in zip(v["resnet20"], v["resnet56"])] for n, v in (("m", MINE), ("e", EW))}
    assert result.rows["score"].p == pytest.approx(stats.ttest_rel(score["m"], score["e"]).pvalue, rel=1e-12)
    assert result.rows["score"].p_adjusted is None and result.rows["score"].seeds == list(SEEDS)  # one comparison


@pytest.mark.parametrize(
    ("call", "said"),
    [
        (lambda lb: api.leaderboard(lb, phase="middle"), "phase: Input should be 'public' or 'final'"),
        (lambda lb: api.leaderboard(lb, versions=["mine"]), "name one version as NAME@SHA"),
        (lambda lb: api.leaderboard(lb, versions=[3]), "versions.0: Input should be a valid string"),
        (lambda lb: api.leaderboard(lb.parent / "none.csv"), "none.csv does not exist"),
        (lambda lb: api.compare("mine", "nope", path=lb), "no entry 'nope'"),
    ],
)
def test_wrong_arguments_say_what_is_wrong(lb, call, said):
    with pytest.raises(UsageError) as e:
        call(lb)
    assert said in str(e.value) and "pydantic" not in str(e.value) and "http" not in str(e.value)


def test_compare_before_the_baseline_names_the_command(tmp_path):
    lb = write_leaderboard(tmp_path / "leaderboard-tiny.csv", [leaderboard_row(seed=42, submission="mine.py")])
    with pytest.raises(UsageError, match="harness baselines --only equal_weighting --profile tiny"):
        api.compare("mine", "equal_weighting", path=lb)
