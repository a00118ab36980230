"""The static-weight sweep, the tuned static weight (leave one seed out) that every entry is tested
against and its descriptive "best static weight" line, the cost column, and the final-epoch and
coarse accuracies, each checked against a computation made directly on the leaderboard rows with
pandas and scipy (not through harness.results.aggregate or harness.results.family), and the files' weights against
autograd."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest
from helpers import BASELINES, call, harness, harness_in_terminal, leaderboard_row, load
from scipy import stats

from harness import report
from harness.results import append_row, read_rows
from harness.results.family import MARGIN
from harness.results.static_sweep import CONTROL_LABEL, SWEEP, TUNED_LABEL

SEEDS = (42, 123, 456)
ARCHS = ("resnet20", "resnet56")
# name -> per arch the three seeds' best fine accuracies; coarse = fine + 10 + w; final = fine - 0.5
SWEEP_ROWS = {
    "fine_only.py": {"resnet20": (60.0, 60.4, 60.2), "resnet56": (68.0, 68.2, 68.4)},
    "static_coarse_0p3.py": {"resnet20": (61.0, 61.8, 61.1), "resnet56": (69.1, 69.0, 69.5)},
    "equal_weighting.py": {"resnet20": (61.2, 61.0, 61.9), "resnet56": (69.9, 69.6, 70.1)},
    "static_coarse_2.py": {"resnet20": (62.5, 61.0, 61.5), "resnet56": (70.3, 70.4, 70.9)},
}
FAILED = {("static_coarse_2.py", "resnet56", 123)}  # the best resnet56 mean, but not complete there
WALL = {
    "fine_only.py": 100.0,
    "static_coarse_0p3.py": 100.0,
    "equal_weighting.py": 100.0,
    "static_coarse_2.py": 100.0,
    "slow.py": 250.0,
}


def _rows():
    entries = dict(SWEEP_ROWS, **{"slow.py": {"resnet20": (62.0, 62.2, 62.1), "resnet56": (70.0, 70.1, 70.2)}})
    rows = []
    for name, accs in entries.items():
        w = SWEEP.get(name, 1.0)
        for arch, values in accs.items():
            for seed, acc in zip(SEEDS, values):
                failed = (name, arch, seed) in FAILED
                # one run of slow.py is on another device: the cost ratio must leave it out
                device = "cuda:0" if (name, arch, seed) == ("slow.py", "resnet56", 456) else "cpu"
                rows.append(
                    leaderboard_row(
                        seed=seed,
                        acc=acc,
                        status="failed" if failed else "ok",
                        submission=name,
                        kind="submission" if name == "slow.py" else "baseline",
                        submission_sha256=name[:4].ljust(64, "0"),
                        profile="full",
                        arch=arch,
                        epochs=200,
                        final_fine_acc=None if failed else acc - 0.5,
                        best_coarse_acc=None if failed else acc + 10 + w,
                        device=device,
                        wall_seconds=WALL[name] * (2 if arch == "resnet56" else 1) * (7 if device != "cpu" else 1),
                        run_id=f"full/{name}/public/{arch}-seed{seed}",
                    )
                )
    return rows


@pytest.fixture(scope="module")
def lb(tmp_path_factory):
    path = tmp_path_factory.mktemp("controls") / "leaderboard.csv"
    for row in _rows():
        append_row(path, row)
    return path


def test_every_sweep_file_has_its_weight():
    """Each file's dL/dL_coarse (autograd) is the weight the report gives it, and each
    ``static_coarse_*`` file is in the sweep."""
    files = {p.name for p in BASELINES.glob("static_coarse_*.py")}
    assert files and files <= set(SWEEP) and set(SWEEP) <= {p.name for p in BASELINES.glob("*.py")}
    for name, w in SWEEP.items():
        _, d_fine, d_coarse = call(load(name.removesuffix(".py")), 4.0, 2.0)
        assert (d_fine, d_coarse) == (1.0, pytest.approx(w)), name


def _control(rep, label=CONTROL_LABEL):
    [line] = [c for c in rep.controls if c.label == label]
    return line


def test_best_static_weight_line_matches_pandas(lb):
    df = pd.read_csv(lb)
    rep = report.build(read_rows(lb), "public")
    control = _control(rep)
    assert control.label == CONTROL_LABEL and control.rank is None and control.kind == "control"
    assert control in rep.section("baseline") and control not in rep.entries  # shown, never ranked
    ok = df[(df["status"] == "ok") & df["submission"].isin(SWEEP)]
    complete = ok.groupby(["submission", "arch"]).filter(lambda g: len(g) == len(SEEDS))
    means = complete.groupby(["arch", "submission"])["best_fine_acc"].mean()
    for arch in ARCHS:
        best = means[arch].idxmax()
        assert control.picked[arch] == f"w={SWEEP[best]:g}"
        assert control.archs[arch].mean == pytest.approx(means[arch][best], rel=1e-12)
        assert control.archs[arch].p_value is None and control.archs[arch].ci is None  # chosen on test
    assert control.picked == {"resnet20": "w=2", "resnet56": "w=1"}  # static_coarse_2 failed a resnet56 seed
    assert control.score == pytest.approx(
        math.sqrt(means["resnet20"]["static_coarse_2.py"] * means["resnet56"]["equal_weighting.py"])
    )


def test_cost_final_and_coarse_match_pandas(lb):
    df = pd.read_csv(lb)
    e = {x.label: x for x in report.build(read_rows(lb), "public").entries}
    slow, ew = df[df["submission"] == "slow.py"], df[df["submission"] == "equal_weighting.py"]
    pairs = slow.merge(ew, on=["arch", "seed", "device"], suffixes=("", "_ew"))  # same device only
    assert len(pairs) == 5
    assert e["slow.py"].cost == pytest.approx(pairs["wall_seconds"].sum() / pairs["wall_seconds_ew"].sum())
    assert e["slow.py"].cost == pytest.approx(2.5)
    assert e["equal_weighting.py"].cost == 1.0
    ok = df[df["status"] == "ok"]
    for (name, arch), g in ok.groupby(["submission", "arch"]):
        s = e[name].archs[arch]
        assert s.final_mean == pytest.approx(g["final_fine_acc"].mean(), rel=1e-12)
        assert s.coarse_mean == pytest.approx(g["best_coarse_acc"].mean(), rel=1e-12)


@pytest.mark.slow
def test_the_formats_show_them(lb):
    r = harness("leaderboard", "--leaderboard", lb, "--format", "csv", cwd=lb.parent)
    table = pd.read_csv(io.StringIO(r.stdout))
    assert table.loc[table["section"] == "control", "entry"].tolist() == [TUNED_LABEL, CONTROL_LABEL]
    control = table[table["entry"] == CONTROL_LABEL].iloc[0]
    assert control["entry"] == CONTROL_LABEL and control["resnet20_picked"] == "w=2" and pd.isna(control["rank"])
    slow = table[table["entry"] == "slow.py"].iloc[0]
    assert (
        slow["cost"] == 2.5 and slow["cost_on"] == "cpu, none" and slow["resnet20_final_mean"] == round(62.1 - 0.5, 2)
    )
    r = harness("leaderboard", "--leaderboard", lb, "--format", "markdown", cwd=lb.parent)
    assert (
        "| cost |" in r.stdout and "| 2.50x (cpu, none) |" in r.stdout and "(n=3; w=2)" in r.stdout
    )  # and what it compared
    code, out = harness_in_terminal("leaderboard", "--leaderboard", lb, cwd=lb.parent, columns=80)
    assert code == 0 and max(len(line.rstrip()) for line in out.splitlines()) <= 80
    lines = out.splitlines()
    slow_line = next(line for line in lines if " slow.py " in line)
    assert slow_line.split()[-1] == "2.50x"
    i = next(i for i, line in enumerate(lines) if "best static weight" in line)
    assert "w=2" in lines[i + 2] and "w=1" in lines[i + 2]  # under the accuracy: its final epoch, then the weight
    assert f"{62.1 - 0.5:.2f}" in out  # the final-epoch accuracy is in the 80-column view too


def _append(path, name, arch, seed, acc, *, sha="s", kind="baseline", status="ok"):
    append_row(
        path,
        leaderboard_row(
            seed=seed,
            acc=acc,
            status=status,
            submission=name,
            kind=kind,
            submission_sha256=sha * 64,
            profile="full",
            arch=arch,
            epochs=200,
            run_id=f"full/{name}-{sha}/public/{arch}-seed{seed}",
        ),
    )


def test_the_control_line_has_no_interval_and_says_when_no_weight_qualifies(tmp_path):
    """Chosen on test: its difference is shown without an interval or a test; an architecture on
    which no weight has every seed ok shows nothing of any entry's numbers."""
    path = tmp_path / "lb.csv"
    for name, base in (("equal_weighting.py", 60.0), ("static_coarse_0p5.py", 61.0)):
        for seed, noise in zip(SEEDS, (0.0, 0.7, 0.2)):
            _append(path, name, "resnet20", seed, base + noise * (name != "equal_weighting.py"))
            _append(path, name, "resnet56", seed, base + 8, status="failed" if seed == 42 else "ok")
    control = _control(report.build(read_rows(path), "public"))
    s = control.archs["resnet20"]
    assert control.picked["resnet20"] == "w=0.5" and s.diff == pytest.approx(1.3)
    assert s.ci is None and s.p_value is None and s.n_pairs == 0
    empty = control.archs["resnet56"]
    assert (empty.mean, empty.n, empty.failed, empty.final, empty.coarse, empty.wall) == (None, 0, 0, {}, {}, {})
    assert control.picked["resnet56"] == "no weight with every seed ok" and control.score is None
    md = harness("leaderboard", "--leaderboard", path, "--format", "markdown", cwd=tmp_path).stdout
    line = next(x for x in md.splitlines() if CONTROL_LABEL in x)
    assert "+1.30 (chosen on test)" in line and "[" not in line.split(CONTROL_LABEL)[1]
    assert "| no weight with every seed ok |" in line


