"""``harness leaderboard`` and ``harness migrate``: aggregates checked against hand computations,
the sections and phases, reference rows kept apart, the formats, schema migration, and the HTML
report rendered by a real headless Chromium."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import warnings

import pandas as pd
import pytest
from helpers import SEEDS, harness, harness_in_terminal, leaderboard_row, write_leaderboard
from scipy import stats

from harness import report
from harness.protocol import LEADERBOARD_COLUMNS, EpochMetrics
from harness.report import figures
from harness.results import LeaderboardError, aggregate, append_row, read_rows

EW = {"resnet20": (60.0, 61.0, 62.0), "resnet56": (70.0, 71.5, 71.0)}
GOOD = {"resnet20": (61.5, 62.0, 63.6), "resnet56": (71.2, 72.4, 72.5)}  # consistently better
NOISY = {"resnet20": (57.0, 64.0, 61.0), "resnet56": (69.0, 74.0, 69.0)}


def rows_for(name, kind, accs, sha, profile="full", phase="public", failed=(), arch_filter=None):
    rows = []
    for arch, values in accs.items():
        for seed, acc in zip(SEEDS, values):
            status = "failed" if (arch, seed) in failed else "ok"
            rows.append(
                leaderboard_row(
                    seed=seed,
                    status=status,
                    acc=acc,
                    submission=name,
                    kind=kind,
                    submission_sha256=sha * 64,
                    profile=profile,
                    phase=phase,
                    arch=arch,
                    epochs=200,
                    run_id=f"{profile}/{name}/{phase}/{arch}-seed{seed}",
                )
            )
    return rows


@pytest.fixture
def full_leaderboard(tmp_path):
    rows = (
        rows_for("equal_weighting.py", "baseline", EW, "e")
        + rows_for("pcgrad.py", "baseline", NOISY, "p")
        + rows_for("good.py", "submission", GOOD, "g")
        + rows_for("broken.py", "submission", GOOD, "b", failed={("resnet56", s) for s in SEEDS} | {("resnet20", 456)})
    )
    return write_leaderboard(tmp_path / "leaderboard.csv", rows, shipped=True)


def paired_p_df2(a, b):
    """Two-sided paired t-test p-value for 3 pairs by its closed form (df = 2: p = 1 - |t|/sqrt(t^2 + 2))."""
    d = [x - y for x, y in zip(a, b)]
    t = statistics.mean(d) / (statistics.stdev(d) / math.sqrt(len(d)))
    return 1 - abs(t) / math.sqrt(t * t + 2)


def by_label(rep):
    return {e.label: e for e in rep.entries}


def test_aggregates_match_hand_computation(full_leaderboard):
    rep = report.build(read_rows(full_leaderboard), "public")
    assert rep.archs == ["resnet20", "resnet56"] and rep.profile == "full"
    e = by_label(rep)
    good = e["good.py"]
    for arch in rep.archs:
        s = good.archs[arch]
        assert s.n == 3 and s.failed == 0
        assert s.mean == pytest.approx(statistics.mean(GOOD[arch]))
        assert s.std == pytest.approx(statistics.stdev(GOOD[arch]))
        assert s.diff == pytest.approx(statistics.mean(GOOD[arch]) - statistics.mean(EW[arch]))
        assert s.p_value == pytest.approx(paired_p_df2(GOOD[arch], EW[arch]), rel=1e-9)
    assert good.score == pytest.approx(math.sqrt(statistics.mean(GOOD["resnet20"]) * statistics.mean(GOOD["resnet56"])))
    # per architecture the test is descriptive (no adjusted p, no claim); the board tests per-seed scores, each
    # seed's geometric mean over the architectures, paired by seed (df = 2), adjusted (tests/test_comparisons.py)
    assert good.archs["resnet20"].p_value < 0.05 and not hasattr(good.archs["resnet20"], "p_adjusted")
    per_seed = {
        n: [math.sqrt(a * b) for a, b in zip(v["resnet20"], v["resnet56"])]
        for n, v in (("good", GOOD), ("ew", EW), ("noisy", NOISY))
    }
    assert good.vs_ref.p_value == pytest.approx(paired_p_df2(per_seed["good"], per_seed["ew"]), rel=1e-9)
    assert good.vs_ref.p_value < good.vs_ref.p_adjusted and good.vs_ref.family == "primary"
    assert not e["pcgrad.py"].vs_ref.significant  # same mean spread, inconsistent sign
    # ranks: good > equal_weighting > pcgrad on score; broken has no resnet56 seed: unranked
    assert [good.rank, e["equal_weighting.py"].rank, e["pcgrad.py"].rank] == [1, 2, 3]
    broken = e["broken.py"]
    assert broken.rank is None and broken.score is None
    assert (broken.archs["resnet20"].n, broken.archs["resnet20"].failed) == (2, 1)
    assert (broken.archs["resnet56"].n, broken.archs["resnet56"].failed, broken.archs["resnet56"].mean) == (0, 3, None)
    assert report.fmt_stats(broken.archs["resnet56"]) == "failed 42/123/456"
    assert report.fmt_stats(broken.archs["resnet20"]).endswith("(n=2; failed 456)")


def test_a_rerun_counts_each_seed_once_and_versions_are_separate(tmp_path):
    rows = rows_for("equal_weighting.py", "baseline", EW, "e") + rows_for("x.py", "submission", GOOD, "1")
    rerun = leaderboard_row(
        seed=42,
        acc=99.0,
        submission="x.py",
        submission_sha256="1" * 64,
        profile="full",
        arch="resnet20",
        finished_at="2026-11-24T10:00:00+00:00",
    )
    edited = rows_for("x.py", "submission", EW, "2")
    path = write_leaderboard(tmp_path / "lb.csv", rows + [rerun] + edited)
    e = by_label(report.build(read_rows(path), "public"))
    assert set(e) == {"equal_weighting.py", "x.py @11111111", "x.py @22222222"}
    s = e["x.py @11111111"].archs["resnet20"]
    assert s.n == 3 and s.seeds[42] == 99.0  # the latest ok run of seed 42 counts, once


def test_score_of_a_zero_accuracy_is_zero_not_missing():
    stats = {"resnet20": aggregate.arch_stats({42: 0.0}, 0), "resnet56": aggregate.arch_stats({42: 30.0}, 0)}
    assert aggregate.score_of(stats) == 0.0
    assert aggregate.score_of({**stats, "resnet20": aggregate.arch_stats({}, 1)}) is None


def test_paired_test_refuses_to_test_with_fewer_than_two_pairs():
    assert aggregate.paired_test({42: 1.0}, {42: 0.0}) == (None, 1)
    assert aggregate.paired_test({42: 1.0, 123: 2.0}, {42: 0.0, 123: 1.0}) == (None, 2)  # no spread
    p, n = aggregate.paired_test({42: 1.0, 123: 2.5}, {42: 0.0, 123: 1.0})
    assert n == 2 and 0 < p < 1


def test_phases_and_reference_rows(tmp_path):
    final = {"resnet20": EW["resnet20"], "resnet56": EW["resnet56"], "vgg16bn": (72.0, 73.0, 74.0)}
    rows = rows_for("equal_weighting.py", "baseline", EW, "e") + rows_for(
        "equal_weighting.py", "baseline", final, "e", phase="final"
    )
    df = read_rows(write_leaderboard(tmp_path / "lb.csv", rows, shipped=True))
    public, fin = report.build(df, "public"), report.build(df, "final")
    assert "vgg16bn" not in public.archs and fin.archs == ["resnet20", "resnet56", "vgg16bn"]
    assert fin.entries[0].score == pytest.approx((61.0 * statistics.mean(EW["resnet56"]) * 73.0) ** (1 / 3))
    # published numbers: shown (full profile), unranked, never among the measured entries
    assert {r.label for r in public.references} >= {"dwa", "pcgrad", "uncertainty"}
    assert all(r.rank is None and r.source for r in public.references)
    assert [e.label for e in public.entries] == ["equal_weighting.py"]
    dwa_card = [r for r in public.references if r.label == "dwa" and r.source.startswith("the task's published table")][
        0
    ]
    assert dwa_card.archs["resnet20"].mean == pytest.approx(67.96) and dwa_card.archs["resnet20"].n == 1
    # other profiles get no reference rows (the numbers are for the full protocol)
    tiny = read_rows(write_leaderboard(tmp_path / "tiny.csv", [leaderboard_row()]))
    assert report.build(tiny, "public").references == []


@pytest.mark.slow
def test_cli_formats_sections_and_markers(full_leaderboard, tmp_path):
    cwd = full_leaderboard.parent
    # a terminal of 80 columns: the compact table, two lines per entry, nothing cut, a short legend
    code, out = harness_in_terminal("leaderboard", "--leaderboard", full_leaderboard, cwd=cwd, columns=80)
    assert code == 0, out
    assert out.index("submissions") < out.index("baselines") < out.index("reported elsewhere")
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80 and "…" not in out
    lines = out.splitlines()
    good = next(i for i, line in enumerate(lines) if " good.py " in line)
    # rank 1 with its accuracies; under it the ranks its significant results allow (1-2: it is significantly
    # above equal weighting, nothing else is significant) and the final epoch's; then the differences from
    # equal weighting: per architecture descriptive, in per-seed score tested (* after the adjustment)
    cell = lambda v: f"{statistics.mean(v):.2f}±{statistics.stdev(v):.2f}"  # noqa: E731
    diff = lambda a, b: f"{statistics.mean(a) - statistics.mean(b):+.2f}"  # noqa: E731
    score = math.sqrt(statistics.mean(GOOD["resnet20"]) * statistics.mean(GOOD["resnet56"]))
    assert lines[good].split() == ["1", "good.py", cell(GOOD["resnet20"]), cell(GOOD["resnet56"]), f"{score:.2f}"], (
        lines[good]
    )  # no cost: every run took 3.2 s, too short for a cost to mean anything
    g = by_label(report.build(read_rows(full_leaderboard), "public"))
    assert g["good.py"].rank_range == (1, 2) and g["equal_weighting.py"].rank == 2
    assert lines[good + 1].split() == ["1-2"] + [
        f"{g['good.py'].archs[a].final_mean:.2f}" for a in ("resnet20", "resnet56")
    ]
    seeds = {n: [math.sqrt(a * b) for a, b in zip(v["resnet20"], v["resnet56"])] for n, v in (("g", GOOD), ("e", EW))}
    test = stats.ttest_rel(seeds["g"], seeds["e"])
    delta = statistics.mean(seeds["g"]) - statistics.mean(seeds["e"])
    assert lines[good + 2].split() == [
        diff(GOOD["resnet20"], EW["resnet20"]),
        diff(GOOD["resnet56"], EW["resnet56"]),
        f"{delta:+.2f}*",
    ], lines[good + 2]
    broken = next(line for line in lines if " broken.py " in line).split()
    assert broken == ["broken.py", "61.75±0.35", "f", "failed", "-"], broken
    assert "61.00±1.00" in out  # equal_weighting on resnet20
    dwa = [line for line in lines if line.split()[:1] == ["dwa"]]
    assert len(dwa) == 2 and {line.split()[1] for line in dwa} == {"[1]", "[2]"}  # one per source
    assert "[1] the task's published table of MLS-Bench" in out and "vgg16bn" not in out
    legend = " ".join(out.split())  # the legend wraps at 80 columns
    assert "* = significant after Holm's weighted adjustment" in legend and "f/m/r = a seed failed" in legend
    assert "cost" not in legend and "a terminal of " in legend  # no cost shown; the width the detail needs
    # a terminal wide enough for the detailed table: every interval and p-value, the long legend
    code, out = harness_in_terminal("leaderboard", "--leaderboard", full_leaderboard, cwd=cwd, columns=400)
    assert "61.00 ± 1.00 (n=3)" in out and "failed 42/123/456" in out and "incomplete" in out
    # the primary family: good.py and pcgrad.py against equal weighting (0.4 of alpha each), one pair (0.2);
    # good.py's p is the smallest relative to its weight, so its adjusted p is p / 0.4
    low, high = test.confidence_interval(0.95)
    tested = f"{delta:+.2f} [{low:+.2f}, {high:+.2f}] (p={test.pvalue:.3f}, adj {test.pvalue / 0.4:.3f}) *"
    assert "+1.37 [+0.57, +2.17]" in out and tested in out and "paired t-test" in out

    r = harness("leaderboard", "--leaderboard", full_leaderboard, "--format", "markdown", cwd=cwd)
    assert "| +1.37 [+0.57, +2.17] |" in r.stdout, r.stdout  # per architecture: descriptive, no p-value
    assert f"| {tested} |" in r.stdout, r.stdout
    assert "| 1 (1-2) | good.py |" in r.stdout
    r = harness("leaderboard", "--leaderboard", full_leaderboard, "--format", "markdown", "--phase", "final", cwd=cwd)
    # no measured final-phase row: only the published section, without the columns no published row fills
    assert r.returncode == 0 and "| rank | entry | resnet20 | resnet56 | vgg16bn | score | source |" in r.stdout

    r = harness("leaderboard", "--leaderboard", full_leaderboard, "--format", "csv", cwd=cwd)
    table = pd.read_csv(io.StringIO(r.stdout))
    good = table[table["entry"] == "good.py"].iloc[0]
    assert good["rank"] == 1 and good["resnet20_n"] == 3 and good["section"] == "submission"
    assert set(table["section"]) == {"submission", "baseline", "reference"}
    assert table.loc[table["section"] == "reference", "rank"].isna().all()

    r = harness("leaderboard", "--leaderboard", tmp_path / "missing.csv", cwd=cwd)
    assert r.returncode == 2 and "does not exist" in r.stderr


@pytest.mark.slow
def test_migrate_converts_a_copy_and_append_names_the_command(tmp_path):
    v1_columns = [
        c
        for c in LEADERBOARD_COLUMNS
        if c
        not in (
            "origin",
            "source",
            "topology",
            "attempt",
            "compile",
            "deterministic",
            "submission_path",
            "float32_math",
            "protocol_version",
        )
    ]
    v1_header = ",".join(v1_columns) + "\n"
    v1_row = (
        "1,2026-11-01T10:00:00+00:00,loss.py," + "ab" * 32 + ",submission,tiny,public,resnet20,42,1,12.5,0,"
        "12.5,30,3.2,cpu,fp32,true,2.13.0,0.1.0,abc,none,tiny/x/public/resnet20-seed42,ok\n"
    )
    old = tmp_path / "leaderboard-tiny.csv"
    old.write_text(v1_header + v1_row + v1_row.replace("2026-11-01T10", "2026-11-02T10"))  # two attempts
    before = old.read_bytes()
    with pytest.raises(LeaderboardError, match="harness migrate"):
        append_row(old, leaderboard_row())
    r = harness("migrate", old, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert old.read_bytes() == before
    new = tmp_path / "leaderboard-tiny.v6.csv"
    df = read_rows(new)
    assert len(df) == 2 and df["best_fine_acc"].iloc[0] == 12.5 and set(df["schema_version"]) == {6}
    assert set(df["float32_math"]) == {"ieee"}  # older harness versions computed float32 in IEEE
    assert set(df["submission_path"]) == {""}  # unknown for rows written before it was recorded
    assert str(df["compile"].iloc[0]).lower() == "false" and str(df["deterministic"].iloc[0]).lower() == "false"
    assert df["attempt"].tolist() == [1, 2] and set(df["origin"]) == {"measured"} and set(df["topology"]) == {"shared"}
    # the migrated file is a normal current-version leaderboard: the next attempt of that run is the third
    written = append_row(new, leaderboard_row(submission_sha256="ab" * 32, precision="fp32"))
    assert written.attempt == 3 and read_rows(new)["attempt"].tolist() == [1, 2, 3]
    r = harness("migrate", old, cwd=tmp_path)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = harness("migrate", new, "--output", tmp_path / "x.csv", cwd=tmp_path)
    assert r.returncode == 1 and "nothing to migrate" in r.stderr


def _write_runs(runs_dir, rows, epochs=4):
    """metrics.jsonl for every ok row, as the trainer writes it (accuracy rising to the row's best)."""
    for row in rows:
        if row.status != "ok":
            continue
        run = runs_dir / row.run_id
        run.mkdir(parents=True, exist_ok=True)
        with open(run / "metrics.jsonl", "w") as f:
            for i in range(epochs):
                m = EpochMetrics(
                    epoch=i,
                    lr=0.1,
                    train_fine_loss=4.0 - i,
                    train_coarse_loss=3.0 - i / 2,
                    train_combined_loss=7.0 - i,
                    weight_fine=1.0 + 0.1 * i,
                    weight_coarse=1.0 - 0.1 * i,
                    test_fine_loss=4.0,
                    test_coarse_loss=3.0,
                    test_fine_acc=row.best_fine_acc * (i + 1) / epochs,
                    test_coarse_acc=50.0,
                    seconds=1.0,
                )
                f.write(m.model_dump_json() + "\n")


CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  document.body.setAttribute('data-check', JSON.stringify({
    images: imgs.length,
    decoded: imgs.filter(i => i.complete && i.naturalWidth > 100 && i.naturalHeight > 100).length,
    tables: document.querySelectorAll('table').length,
    rows: document.querySelectorAll('table tr').length,
    text: document.body.innerText.length}));
});
</script></body>"""


@pytest.mark.browser
@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("HARNESS_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed, and HARNESS_REQUIRE_BROWSER is set (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    rows = (
        rows_for("equal_weighting.py", "baseline", EW, "e")
        + rows_for("pcgrad.py", "baseline", NOISY, "p")
        + rows_for("good.py", "submission", GOOD, "g")
        + rows_for("broken.py", "submission", GOOD, "b", failed={("resnet56", s) for s in SEEDS})
    )
    path = write_leaderboard(tmp_path / "leaderboard.csv", rows, shipped=True)
    _write_runs(tmp_path / "runs", rows)
    (tmp_path / "runs" / "full/broken.py/public/resnet56-seed42").mkdir(parents=True)
    (tmp_path / "runs" / "full/broken.py/public/resnet56-seed42" / "failure.txt").write_text(
        "broken.py failed on resnet56, seed 42:\nthe loss is nan at epoch 3 <b>not markup</b>"
    )
    r = harness("leaderboard", "--format", "html", "--output", "out/report.html", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "out" / "report.html").read_text()
    # the trade-off figure, then per submission its learning curves and its loss weights
    assert page.count("data:image/png;base64,") == 5 and 'src="http' not in page  # self-contained
    assert path.exists()
    # the failure reasons, escaped; a seed with no failure.txt says where it was looked for
    assert "the loss is nan at epoch 3 &lt;b&gt;not markup&lt;/b&gt;" in page
    assert "no failure.txt at " in page and "resnet56-seed123" in page
    assert "| final resnet20 |" not in page and "<th>final resnet20</th>" in page
    with warnings.catch_warnings():  # matplotlib warns of an empty legend ("No artists with labels")
        warnings.simplefilter("error")
        rep = report.build(read_rows(path), "public")
        report.render(rep, "html", tmp_path / "runs")
        report.render(rep, "html", tmp_path / "nowhere")  # no metrics at all: panels say so, no empty legend
    x, _, _ = figures._curve(tmp_path / "runs", by_label(rep)["good.py"].archs["resnet20"], "test_fine_acc")
    assert x == [1, 2, 3, 4]  # epochs counted from 1

    probe = tmp_path / "out" / "probe.html"
    probe.write_text(page.replace("</body>", CHECK_SCRIPT))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]
    dom = subprocess.run(
        [browser, *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"data-check=\"([^\"]+)\"", dom.stdout)
    assert found, dom.stdout[-2000:] + dom.stderr[-2000:]
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check["images"] == 5 and check["decoded"] == 5  # every figure decoded by the browser
    # submissions, baselines, reported elsewhere, failed runs
    assert check["tables"] == 4 and check["rows"] >= 1 + 3 + 1 + 1

    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            *flags,
            "--window-size=1200,4000",
            f"--screenshot={shot}",
            (tmp_path / "out" / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    non_white = (pixels < 0.95).any(axis=-1).mean()
    coloured = ((pixels.max(axis=-1) - pixels.min(axis=-1)) > 0.25).mean()  # curves and shaded tables
    assert non_white > 0.02 and coloured > 0.001, (non_white, coloured)


@pytest.mark.slow
def test_leaderboard_profile_reads_that_profiles_file(tmp_path):
    """``--profile P`` without ``--leaderboard`` reads the file ``evaluate --profile P`` writes, even
    with several here (without it, the error says how to choose)."""
    append_row(tmp_path / "leaderboard-smoke.csv", leaderboard_row(profile="smoke", submission="smoky.py"))
    append_row(tmp_path / "leaderboard-tiny.csv", leaderboard_row(profile="tiny", submission="tiny.py"))
    r = harness("leaderboard", cwd=tmp_path)  # both here: the one written last, and a line saying so
    assert r.returncode == 0 and "reading leaderboard-tiny.csv (written last)" in r.stderr
    r = harness("leaderboard", "--profile", "smoke", cwd=tmp_path)
    assert r.returncode == 0 and "smoky.py" in r.stdout and "tiny.py" not in r.stdout
    r = harness("leaderboard", "--profile", "full", cwd=tmp_path)
    assert r.returncode == 2 and "no leaderboard.csv here: `harness evaluate FILE --profile full` writes it" in r.stderr
