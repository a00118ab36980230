"""Methods ported from public code as their authors and researchers write them (``tests/ports/``, kept
unchanged): LibMTL's GradVac reading the Gramian from ``**kwargs``, LibMTL's IMTL with a loss scale
that is a plain tensor requiring grad, FairGrad's official weights from ``scipy.optimize.least_squares``,
and a Kaggle-notebook curriculum (logging, optional wandb / tensorboard / tqdm, ``seed_everything()``,
settings from the environment, numpy numbers in ``scalars()``). Each runs through the CLI or the API
and gets what it reads, or a warning or refusal that says what to change."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import harness, require_sandbox

from harness import api
from harness.isolation.check import interface_check
from harness.isolation.client import LossWorker, StepRequest
from harness.protocol import OptimizerSettings

PORTS = Path(__file__).parent / "ports"
REAL = [pytest.param("bwrap", marks=pytest.mark.bwrap), pytest.param("docker", marks=pytest.mark.docker)]

pytestmark = pytest.mark.slow  # each test starts loss workers or the harness command


@pytest.mark.bwrap
def test_a_gramian_read_from_kwargs_is_delivered_end_to_end(tmp_path):
    """LibMTL's habit, ``gramian = kwargs.get('gramian', None)``, falls back to the plain sum when the
    input is missing. Evaluated in bubblewrap on the tiny profile (256 images in batches of 64: four
    steps), the file counts the steps on which it had the Gramian: every one."""
    require_sandbox("bwrap")
    lb = tmp_path / "lb.csv"
    r = harness(
        "evaluate",
        PORTS / "gradvac_libmtl_kwargs.py",
        "--profile",
        "tiny",
        "--sandbox",
        "bwrap",
        "--leaderboard",
        lb,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "extra inputs: gramian" in r.stdout and "warning" not in r.stdout
    row = pd.read_csv(lb).iloc[0]
    assert (row["status"], row["sandbox"]) == ("ok", "bwrap")
    state = json.loads((tmp_path / "runs" / row["run_id"] / "loss_state.json").read_text())
    assert state["attr:n_updates"] == [4.0]


@pytest.mark.parametrize(
    "body, message",
    [
        (
            """
     def forward(self, fine_loss, coarse_loss, epoch, total_epochs, **kwargs):
         return self._weigh(fine_loss, coarse_loss, **kwargs)

     def _weigh(self, fine_loss, coarse_loss, gramian=None):
         return fine_loss + coarse_loss
     """,
            "forward passes **kwargs on to another call: the harness passes an optional input through **kwargs only "
            "where the code reads its name as a literal string",
        ),
        (
            """
     def forward(self, fine_loss, coarse_loss, epoch, total_epochs, **kwargs):
         inputs = {name: kwargs.get(name) for name in ("gramian", "step")}
         return fine_loss + coarse_loss
     """,
            "forward reads kwargs.get(...) with a key that is not a literal string",
        ),
        (
            """
     def forward(self, fine_loss, coarse_loss, epoch, total_epochs, **kwargs):
         beta = kwargs['GradVac_beta']
         return fine_loss + beta * coarse_loss
     """,
            "forward reads 'GradVac_beta' from **kwargs, which the harness never passes; it passes only: gramian, "
            "step, steps_per_epoch",
        ),
        (
            """
     def forward(self, fine_loss, coarse_loss, epoch, total_epochs, **kwargs):
         return fine_loss + coarse_loss * (kwargs.get('gramain') is None)
     """,
            "(did you mean 'gramian'?)",
        ),
    ],
)
def test_a_kwargs_read_the_check_cannot_deliver_is_refused_before_training(body, message, tmp_path):
    path = tmp_path / "port.py"
    path.write_text(
        "import torch.nn as nn\n\n\nclass MultiTaskLoss(nn.Module):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    )
    r = harness(
        "evaluate", path, "--profile", "tiny", "--sandbox", "none", "--leaderboard", tmp_path / "lb.csv", cwd=tmp_path
    )
    flat = " ".join(r.stderr.split())
    assert r.returncode == 2 and message in flat, r.stdout + r.stderr
    assert "declare the inputs it needs as keyword-only parameters" in flat or "A setting belongs in the file" in flat
    assert not (tmp_path / "lb.csv").exists() and not (tmp_path / "runs").exists()


@pytest.mark.bwrap
def test_a_tensor_that_requires_grad_but_is_no_parameter_is_named(tmp_path):
    """LibMTL-style IMTL: ``self.loss_scale = torch.tensor(..., requires_grad=True)`` is never trained.
    The interface check in the sandbox names it (harness check; the evaluation's check as data), and
    the file wrapped in nn.Parameter trains its two numbers without a warning."""
    require_sandbox("bwrap")
    imtl = PORTS / "imtl_libmtl.py"
    r = harness("check", imtl, "--sandbox", "bwrap", cwd=tmp_path)
    flat = " ".join(r.stdout.split())
    assert r.returncode == 0, r.stdout + r.stderr
    assert (
        "warning: self.loss_scale is a tensor with requires_grad=True but not an nn.Parameter, so nothing trains it"
    ) in flat and "wrap it in nn.Parameter" in flat
    assert f"next: harness evaluate {imtl} --profile smoke" in flat
    result = api.evaluate(
        imtl, profile="tiny", sandbox="none", leaderboard=tmp_path / "lb.csv", runs_dir=tmp_path / "runs"
    )
    assert result.exit_code == 0 and [run.status for run in result.runs] == ["ok"]
    assert any("self.loss_scale is a tensor with requires_grad=True" in w for w in result.checks[str(imtl)].warnings)
    fixed = tmp_path / "imtl_fixed.py"
    fixed.write_text(
        imtl.read_text().replace(
            "torch.tensor([0.0] * self.task_num, device=self.device, requires_grad=True)",
            "nn.Parameter(torch.tensor([0.0] * self.task_num, device=self.device))",
        )
    )
    report = api.check(fixed, sandbox="bwrap")
    assert report.ok and report.num_params == 2 and report.warnings == [] and report.capabilities == ["gramian"]


@pytest.mark.parametrize("sandbox", REAL)
def test_fairgrad_with_scipy_runs_in_both_sandboxes(sandbox, tmp_path):
    """FairGrad's official code calls scipy.optimize.least_squares: scipy is importable in both
    sandboxes, and the weights the worker returns solve FairGrad's equation G w = 1 / w (alpha = 1),
    checked here with numpy on the reply."""
    chosen = require_sandbox(sandbox)
    r = harness("check", PORTS / "fairgrad_scipy.py", "--sandbox", sandbox, cwd=tmp_path)
    assert r.returncode == 0 and "extra inputs: gramian" in r.stdout, r.stdout + r.stderr
    G = np.array([[4.0, -1.0], [-1.0, 2.0]])
    with LossWorker(
        PORTS / "fairgrad_scipy.py", sandbox=chosen, seed=0, optimizer=OptimizerSettings(), dtype="float64"
    ) as worker:
        worker.start()
        reply = worker.step(StepRequest(0, 10, 0, 5, 0.1, 2.0, 1.0, gramian=(G[0, 0], G[0, 1], G[1, 1])))
    w = np.array([reply.w_fine, reply.w_coarse])
    assert (w > 0).all() and np.abs(G @ w - 1 / w).max() < 1e-6, w


@pytest.mark.parametrize("sandbox", ["none", *REAL])
def test_a_kaggle_notebook_file_runs_and_its_optional_tools_fail_cleanly(sandbox, tmp_path, monkeypatch):
    """wandb and tqdm are installed where the worker's packages are (fake ones, on the interpreter's
    path, which ``none`` and bubblewrap hand to the worker): the guarded imports still fail inside the
    worker, so the file's fallbacks run; the environment is empty, so its defaults apply (and the check
    says so); its numpy numbers in scalars() are accepted."""
    chosen = require_sandbox(sandbox)
    site = tmp_path / "site-packages"
    for name, source in {
        "wandb/__init__.py": "def init(**kw): pass\ndef log(d): pass\n",
        "tqdm/__init__.py": "tqdm = list\n",
        "tqdm/auto.py": "tqdm = list\n",
    }.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(source)
    site.chmod(0o755)
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    monkeypatch.setenv("WARMUP_FRAC", "0.9")
    log = tmp_path / "check.log"
    report = interface_check(PORTS / "kaggle_curriculum.py", sandbox=chosen, log_path=log, total_epochs=10)
    text = log.read_text()
    assert "wandb: False, tensorboard: False, tqdm: False" in text, text
    assert any(
        "WARMUP_FRAC, MAX_COARSE: the loss worker's environment is empty, so the defaults in the file apply" in w
        for w in report.warnings
    ), report.warnings
    with LossWorker(PORTS / "kaggle_curriculum.py", sandbox=chosen, seed=0, optimizer=OptimizerSettings()) as worker:
        worker.start()
        reply = worker.step(StepRequest(5, 10, 0, 5, 0.1, 2.0, 1.0))
        scalars = worker.scalars()
    assert reply.w_coarse == pytest.approx((1 - 0.5) / (1 - 0.15))  # WARMUP_FRAC's default, not the host's 0.9
    assert scalars["coarse_weight"] == pytest.approx(reply.w_coarse) and scalars["elapsed"] >= 0
