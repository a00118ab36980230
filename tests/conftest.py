"""Shared fixtures: a tiny synthetic dataset, helper to write submission files. The helpers the
test modules import live in helpers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest
from helpers import REPO, LiveHarness, harness, harness_env

from harness.training.data import load_dataset, write_synthetic


def pytest_configure(config) -> None:
    """Each test process trains with a fixed number of torch threads (``$HARNESS_THREADS``), so that a
    result does not depend on what else the machine runs (the CPU sharing measures its neighbours):
    one per process under pytest-xdist (its workers share the cores), else every usable CPU. The
    tests of the sharing itself remove it. An explicit ``$HARNESS_THREADS`` is kept."""
    from harness.training.sharing import THREADS_ENV, usable_cpus

    if not os.environ.get(THREADS_ENV):
        os.environ[THREADS_ENV] = "1" if hasattr(config, "workerinput") else str(usable_cpus())
    if hasattr(config, "workerinput"):
        # pytest-xdist's workers get COLUMNS=80 and LINES=24 of their own; the tests set the width
        # they mean (tests/helpers.py harness_env: 160 unless a test names another)
        os.environ.pop("COLUMNS", None)
        os.environ.pop("LINES", None)
        # loadgroup relies on node ids that pytest 9.2 made read-only: say so rather than run slowly
        config.pluginmanager.register(_GroupsTakeEffect(), "harness-groups-take-effect")


class _GroupsTakeEffect:
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items) -> None:
        if config.getvalue("loadgroup"):
            for item in items:
                if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid:
                    raise pytest.UsageError(
                        "pytest-xdist's --dist loadgroup did not group the tests (a pytest it does not support?): "
                        "install the dev extras' pytest (pip install -e '.[dev]') or run with -n 0"
                    )


# the session fixtures that tests of several modules share, each with the xdist group of its tests
SHARED_RUNS = {"readme_smoke_run": "readme-smoke", "selftest_run": "selftest"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items) -> None:
    """Under ``--dist loadgroup``, the tests that share an expensive fixture run in one worker, so that
    it is built once: each of :data:`SHARED_RUNS` (the README's smoke evaluation, the selftest: one
    group each) and each module-scoped fixture (one group per module).

    Under pytest-xdist the slow tests come first (in their order otherwise): its workers take the tests
    in this order (the groups first, the largest first), so the run ends on tests that take seconds,
    not with one worker on a test of a minute while the other has nothing left. Under ``-n 0`` the
    order stays the files' order."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        for name in info.names_closure:
            defs = info.name2fixturedefs.get(name) or ()
            if name in SHARED_RUNS:
                item.add_marker(pytest.mark.xdist_group(SHARED_RUNS[name]))
                break
            if any(d.scope == "module" for d in defs):
                item.add_marker(pytest.mark.xdist_group(item.module.__name__))
                break
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


@pytest.fixture(scope="session")
def small_splits(tiny_splits):
    """48 train / 16 test images: in batches of 16 (``helpers.exact_profile``), three steps an epoch
    (momentum, the epoch boundary and the loss module's state all come into play) at a fraction of
    the cost of ``tiny_splits`` in batches of 64."""
    train, test = tiny_splits
    return train.head(48), test.head(16)


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


class SmokeRun(NamedTuple):
    """The README's smoke evaluation: its outcome (``result.stdout`` holds standard output and
    error together), its directory, and what ``harness check --sandbox docker`` in another pid
    namespace returned while the evaluation was training (None where that was not possible here)."""

    result: subprocess.CompletedProcess
    cwd: Path
    neighbour: subprocess.CompletedProcess | str | None


def docker_neighbour_possible() -> bool:
    """Docker with the sandbox image, and root with ``unshare`` to start a harness in a new pid namespace."""
    from harness.isolation.sandbox import get_sandbox

    return get_sandbox("docker").available() and shutil.which("unshare") is not None and os.geteuid() == 0


@pytest.fixture(scope="session")
def readme_smoke_run(tmp_path_factory) -> SmokeRun:
    """The README's first command, run once. Shared by the README test, the resume test (which
    compares a killed-and-resumed run against it) and the Docker neighbours test: where Docker is
    available the evaluation trains in its sandbox (the default's first choice), and once its first
    epoch is done a harness in another pid namespace runs ``harness check --sandbox docker``, which
    must leave this live run's worker container alone (tests/test_docker_neighbours.py)."""
    cwd = tmp_path_factory.mktemp("readme-smoke")
    example = REPO / "submissions" / "example_loss.py"
    run = LiveHarness("evaluate", example, "--profile", "smoke", cwd=cwd)
    neighbour: subprocess.CompletedProcess | str | None = None
    try:
        if docker_neighbour_possible():
            try:
                run.wait_for(r"epoch 1/3", timeout=600)  # training, its worker container live
            except AssertionError as e:
                neighbour = f"the evaluation never reached its first epoch's end: {e}"
            else:
                neighbour = subprocess.run(
                    [
                        "unshare",
                        "--pid",
                        "--fork",
                        shutil.which("harness"),
                        "check",
                        str(example),
                        "--sandbox",
                        "docker",
                    ],
                    cwd=tmp_path_factory.mktemp("docker-neighbour"),
                    capture_output=True,
                    text=True,
                    timeout=300,
                    env=harness_env(),
                    stdin=subprocess.DEVNULL,
                )
        code, out = run.finish(timeout=900)
    finally:
        run.kill()
    return SmokeRun(subprocess.CompletedProcess(run.proc.args, code, out, ""), cwd, neighbour)


class SelftestRun(NamedTuple):
    """``harness selftest --device cpu --keep WORK``, run once: its outcome (standard output and error
    together in ``result.stdout``) and the kept scratch directory (a directory per check)."""

    result: subprocess.CompletedProcess
    work: Path


@pytest.fixture(scope="session")
def selftest_run(tmp_path_factory) -> SelftestRun:
    """The selftest on the CPU through the command line. Shared by its own test and tests/test_fused.py,
    which reads the rows and run directories of its fused and separate runs."""
    cwd = tmp_path_factory.mktemp("selftest")
    r = harness("selftest", "--device", "cpu", "--keep", cwd / "work", cwd=cwd, timeout=1200)
    return SelftestRun(r, cwd / "work")
