"""The ``harness`` command as a user runs it (a subprocess of the installed entry point)."""

import argparse
import json
import re
import shutil
import subprocess

import pandas as pd
import pytest
from helpers import REPO, SUBMISSIONS, harness, harness_env

from harness.cli.commands import build_parser

EXAMPLE = REPO / "submissions" / "example_loss.py"


@pytest.mark.slow
def test_check_accepts_task_card_files_and_reports_capabilities(tmp_path):
    r = harness("check", SUBMISSIONS / "dwa_state.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "dwa_state.py: ok" in r.stdout
    r = harness("check", SUBMISSIONS / "gramian_mgda.py", cwd=tmp_path)
    assert r.returncode == 0 and "extra inputs: gramian" in r.stdout


@pytest.mark.parametrize(
    "name, message",
    [
        ("vector_return.py", "forward must return a 0-d tensor (a scalar), got shape (2,)"),
        ("no_class.py", "defines no top-level `class MultiTaskLoss"),
        ("prints_garbage.py", "prints_garbage.py:3: import of 'sys' is not allowed: print() needs no sys"),
    ],
)
@pytest.mark.slow
def test_check_rejects_with_exit_2(name, message, tmp_path):
    r = harness("check", SUBMISSIONS / name, cwd=tmp_path)
    assert r.returncode == 2
    assert message in " ".join(r.stderr.split())


@pytest.mark.slow
def test_check_several_files_reports_each_and_exits_2_if_any_is_rejected(tmp_path):
    r = harness("check", SUBMISSIONS / "no_class.py", EXAMPLE, cwd=tmp_path)
    assert r.returncode == 2
    assert "example_loss.py: ok" in r.stdout  # checked although the first file was rejected
    err = " ".join(r.stderr.split())
    assert "defines no top-level `class MultiTaskLoss" in err and "1 of 2 file(s) rejected" in err


@pytest.mark.slow
def test_evaluate_tiny_appends_ok_rows_and_writes_run_dirs(tmp_path):
    """Also: the default evaluation (no --sandbox) uses a real sandbox when there is one, Docker first."""
    from harness.isolation.sandbox import AUTO_ORDER, get_sandbox

    available = [name for name in AUTO_ORDER if get_sandbox(name).available()]
    r = harness("evaluate", EXAMPLE, "--profile", "tiny", "--seed", "1", "--seed", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    df = pd.read_csv(tmp_path / "leaderboard-tiny.csv")
    if available:  # with neither, the fallback is test_auto_sandbox_falls_back_loudly_for_the_demo_profiles
        assert f"in sandbox '{available[0]}'" in r.stdout
        assert df["sandbox"].tolist() == [available[0]] * 2
    assert df["status"].tolist() == ["ok", "ok"] and df["seed"].tolist() == [1, 2]
    assert set(df["arch"]) == {"resnet20"} and (df["kind"] == "submission").all()
    assert df["submission_sha256"].str.len().eq(64).all()
    run_dir = tmp_path / "runs" / df["run_id"][0]
    settings = json.loads((run_dir / "settings.json").read_text())
    assert settings["profile"]["name"] == "tiny" and settings["seed"] == 1
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and {"weight_fine", "weight_coarse", "test_fine_acc"} <= metrics[0].keys()
    assert "log_vars" in json.loads((run_dir / "loss_state.json").read_text())
    assert "epoch 1/1" in r.stdout and "appended 2 row(s)" in r.stdout
    assert "standing in leaderboard-tiny.csv" in r.stdout and "no baselines in leaderboard-tiny.csv" in r.stdout

    # re-running resumes: every run has an ok row for this file version, so nothing trains
    stamp = (run_dir / "metrics.jsonl").stat().st_mtime_ns
    r = harness("evaluate", EXAMPLE, "--profile", "tiny", "--seed", "1", "--seed", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert (
        "skipping example_loss.py resnet20 seed 1: already in leaderboard-tiny.csv" in out and "nothing to run" in out
    )
    assert len(pd.read_csv(tmp_path / "leaderboard-tiny.csv")) == 2
    assert (run_dir / "metrics.jsonl").stat().st_mtime_ns == stamp
    r = harness("evaluate", EXAMPLE, "--profile", "tiny", "--seed", "1", "--force", cwd=tmp_path)
    assert r.returncode == 0 and "appended 1 row(s)" in r.stdout
    assert pd.read_csv(tmp_path / "leaderboard-tiny.csv")["seed"].tolist() == [1, 2, 1]


@pytest.mark.slow
def test_evaluate_several_files_schedules_them_together_and_reports_a_rejected_one(tmp_path):
    example = EXAMPLE
    r = harness(
        "evaluate",
        example,
        SUBMISSIONS / "dwa_state.py",
        SUBMISSIONS / "no_class.py",
        example,
        "--profile",
        "tiny",
        "--jobs",
        "2",
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stdout + r.stderr  # a file was rejected; the others were evaluated
    out = " ".join(r.stdout.split())
    assert "defines no top-level `class MultiTaskLoss" in out and f"not ok: {SUBMISSIONS / 'no_class.py'}" in out
    assert f"{example}: listed twice; evaluated once" in out
    assert "runs: resnet20 x seeds 42 x 2 files" in out and "progress: 2/2 runs ended" in out
    df = pd.read_csv(tmp_path / "leaderboard-tiny.csv")
    assert sorted(df["submission"]) == ["dwa_state.py", "example_loss.py"] and (df["status"] == "ok").all()
    assert "│ example_loss.py │ resnet20 │" in r.stdout and "│ dwa_state.py    │ resnet20 │" in r.stdout


@pytest.mark.slow
def test_evaluate_reports_a_failed_run_and_finishes_the_others(tmp_path):
    r = harness(
        "evaluate", SUBMISSIONS / "raises_later.py", "--profile", "tiny", "--seed", "1", "--seed", "2", cwd=tmp_path
    )
    assert r.returncode == 1
    df = pd.read_csv(tmp_path / "leaderboard-tiny.csv")
    assert df.set_index("seed")["status"].to_dict() == {1: "failed", 2: "ok"}
    out = " ".join((r.stdout + r.stderr).split())
    assert "run failed: raises_later.py resnet20 seed 1: epoch 0, step 2" in out and "deliberate failure" in out
    # the traceback names the file as the user gave it; failure.txt, the copy that ran (it may differ later)
    assert f'File "{SUBMISSIONS / "raises_later.py"}", line 15, in forward' in out and "/sandbox/" not in out
    [failure] = (tmp_path / "runs").rglob("failure.txt")
    copy = (failure.parent.parent.parent / "submission.py").relative_to(tmp_path)  # runs/ is relative here
    assert f'File "{copy}", line 15' in failure.read_text()
    # the one epoch of the tiny profile is epoch 1 in the results table, as in the progress lines
    assert re.search(r"resnet20 │ +2 │ ok +│ +[\d.]+ │ +1 │", r.stdout), r.stdout
    assert "epoch 1/1" in r.stdout
    # re-running retries the failed run only
    r = harness(
        "evaluate", SUBMISSIONS / "raises_later.py", "--profile", "tiny", "--seed", "1", "--seed", "2", cwd=tmp_path
    )
    assert r.returncode == 1 and "skipping raises_later.py resnet20 seed 2" in r.stdout
    df = pd.read_csv(tmp_path / "leaderboard-tiny.csv")
    assert df["seed"].tolist() == [1, 2, 1] and df["status"].tolist() == ["failed", "ok", "failed"]


@pytest.mark.slow
def test_evaluate_rejects_before_training(tmp_path):
    r = harness("evaluate", SUBMISSIONS / "float_return.py", "--profile", "tiny", cwd=tmp_path)
    assert r.returncode == 2 and "got builtins.float" in r.stderr
    # named as the user typed it, not as the copy under runs/ that was checked
    assert f"rejected: {SUBMISSIONS / 'float_return.py'}: interface check failed" in " ".join(r.stderr.split())
    assert "runs/" not in r.stderr
    assert not (tmp_path / "leaderboard-tiny.csv").exists()


@pytest.mark.slow
def test_missing_dataset_error_names_the_fix(tmp_path):
    r = harness("evaluate", EXAMPLE, "--data-dir", tmp_path / "nowhere", cwd=tmp_path)
    assert r.returncode == 1
    assert "harness data download" in r.stderr and "nowhere" in r.stderr


@pytest.mark.slow
def test_the_quick_profile_is_the_full_protocol_shortened_and_kept_apart(tmp_path):
    """``--profile quick``: CIFAR-100 and every setting of the full protocol but the epoch count,
    its rows in their own file (so nothing mixes them with 200-epoch results)."""
    from harness.protocol import PROFILES
    from harness.results import default_path

    full, quick = PROFILES["full"].model_dump(), PROFILES["quick"].model_dump()
    assert {k for k in full if full[k] != quick[k]} == {"name", "description", "epochs"} and quick["epochs"] == 30
    assert default_path("quick").name == "leaderboard-quick.csv"
    r = harness("evaluate", EXAMPLE, "--profile", "quick", "--data-dir", tmp_path / "nowhere", cwd=tmp_path)
    assert r.returncode == 1 and "harness data download" in r.stderr  # real data, as the full protocol
    assert not list(tmp_path.glob("leaderboard*.csv"))


def test_data_synthetic_writes_cifar_format(tmp_path):
    r = harness("data", "synthetic", tmp_path / "syn", "--train-size", "200", "--test-size", "100", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert {p.name for p in (tmp_path / "syn" / "cifar-100-python").iterdir()} == {"train", "test", "meta"}


@pytest.mark.slow
def test_readme_smoke_evaluation(readme_smoke_run):
    """The README's first command: both public architectures, at least 10% fine accuracy."""
    r, cwd, _ = readme_smoke_run
    assert r.returncode == 0, r.stdout + r.stderr
    df = pd.read_csv(cwd / "leaderboard-smoke.csv")
    assert df["arch"].tolist() == ["resnet20", "resnet56"] and (df["status"] == "ok").all()
    assert (df["best_fine_acc"] >= 10).all(), df[["arch", "best_fine_acc"]]


def _without_sandboxes(tmp_path):
    env = harness_env()
    env["PATH"] = str(tmp_path / "empty-bin")  # no bwrap on PATH
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"  # no Docker engine
    return env


def test_auto_sandbox_refuses_the_full_profile_without_a_sandbox(tmp_path):
    exe = shutil.which("harness")
    r = subprocess.run(
        [exe, "evaluate", str(EXAMPLE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_without_sandboxes(tmp_path),
        timeout=300,
    )
    assert r.returncode == 2
    assert "no sandbox is available" in r.stderr and "bubblewrap" in r.stderr and "--sandbox none" in r.stderr


@pytest.mark.slow
def test_auto_sandbox_falls_back_loudly_for_the_demo_profiles(tmp_path):
    exe = shutil.which("harness")
    r = subprocess.run(
        [exe, "evaluate", str(EXAMPLE), "--profile", "tiny"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_without_sandboxes(tmp_path),
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "NO SANDBOX AVAILABLE" in r.stdout
    assert pd.read_csv(tmp_path / "leaderboard-tiny.csv")["sandbox"].tolist() == ["none"]


@pytest.mark.slow
def test_protocol_options_are_recorded_and_keep_runs_apart(tmp_path):
    """--precision bf16 and --deterministic run (on the CPU here), --deterministic also with --jobs 2 (two
    processes); they are recorded in the rows, and a run with other settings is not taken for already
    done. (One bf16 run: without native bf16, a CPU emulates it at three times the cost.)"""
    r = harness("evaluate", EXAMPLE, "--profile", "tiny", "--precision", "bf16", "--deterministic", "--seed", "1",
                cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "appended 1 row(s)" in r.stdout
    r = harness("evaluate", EXAMPLE, "--profile", "tiny", "--deterministic", "--jobs", "2", "--seed", "1", "--seed",
                "2", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "running up to 2 runs at once" in r.stdout and "appended 2 row(s)" in r.stdout  # seed 1 again: fp32
    df = pd.read_csv(tmp_path / "leaderboard-tiny.csv")
    assert df["seed"].tolist()[0] == 1 and sorted(df["seed"][1:]) == [1, 2] and (df["status"] == "ok").all()
    assert df["precision"].tolist() == ["bf16", "fp32", "fp32"]
    assert (df["deterministic"] == True).all() and (df["compile"] == False).all()  # noqa: E712
    for run_id in df["run_id"]:
        assert (tmp_path / "runs" / run_id / "metrics.jsonl").exists()
    assert len(set(df["run_id"])) == 3
    r = harness("leaderboard", cwd=tmp_path)
    assert "example_loss.py [bf16+deterministic]" in r.stdout and "example_loss.py [fp32+deterministic]" in r.stdout
    r = harness("evaluate", EXAMPLE, "--profile", "tiny", "--jobs", "0", cwd=tmp_path)
    assert r.returncode == 2 and "--jobs must be at least 1" in r.stderr


@pytest.mark.slow
def test_bench_json_reports_every_figure(tmp_path, selftest_run):
    """The selftest's bench (resnet20, two steps of 32, two runs at once: its JSON report, kept), then
    one of our own in float64."""
    rep = json.loads((selftest_run.work / "bench" / "bench.json").read_text())
    (arch,) = rep["archs"]
    for key in ("harness_img_s", "bare_img_s", "reference_img_s", "eval_s_per_epoch"):
        assert arch[key] > 0, key
    assert arch["harness_over_bare"] == pytest.approx(arch["harness_img_s"] / arch["bare_img_s"])
    assert arch["harness_over_reference"] == pytest.approx(arch["harness_img_s"] / arch["reference_img_s"])
    (two,) = rep["jobs"]
    assert two["jobs"] == 2 and two["aggregate_img_s"] == pytest.approx(2 * two["per_job_img_s"])
    trips = {t["sandbox"]: t for t in rep["roundtrips"]}
    assert "none" in trips and all(0 < t["median_us"] <= t["p99_us"] for t in trips.values())
    # float64 end to end (a float32 input or worker against float64 parameters would raise)
    r = harness(
        "bench",
        "--json",
        "--precision",
        "fp64",
        "--arch",
        "resnet20",
        "--steps",
        "1",
        "--rounds",
        "1",
        "--calls",
        "20",
        "--eval-images",
        "100",
        "--batch",
        "8",
        "--sandbox",
        "none",
        "--jobs",
        "1",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(r.stdout)
    assert rep["precision"] == "fp64" and rep["archs"][0]["harness_img_s"] > 0


def _options(parser, path=("harness",)):
    """Every (command path, option) of ``parser`` and its subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, path + (name,))
        elif not isinstance(action, argparse._HelpAction):
            yield " ".join(path), action


@pytest.mark.slow
def test_help_version_and_every_option_explained(tmp_path):
    r = harness("--version", cwd=tmp_path)
    assert r.returncode == 0 and re.fullmatch(r"harness \S+ \(commit \S+; torch \S+\)\n", r.stdout), r.stdout
    r = harness("--help", cwd=tmp_path)
    assert r.returncode == 0 and "MultiTaskLoss" in r.stdout and "examples:" in r.stdout
    assert "one thin function per subcommand" not in r.stdout  # not the module's developer docstring
    missing = [f"{cmd} {'/'.join(a.option_strings) or a.dest}" for cmd, a in _options(build_parser()) if not a.help]
    assert missing == []
