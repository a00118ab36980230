"""What a run sets in its process before it trains, checked without a GPU (the flags and the
environment are process-wide and readable on a CPU build; the kernels that obey them run only on a
GPU): float32 means what the task's published rows used (PyTorch's defaults: TF32 cuDNN
convolutions, IEEE matmuls) and every reader of the flags, legacy or new, agrees with it without
raising; a deterministic evaluation sets cuBLAS's workspace variable on every path, the Python API's
included, before CUDA starts."""

from __future__ import annotations

import itertools
import os

import pytest
import torch

from harness.errors import SubmissionRejected, UsageError
from harness.training import device as dev

CUDA = torch.device("cuda")


@pytest.fixture
def restore_flags():
    legacy = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = legacy  # resets the new API too


def _every_view() -> dict[str, object]:
    """Every way torch code reads the float32 settings (each raises if the two APIs disagree)."""
    return {
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,  # read by inductor's conv templates
        "matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),  # read by inductor's autotuning
        "conv": torch.backends.cudnn.conv.fp32_precision,
        "matmul": torch.backends.cuda.matmul.fp32_precision,
    }


EXPECTED = {
    "fp32": {
        "cudnn.allow_tf32": True,
        "matmul.allow_tf32": False,
        "float32_matmul_precision": "highest",
        "conv": "tf32",
        "matmul": "ieee",
    },
    "tf32": {
        "cudnn.allow_tf32": True,
        "matmul.allow_tf32": True,
        "float32_matmul_precision": "high",
        "conv": "tf32",
        "matmul": "tf32",
    },
}
EXPECTED["bf16"] = EXPECTED["fp64"] = EXPECTED["fp32"]


@pytest.mark.parametrize("order", list(itertools.permutations(["fp32", "tf32", "bf16"])) + [("tf32", "fp64")])
def test_float32_settings_are_pytorchs_defaults_and_every_reader_agrees(order, restore_flags):
    """Before: fp32 set cuDNN convolutions to IEEE through the new API, after which reading
    torch.backends.cudnn.allow_tf32 (as inductor does) raised. Runs one after another in a process
    must not inherit each other's settings."""
    for precision in order:
        dev.set_fp32_precision(precision, CUDA)
        assert _every_view() == EXPECTED[precision], precision


def test_fp32_on_cuda_is_what_pytorch_does_by_default(restore_flags):
    """The published rows were produced with PyTorch's defaults: a fresh process (of the torch this
    runs with) reads them, and fp32 must set exactly those."""
    import subprocess
    import sys

    probe = (
        "import torch; b = torch.backends; print(b.cudnn.conv.fp32_precision, b.cudnn.allow_tf32, "
        "b.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())"
    )
    fresh = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    dev.set_fp32_precision("tf32", CUDA)  # whatever ran before in this process
    dev.set_fp32_precision("fp32", CUDA)
    view = _every_view()
    keys = ("conv", "cudnn.allow_tf32", "matmul.allow_tf32", "float32_matmul_precision")
    assert fresh == [str(view[k]) for k in keys]


@pytest.mark.parametrize(
    "capability, precision, expected",
    [
        ((9, 0), "fp32", "tf32-conv"),
        ((9, 0), "bf16", "tf32-conv"),
        ((9, 0), "tf32", "tf32"),
        ((8, 0), "fp32", "tf32-conv"),
        ((7, 0), "fp32", "ieee"),
        ((7, 0), "tf32", "ieee"),
    ],
)
def test_the_recorded_float32_math_follows_the_flags_and_the_gpu(
    capability, precision, expected, monkeypatch, restore_flags
):
    """The value every row records, read from the flags; a GPU before Ampere has no TF32."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    dev.set_fp32_precision(precision, CUDA)
    assert dev.float32_math(CUDA) == expected
    assert dev.float32_math(torch.device("cpu")) == "ieee"


def test_the_python_api_sets_cublas_workspace_before_anything_starts(tmp_path, monkeypatch):
    """Before, only the CLI set CUBLAS_WORKSPACE_CONFIG: evaluate_files(deterministic=True) on CUDA
    then failed at its first matmul. The variable is set as the evaluation begins (here it ends
    there: the file does not exist)."""
    from harness.api import evaluate_files

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    with pytest.raises(SubmissionRejected):
        evaluate_files(
            [tmp_path / "missing.py"],
            profile="tiny",
            deterministic=True,
            sandbox="none",
            runs_dir=tmp_path / "runs",
            leaderboard=tmp_path / "lb.csv",
        )
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_determinism_refuses_when_cuda_started_without_the_setting(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(UsageError, match="CUBLAS_WORKSPACE_CONFIG=:4096:8 before CUDA starts"):
        dev.prepare_determinism(True)
    dev.prepare_determinism(False)  # nothing asked: nothing checked
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a deterministic value of the user's is kept
    dev.prepare_determinism(True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_rows_record_the_float32_math_and_older_rows_migrate_to_what_they_computed(tmp_path):
    """Schema 5 records float32_math; a version-4 file migrates: its measured rows computed IEEE
    float32 (the harness then switched TF32 off) except --precision tf32 on a GPU; published rows
    do not say."""
    import pandas as pd
    from helpers import harness, leaderboard_row

    from harness.results import read_rows
    from harness.results.store import COLUMNS_BY_VERSION

    rows = [
        leaderboard_row(seed=1).model_dump(),
        leaderboard_row(seed=2, precision="tf32", device="cuda:NVIDIA H100").model_dump(),
        leaderboard_row(seed=3, precision="tf32", device="cpu").model_dump(),
        {**leaderboard_row(seed=4).model_dump(), "origin": "published", "source": "a paper"},
    ]
    v4 = pd.DataFrame(rows).astype(str).replace({"None": ""})
    v4["schema_version"] = "4"
    v4[list(COLUMNS_BY_VERSION[4])].to_csv(tmp_path / "lb.csv", index=False, lineterminator="\n")
    r = harness("migrate", tmp_path / "lb.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = read_rows(tmp_path / "lb.v6.csv").set_index("seed")["float32_math"].fillna("").to_dict()
    assert got == {1: "ieee", 2: "tf32", 3: "ieee", 4: ""}


def test_runs_share_a_gpu_by_default_as_far_as_its_memory_goes(monkeypatch, tmp_path):
    """The CUDA-only lines of the default --jobs, with torch's CUDA queries stood in for: 6 GiB a
    unit of the free memory of every visible GPU; one at a time on a CPU; MPS seen by its pipe."""
    from harness.evaluate.plan import EvaluateOptions, local_jobs
    from harness.protocol import get_profile

    gib = 2**30
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=None: (75 * gib, 80 * gib))
    assert dev.gpu_slots(3) == 3 and dev.gpu_slots(20) == 12 and dev.gpu_slots(1) == 1
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=None: (4 * gib, 80 * gib))  # nearly full: one
    assert dev.gpu_slots(3) == 1
    opts = EvaluateOptions(profile=get_profile("tiny"))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=None: (75 * gib, 80 * gib))
    assert local_jobs(opts, torch.device("cuda"), 3) == 3
    assert local_jobs(opts, torch.device("cpu"), 3) == 1
    assert local_jobs(opts.model_copy(update={"jobs": 2}), torch.device("cuda"), 3) == 2
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    assert not dev.mps_running()
    (tmp_path / "control").touch()
    assert dev.mps_running()
