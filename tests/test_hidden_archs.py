"""The hidden architectures outside the driver's process: a ``--jobs`` child, a Ray task and the
``harness bench`` children load the file the evaluation was planned with (its sha256 checked), and
a run that fails before it trains still leaves its reason in ``failure.txt``."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO, harness, run_spec, tiny_profile

from harness.errors import UsageError
from harness.executors import Job, RunObserver
from harness.executors.local import LocalExecutor
from harness.results.rundir import RunDir
from harness.training import models

ARCH_FILE = """
from torch import nn
from harness.training.models import register_arch

@register_arch("{name}", feature_dim=4, hidden=True)
def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
"""


def _arch_file(tmp_path: Path, name: str) -> tuple[Path, str]:
    path = tmp_path / f"{name}.py"
    path.write_text(ARCH_FILE.format(name=name))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_architecture_file_is_loaded_only_when_its_sha256_is_the_planned_one(tmp_path):
    path, sha = _arch_file(tmp_path, "hidden_probe_a")
    with pytest.raises(UsageError, match="changed since the evaluation was planned"):
        models.load_arch_file("hidden_probe_a", str(path), "0" * 64)
    assert "hidden_probe_a" not in models.available_archs()
    with pytest.raises(UsageError, match="cannot be read here"):
        models.load_arch_file("hidden_probe_a", str(tmp_path / "elsewhere.py"), sha)
    # on a machine without the file (a Ray node), its bytes travel with the task
    data = path.read_bytes()
    path.unlink()
    models.load_arch_file("hidden_probe_a", str(path), sha, content=data)
    assert models.get_arch("hidden_probe_a").hidden
    assert models.hidden_source("hidden_probe_a") == (str(path), sha)
    models.load_arch_file("hidden_probe_a", str(path), sha)  # loaded: a no-op, the file is not read again
    with pytest.raises(UsageError, match="was loaded here from"):
        models.load_arch_file("hidden_probe_a", str(path), "1" * 64)


@pytest.mark.slow
def test_a_child_that_fails_before_training_leaves_its_reason_in_failure_txt(tmp_path):
    """A run whose process cannot build its model (here: an architecture no file defines) fails
    before training; its reason must be in failure.txt (the README's promise), and its time is the
    process's, not 0."""
    spec = run_spec(tiny_profile(), arch="no_such_arch_here")
    jobs = [
        Job(spec.model_copy(update={"seed": seed}), RunDir(tmp_path / f"run{seed}"), REPO / "submissions" / "x.py")
        for seed in (1, 2)
    ]
    results = []
    LocalExecutor(jobs=2, data_dir=None, sandbox_name="none").run(
        jobs, RunObserver(), lambda job, result: results.append((job, result))
    )
    assert len(results) == 2
    for job, result in results:
        assert result.status == "failed" and "unknown architecture 'no_such_arch_here'" in result.reason
        assert result.wall_seconds > 0
        text = job.run_dir.failure.read_text()
        assert "unknown architecture 'no_such_arch_here'" in text and f"seed {job.spec.seed}" in text


@pytest.mark.slow
def test_final_phase_with_jobs_trains_the_hidden_architecture_in_its_child_processes(tmp_path):
    """The issue's command: every vgg16bn run failed in its --jobs child ("unknown architecture")."""
    start = time.monotonic()
    r = harness(
        "evaluate",
        REPO / "submissions" / "example_loss.py",
        "--profile",
        "tiny",
        "--phase",
        "final",
        "--arch",
        "vgg16bn",
        "--seed",
        "42",
        "--seed",
        "123",
        "--jobs",
        "2",
        "--sandbox",
        "none",
        "--device",
        "cpu",
        cwd=tmp_path,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    df = pd.read_csv(tmp_path / "leaderboard-tiny.csv")
    assert sorted(df["seed"]) == [42, 123] and set(df["status"]) == {"ok"} and set(df["arch"]) == {"vgg16bn"}
    assert (df["wall_seconds"] > 0).all() and (df["wall_seconds"] < time.monotonic() - start).all()
    for run_id in df["run_id"]:
        settings = json.loads((tmp_path / "runs" / run_id / "settings.json").read_text())
        source = settings["arch_source"]
        assert source["path"] == str((REPO / "hidden" / "vgg16bn.py").resolve())
        assert source["sha256"] == hashlib.sha256((REPO / "hidden" / "vgg16bn.py").read_bytes()).hexdigest()


@pytest.mark.slow
def test_bench_measures_a_hidden_architecture_in_its_concurrent_children(tmp_path):
    r = harness(
        "bench",
        "--arch",
        "vgg16bn",
        "--device",
        "cpu",
        "--steps",
        "1",
        "--rounds",
        "1",
        "--batch",
        "4",
        "--calls",
        "5",
        "--eval-images",
        "20",
        "--jobs",
        "2",
        "--sandbox",
        "none",
        "--json",
        cwd=tmp_path,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert [a["arch"] for a in report["archs"]] == ["vgg16bn"] and report["archs"][0]["harness_img_s"] > 0
    assert [(j["arch"], j["jobs"]) for j in report["jobs"]] == [("vgg16bn", 2)]
    assert report["jobs"][0]["aggregate_img_s"] > 0