def test_the_version_the_board_ranks_is_the_sweeps_candidate(tmp_path):
    """An edited sweep file has two versions in the file: the one the board ranks (the newest, or the
    one ``--version`` selects) is the sweep's weight; the other is listed, never a candidate."""
    path = tmp_path / "lb.csv"
    for seed in SEEDS:
        for name, acc, sha, day in (
            ("equal_weighting.py", 60.0, "s", 21),
            ("static_coarse_2.py", 63.0, "a", 21),
            ("static_coarse_2.py", 62.0, "b", 22),
        ):
            append_row(
                path,
                leaderboard_row(
                    seed=seed,
                    acc=acc + seed / 1000,
                    submission=name,
                    kind="baseline",
                    submission_sha256=sha * 64,
                    profile="full",
                    arch="resnet20",
                    epochs=200,
                    finished_at=f"2026-11-{day}T10:00:00+00:00",
                    run_id=f"full/{name}-{sha}/public/resnet20-seed{seed}",
                ),
            )
    rep = report.build(read_rows(path), "public")
    assert {e.label for e in rep.entries} >= {"static_coarse_2.py @aaaaaaaa", "static_coarse_2.py @bbbbbbbb"}
    assert _control(rep).picked["resnet20"] == "w=2 @bbbbbbbb"  # the newest, though the older one scored higher
    assert _control(rep).archs["resnet20"].mean == pytest.approx(62.0 + sum(SEEDS) / 3000)
    old = next(e for e in rep.entries if e.label == "static_coarse_2.py @aaaaaaaa")
    assert old.rank is None and not old.current and "superseded" in old.version
    chosen = report.build(read_rows(path), "public", versions=["static_coarse_2@aaaa"])
    assert _control(chosen).picked["resnet20"] == "w=2 @aaaaaaaa"


