"""Shared fixtures: a tiny synthetic dataset, helper to write submission files. The helpers the
test modules import live in helpers.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.training.data import load_dataset, write_synthetic

from helpers import REPO, harness_env


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic dataset (600 train / 200 test), generated once per session."""
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic(root, seed=0, n_train=600, n_test=200)
    return root


@pytest.fixture(scope="session")
def tiny_splits(synthetic_root):
    train, test = load_dataset(synthetic_root, dataset="synthetic")
    return train.head(192), test.head(100)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test uses one session-wide cache dir, never the user's."""
    cache = tmp_path_factory.getbasetemp() / "harness-cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache))
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)


@pytest.fixture
def write_submission(tmp_path):
    """``write_submission(body, name='loss.py') -> Path``: dedented source to a file."""

    def write(body: str, name: str = "loss.py") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body))
        return path

    return write


@pytest.fixture(scope="session")
def readme_smoke_run(tmp_path_factory):
    """The README's first command, run once: ``(CompletedProcess, its directory)``. Shared by the
    README test and the resume test, which compares a killed-and-resumed run against it."""
    import shutil
    import subprocess

    cwd = tmp_path_factory.mktemp("readme-smoke")
    r = subprocess.run([shutil.which("harness"), "evaluate", str(REPO / "submissions" / "example_loss.py"),
                        "--profile", "smoke"], cwd=cwd, capture_output=True, text=True, timeout=900,
                       env=harness_env(), stdin=subprocess.DEVNULL)
    return r, cwd
