"""Results as data: ``harness leaderboard --format json`` has the CSV's fields, nested per
architecture; the views pick the leaderboard written last when several are here, and say so."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from helpers import REPO, harness, leaderboard_row

from harness.results import append_row

pytestmark = pytest.mark.slow  # each test starts the harness command


def _same(got, want) -> bool:
    return (got is None and pd.isna(want)) or got == want


def test_json_has_the_csv_fields_nested_per_architecture(tmp_path):
    lb = tmp_path / "lb.csv"
    for seed, (mine, ew) in zip((42, 123, 456), ((61.5, 60.0), (62.0, 61.0), (63.6, 62.0))):
        append_row(lb, leaderboard_row(seed=seed, acc=mine, submission="mine.py", profile="full", epochs=200))
        append_row(
            lb,
            leaderboard_row(
                seed=seed,
                acc=ew,
                submission="equal_weighting.py",
                kind="baseline",
                submission_sha256="e" * 64,
                profile="full",
                epochs=200,
            ),
        )
    out = harness("leaderboard", "--leaderboard", lb, "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["profile"] == "full" and data["seeds"] == [42, 123, 456]
    table = pd.read_csv(
        io.StringIO(harness("leaderboard", "--leaderboard", lb, "--format", "csv", cwd=tmp_path).stdout)
    ).set_index("entry")
    for e in data["entries"]:
        row = table.loc[e["entry"]]
        for arch, values in e["archs"].items():
            for field in ("mean", "std", "n", "diff", "p"):
                assert _same(values[field], row[f"{arch}_{field}"]), (e["entry"], arch, field)
        for field, value in (e["vs_equal_weighting"] or {}).items():  # the tested comparison: ew_FIELD
            if field != "seeds":
                assert _same(value, row[f"ew_{field}"]), (e["entry"], field)
        assert _same(e["score"], row["score"]) and e["section"] == row["section"]
        assert e["name"] == row["name"] and _same(e["version"], row["version"])
    mine = next(e for e in data["entries"] if e["entry"] == "mine.py")
    assert mine["archs"]["resnet20"]["mean"] == round((61.5 + 62.0 + 63.6) / 3, 2)
    assert mine["archs"]["resnet20"]["diff"] == round((1.5 + 1.0 + 1.6) / 3, 2)


def test_views_read_the_leaderboard_written_last_and_say_so(tmp_path):
    import os

    append_row(tmp_path / "leaderboard-smoke.csv", leaderboard_row(profile="smoke", submission="smoky.py"))
    append_row(tmp_path / "leaderboard-tiny.csv", leaderboard_row(profile="tiny", submission="tiny.py"))
    os.utime(tmp_path / "leaderboard-smoke.csv", (1, 1))  # written long ago
    r = harness("leaderboard", cwd=tmp_path)
    assert r.returncode == 0 and "tiny.py" in r.stdout and "smoky.py" not in r.stdout
    assert "reading leaderboard-tiny.csv (written last); another profile with --profile smoke" in r.stderr
    r = harness("leaderboard", "--format", "csv", cwd=tmp_path)
    assert r.stdout.startswith("section,") and "reading leaderboard-tiny.csv" in r.stderr  # data stays clean


def test_evaluate_json_and_the_python_function_give_the_same_outcome(tmp_path):
    from harness.api import evaluate_files

    example = REPO / "submissions" / "example_loss.py"
    common = ("--profile", "tiny", "--sandbox", "none", "--runs-dir", tmp_path / "runs")
    r = harness("evaluate", example, "--json", "--leaderboard", tmp_path / "cli.csv", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)  # standard output holds the JSON alone
    assert cli["exit_code"] == 0 and [run["status"] for run in cli["runs"]] == ["ok"]
    run = cli["runs"][0]
    assert (run["entry"], run["arch"], run["seed"], run["row_written"]) == ("example_loss.py", "resnet20", 42, True)
    assert cli["standing"][0]["entry"] == "example_loss.py"
    assert cli["standing"][0]["archs"]["resnet20"]["mean"] == round(run["best_fine_acc"], 2)
    api = evaluate_files(
        [example], profile="tiny", sandbox="none", runs_dir=tmp_path / "runs2", leaderboard=tmp_path / "api.csv"
    )
    assert api["runs"][0]["best_fine_acc"] == run["best_fine_acc"]  # the same seed, the same run
    assert api.keys() == cli.keys()
