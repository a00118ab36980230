"""Results as data: ``harness.api.check`` and ``harness.api.evaluate`` return typed results and say what
to pass when an argument is wrong; ``harness evaluate --json`` keeps standard output one JSON document and
lists the runs it skipped, with why; the messages name the next command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import harness

from harness import api
from harness.errors import UsageError

pytestmark = pytest.mark.slow  # each test starts loss workers or the harness command


def test_the_api_gives_typed_results_and_clear_errors(tmp_path):
    """``api.check`` and ``api.evaluate`` return pydantic models; a bad argument says what to pass, with
    no validation dump; a rejected file is data."""
    example = Path(__file__).parent.parent / "submissions" / "example_loss.py"
    for bad, expected in [
        (dict(archs="resnet20"), "archs is a list, e.g. archs=['resnet20'] (got 'resnet20')"),
        (dict(arch=["resnet20"]), "unknown option(s) arch; the options are: archs,"),
        (dict(seeds=["first"]), "invalid evaluation options: seeds.0='first'"),
        (dict(jobs=0), "--jobs must be at least 1"),
    ]:
        with pytest.raises(UsageError) as e:
            api.evaluate(example, profile="tiny", **bad)
        assert expected in str(e.value) and "pydantic" not in str(e.value) and "http" not in str(e.value), e.value
    broken = tmp_path / "broken.py"
    broken.write_text("import sys\nimport torch.nn as nn\n\n\nclass MultiTaskLoss(nn.Module):\n    pass\n")
    report = api.check(broken, sandbox="none")
    assert isinstance(report, api.CheckResult) and not report.ok and "print() needs no sys" in report.problem
    result = api.evaluate([broken], profile="tiny", sandbox="none", leaderboard=tmp_path / "lb.csv")
    assert isinstance(result, api.EvaluationResult) and result.exit_code == 2 and result.runs == []
    assert result.rejected[0].path == str(broken) and "print() needs no sys" in result.rejected[0].reason


def test_evaluate_json_lists_skipped_runs_and_keeps_stdout_pure(tmp_path):
    """``--json``: standard output is one JSON document (a rejected file too), the human table and
    progress go to standard error; a run already done is listed with why it was skipped."""
    example = Path(__file__).parent.parent / "submissions" / "example_loss.py"
    args = ("--profile", "tiny", "--sandbox", "none", "--json")
    first = harness("evaluate", example, *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert [r["status"] for r in data["runs"]] == ["ok"] and data["skipped"] == []
    assert data["checks"][str(example)]["capabilities"] == [] and data["checks"][str(example)]["sandbox"] == "none"
    assert "│ resnet20 │   42 │ ok " in first.stderr  # the results table, on standard error
    assert "harness baselines --only equal_weighting --profile tiny" in " ".join(first.stderr.split())
    again = harness("evaluate", example, *args, cwd=tmp_path)
    data = json.loads(again.stdout)
    assert again.returncode == 0 and data["runs"] == [] and data["checks"] == {}
    [skipped] = data["skipped"]
    assert (skipped["entry"], skipped["arch"], skipped["seed"], skipped["status"]) == (
        "example_loss.py",
        "resnet20",
        42,
        "skipped",
    )
    assert skipped["reason"].startswith("already in leaderboard-tiny.csv (ok, finished ")
    assert "--force runs it again" in skipped["reason"]
    broken = tmp_path / "broken.py"
    broken.write_text("import sys\nimport torch.nn as nn\n\n\nclass MultiTaskLoss(nn.Module):\n    pass\n")
    rejected = harness("evaluate", broken, *args, cwd=tmp_path)
    data = json.loads(rejected.stdout)
    assert rejected.returncode == 2 and data["exit_code"] == 2
    assert "print() needs no sys" in data["rejected"][0]["reason"]
    assert "rejected:" in rejected.stderr
