"""The repository's ``leaderboard.csv``: it ships the published results as rows marked
``published`` with their source, in the current schema; evaluations append measured rows beside
them; aggregates keep the two apart; and its growth does not make the harness commit "dirty"."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, harness, leaderboard_row

from harness import report
from harness import results as leaderboard
from harness.protocol import LeaderboardRow
from harness.results import append_row, read_rows
from harness.results.published import PUBLISHED, published
from harness.util import provenance

SHIPPED = REPO / "leaderboard.csv"


def test_the_shipped_leaderboard_holds_only_published_rows_with_their_sources():
    text = SHIPPED.read_text(encoding="utf-8")
    assert text.startswith(leaderboard.HEADER_LINE)  # the current schema, or evaluations could not append
    rows = read_rows(SHIPPED)
    assert len(rows) > 0 and set(rows["origin"]) == {"published"}
    assert rows["source"].str.len().min() > 0
    for record in rows.to_dict("records"):  # every row is a valid row of the schema
        LeaderboardRow(**{k: (None if v != v else v) for k, v in record.items()})
    # the task's own table, per seed, as the task prints it; no source names a file of this project
    assert not rows["source"].str.contains("seeds/|\\.txt|task card", regex=True).any()
    card = rows[rows["source"].str.startswith("the task's published table")]
    dwa = card[(card["submission"] == "dwa") & (card["arch"] == "resnet20")]
    assert dwa["best_fine_acc"].tolist() == [67.96] and dwa["seed"].tolist() == [42]
    assert not (REPO / "harness" / "reference_results.csv").exists()  # one source of truth


def test_every_published_row_says_what_produced_it_and_what_reproduces_it():
    rows = read_rows(SHIPPED)
    assert set(rows["submission"]) == set(PUBLISHED)
    baselines = {p.name for p in (REPO / "baselines").glob("*.py")}
    for name, what in PUBLISHED.items():
        assert what.note and "\n" not in what.note and (what.baseline is None or what.baseline in baselines), name
    assert {n: p.baseline for n, p in PUBLISHED.items() if p.baseline} == {
        "dwa": "dwa_batch.py",
        "pcgrad": "pcgrad_mlsbench.py",
        "uncertainty": "uncertainty.py",
    }
    assert "coarse head was never trained" in published("pcgrad").note
    assert published("openai/gpt-5.4 (agent)").baseline is None and published("equal_weighting") is None


def test_published_rows_stay_outside_every_score(tmp_path):
    path = tmp_path / "leaderboard.csv"
    shutil.copyfile(SHIPPED, path)
    for arch in ("resnet20", "resnet56"):
        for seed in (42, 123, 456):
            append_row(
                path,
                leaderboard_row(
                    seed=seed, acc=50.0, profile="full", arch=arch, epochs=200, submission="dwa", kind="baseline"
                ),
            )
    rep = report.build(read_rows(path), "public")
    assert [e.label for e in rep.entries] == ["dwa"] and rep.entries[0].score == pytest.approx(50.0)
    assert all(r.rank is None for r in rep.references) and {"dwa", "pcgrad"} <= {r.label for r in rep.references}
    r = harness("leaderboard", cwd=tmp_path)  # leaderboard.csv holds measured rows now: it is the default
    assert r.returncode == 0, r.stderr
    assert r.stdout.index("baselines") < r.stdout.index("reported elsewhere")


@pytest.mark.slow
def test_the_default_leaderboard_before_and_after_measuring(tmp_path):
    shutil.copyfile(SHIPPED, tmp_path / "leaderboard.csv")
    append_row(tmp_path / "leaderboard-smoke.csv", leaderboard_row(profile="smoke"))
    r = harness("leaderboard", cwd=tmp_path)  # published rows only: the smoke demo's board is the one meant
    assert r.returncode == 0 and "profile smoke" in r.stdout, r.stdout + r.stderr
    append_row(tmp_path / "leaderboard.csv", leaderboard_row(profile="full", epochs=200))
    r = harness("leaderboard", cwd=tmp_path)
    assert r.returncode == 0 and "profile full" in r.stdout, r.stdout + r.stderr


def test_a_growing_leaderboard_does_not_make_the_commit_dirty(tmp_path, monkeypatch):
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "checkout"
    repo.mkdir()
    run = lambda *a: subprocess.run([git, *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    shutil.copyfile(SHIPPED, repo / "leaderboard.csv")
    (repo / "code.py").write_text("x = 1\n")
    run("add", ".")
    run("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "c")
    monkeypatch.setattr(provenance, "SOURCE_DIR", repo)
    clean = provenance.harness_commit.__wrapped__()
    assert len(clean) == 40
    append_row(repo / "leaderboard.csv", leaderboard_row(profile="full", epochs=200))
    assert provenance.harness_commit.__wrapped__() == clean
    (repo / "code.py").write_text("x = 2\n")
    assert provenance.harness_commit.__wrapped__() == clean + "-dirty"


def test_a_torn_line_does_not_restart_the_attempt_count(tmp_path):
    """A line torn by a crash (an empty seed) must not turn the seeds into floats that no longer
    match the next row of the same run."""
    path = tmp_path / "lb.csv"
    append_row(path, leaderboard_row(seed=42))
    with open(path, "a") as f:
        f.write("3,measured,,2026-11-23T10:00:00+00:00,loss.py\n")  # a crash mid-write
    assert append_row(path, leaderboard_row(seed=42)).attempt == 2
    assert append_row(path, leaderboard_row(seed=42)).attempt == 3
    rows = read_rows(path)
    assert rows["attempt"].tolist() == [1, 2, 3] and rows["seed"].dtype.kind == "i"


def test_the_published_section_shows_each_reproduction_beside_the_rows_it_reproduces(tmp_path):
    from helpers import write_leaderboard

    rows = [
        leaderboard_row(
            seed=seed,
            acc=acc + d,
            submission=name,
            kind="baseline",
            submission_sha256=name[0] * 64,
            profile="full",
            arch=arch,
            epochs=200,
            run_id=f"full/{name}/{arch}-{seed}",
        )
        for name, d in (("dwa_batch.py", 0.0), ("equal_weighting.py", -0.3))
        for arch, acc in (("resnet20", 67.5), ("resnet56", 71.8))
        for seed in (42, 123, 456)
    ]
    lb = write_leaderboard(tmp_path / "leaderboard.csv", rows, shipped=True)
    rep = report.build(read_rows(lb), "public")
    labels = [e.label for e in rep.references]
    mine = labels.index("measured here: dwa_batch.py")
    assert labels[mine - 2 : mine] == ["dwa", "dwa"] and labels.count("measured here: dwa_batch.py") == 1
    shown = rep.references[mine]
    assert shown.kind == "reproduction" and shown.rank is None and shown.archs["resnet20"].mean == pytest.approx(67.5)
    assert all(s.p_value is None and s.diff is None for s in shown.archs.values())  # numbers only, no tests here
    assert not any(e.label.startswith("measured here: pcgrad") for e in rep.references)  # not measured: nothing
    md = harness("leaderboard", "--leaderboard", lb, "--format", "markdown", cwd=tmp_path).stdout
    assert "| measured here: dwa_batch.py |" in md
    assert "its coarse head was never trained" in md and "reproduced by baselines/pcgrad_mlsbench.py" in md
    data = json.loads(harness("leaderboard", "--leaderboard", lb, "--format", "json", cwd=tmp_path).stdout)
    assert [e["section"] for e in data["entries"] if e["entry"].startswith("measured here")] == ["reproduction"]
    # a reproduction is not a headline line: filtering on headline gives each measured entry once
    headline = [e["entry"] for e in data["entries"] if e["headline"]]
    assert sorted(headline) == ["dwa_batch.py", "equal_weighting.py"]


def test_published_rows_are_scored_only_where_their_numbers_mean_a_score(tmp_path):
    """The shipped rows are the final phase's: in the public view they show their accuracies on the two
    public architectures and no score (they were scored on three); in the final view the three-seed
    rows have their score, and a row of one seed has its value apart ('1 seed: x', ``single_seed_score``),
    not in the column of the means of three seeds."""
    from helpers import write_leaderboard

    shipped = read_rows(write_leaderboard(tmp_path / "leaderboard.csv", [], shipped=True))
    public = {(e.label, e.source[:9]): e for e in report.build(shipped, "public").references}
    assert all(e.score is None and e.single_seed_score is None for e in public.values())
    final = report.build(shipped, "final")
    by = {(e.label, e.archs["resnet20"].n): e for e in final.references}
    dwa3, dwa1 = by[("dwa", 3)], by[("dwa", 1)]
    published = pd.read_csv(tmp_path / "leaderboard.csv")
    rows = published[(published["submission"] == "dwa") & published["source"].str.contains("baseline rows")]
    means = rows.groupby("arch")["best_fine_acc"].mean()
    assert dwa3.score == pytest.approx(float(np.exp(np.log(means).mean())), rel=1e-12)
    one = published[(published["submission"] == "dwa") & published["source"].str.contains("seed 42")]
    one_score = float(np.exp(np.log(one["best_fine_acc"]).mean()))
    assert dwa1.score is None and dwa1.single_seed_score == pytest.approx(one_score)
    md = report.render_markdown(final)
    assert f"| 1 seed: {dwa1.single_seed_score:.2f} |" in md and f"| {dwa3.score:.2f} |" in md
    assert "published rows of the final phase have no score here" in report.render_markdown(
        report.build(shipped, "public")
    )
    data = json.loads(report.render_json(final))
    one_seed = [e for e in data["entries"] if e["section"] == "reference" and e["archs"]["resnet20"]["n"] == 1]
    assert one_seed and all(e["score"] is None and e["single_seed_score"] is not None for e in one_seed)