def _per_seed(df, name):
    """seed -> the geometric mean over the architectures of the seed's ok accuracies (scipy)."""
    ok = df[(df["submission"] == name) & (df["status"] == "ok")].pivot(
        index="seed", columns="arch", values="best_fine_acc"
    )
    return {int(s): stats.gmean(row.values) for s, row in ok.dropna().iterrows()}


def test_the_tuned_static_weight_is_chosen_on_the_other_seeds_and_tested(lb):
    """The comparator rebuilt from the rows: for each seed, among the sweep weights complete on every
    architecture, the one with the best mean per-seed score on the other two seeds; every complete
    entry that is not a static weight is tested against it by seed (scipy's paired t-test and the two
    one-sided tests of equivalence), and labelled by the adjusted p-values."""
    df = pd.read_csv(lb)
    rep = report.build(read_rows(lb), "public")
    complete = [
        n
        for n in SWEEP_ROWS
        if len(_per_seed(df, n)) == len(SEEDS) and (n, "resnet56", 123) not in {(a, b, c) for a, b, c in FAILED}
    ]
    assert complete == ["fine_only.py", "static_coarse_0p3.py", "equal_weighting.py"]  # static_coarse_2 failed
    scores = {n: _per_seed(df, n) for n in complete}
    comparator, chosen = {}, {}
    for s in SEEDS:
        others = [t for t in SEEDS if t != s]
        best = max(complete, key=lambda n: sum(scores[n][t] for t in others) / 2)
        comparator[s], chosen[s] = scores[best][s], best
    tuned = _control(rep, TUNED_LABEL)
    assert tuned.picked["resnet20"] == "w: " + "/".join(f"{SWEEP[chosen[s]]:g}" for s in SEEDS)
    for arch in ARCHS:  # its accuracies: those of the weight chosen for each seed
        want = [
            df[(df["submission"] == chosen[s]) & (df["arch"] == arch) & (df["seed"] == s)]["best_fine_acc"].item()
            for s in SEEDS
        ]
        assert tuned.archs[arch].mean == pytest.approx(sum(want) / 3, rel=1e-12)
    slow = {e.label: e for e in rep.entries}["slow.py"]
    d = [_per_seed(df, "slow.py")[s] - comparator[s] for s in SEEDS]
    t = slow.vs_tuned
    assert t.diff == pytest.approx(sum(d) / 3, rel=1e-12) and t.n_pairs == 3
    assert t.p_value == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, rel=1e-9)
    lower = stats.ttest_1samp([x + MARGIN for x in d], 0.0, alternative="greater").pvalue  # H0: diff <= -margin
    upper = stats.ttest_1samp([x - MARGIN for x in d], 0.0, alternative="less").pvalue  # H0: diff >= +margin
    assert t.p_equivalent == pytest.approx(max(lower, upper), rel=1e-9)
    want = (
        ("better" if t.diff > 0 else "worse")
        if t.p_adjusted < 0.05
        else ("equivalent" if t.p_equivalent_adjusted < 0.05 else "inconclusive")
    )
    assert slow.tuned_label == want
    # the static weights are the comparator: they get no label against it
    assert all(not e.tuned_label for e in rep.entries if e.submission in SWEEP)


@pytest.mark.slow
def test_names_that_look_like_markup_or_formulas(tmp_path):
    """Names come from files: HTML, Rich markup and matplotlib's ``$...$`` must all take them as text."""
    path = tmp_path / "lb.csv"
    for seed in SEEDS:
        for name, acc in (("equal_weighting.py", 60.0), ("a$\\bad{$b.py", 61.0), ("[red]x[/red].py", 59.0)):
            _append(path, name, "resnet20", seed, acc + seed / 1000, sha=name[0], kind="submission")
        _append(path, "<i>x</i>.py", "<i>arch</i>", seed, 50.0, sha="i", kind="submission", status="failed")
    r = harness("leaderboard", "--leaderboard", path, "--format", "html", "--output", tmp_path / "r.html", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "r.html").read_text()
    assert "<i>" not in page and "&lt;i&gt;arch&lt;/i&gt;" in page and "a$\\bad{$b.py" in page
    code, out = harness_in_terminal("leaderboard", "--leaderboard", path, cwd=tmp_path, columns=80)
    assert code == 0 and "[red]x[/red].py" in out
