"""What the hardware does for a run: which device, what float32 means on it, determinism,
and how a machine's CPUs and GPUs are shared between runs at once.

Everything here is set per process before a run trains; :func:`determinism_env` is what a run's
process needs in its environment before CUDA starts (a ``--jobs`` child inherits it, a Ray task
gets it in its ``runtime_env``).
"""

from __future__ import annotations

import contextlib
import os
from typing import cast

import torch

from harness.errors import UsageError
from harness.protocol import Precision

PRECISIONS: tuple[str, ...] = Precision.__args__  # type: ignore[attr-defined]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was given but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def autocast_context(precision: str, device_type: str):
    """bfloat16 autocast for ``bf16``; nothing for fp32 and fp64."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (a GPU with bf16, a CPU with AVX-512 BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """``auto`` -> ``bf16`` where it is native on ``device``, else ``fp32``; others unchanged
    (``tf32`` is refused off CUDA, where it does not exist)."""
    if precision == "tf32" and device.type != "cuda":
        raise UsageError(
            f"--precision tf32 needs a CUDA device (TensorFloat-32 is a GPU format); this run is on "
            f"{device.type}: use fp32"
        )
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return cast(Precision, precision)


def set_fp32_precision(precision: str, device: torch.device) -> None:
    """Make float32 arithmetic what the row records (:func:`float32_math` reads it back).

    On CUDA, ``fp32`` (and the float32 parts of ``bf16`` and ``fp64`` runs) is PyTorch's default, the
    one the task's published rows were produced with: cuDNN convolutions in TensorFloat-32 (on GPUs
    that have it: Ampere and later), matmuls in IEEE float32. ``tf32`` adds TF32 matmuls. Other
    devices have no TF32 and are left as they are (IEEE).

    Set through the ``fp32_precision`` API of torch >= 2.9, with the legacy ``allow_tf32`` flags
    written first to the same values: torch raises when a legacy flag is read (inductor reads
    ``torch.backends.cudnn.allow_tf32`` and ``torch.get_float32_matmul_precision()``) while it
    disagrees with the new setting; this way both views always agree. Idempotent, and each call
    sets every flag, so a run never inherits another run's settings in one process."""
    if device.type != "cuda":
        return
    matmul_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = True  # legacy view, set first (it resets the new one to match)
    torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
    torch.backends.cudnn.conv.fp32_precision = "tf32"  # type: ignore[attr-defined]
    torch.backends.cuda.matmul.fp32_precision = "tf32" if matmul_tf32 else "ieee"


def float32_math(device: torch.device) -> str:
    """What float32 convolutions and matmuls compute in on ``device`` as this process is set now:
    ``ieee`` (everything IEEE float32: a CPU, a GPU before Ampere), ``tf32-conv`` (PyTorch's CUDA
    default: TF32 convolutions, IEEE matmuls) or ``tf32`` (both TF32). Recorded in every row."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 0):
        return "ieee"
    conv = torch.backends.cudnn.conv.fp32_precision == "tf32"  # type: ignore[attr-defined]
    matmul = torch.backends.cuda.matmul.fp32_precision == "tf32"
    return "tf32" if conv and matmul else "tf32-conv" if conv else "tf32-matmul" if matmul else "ieee"


DETERMINISTIC_CUBLAS = (":4096:8", ":16:8")  # the values cuBLAS is deterministic with (torch accepts these)


def determinism_env(deterministic: bool) -> dict[str, str]:
    """Environment a ``--deterministic`` run's process needs before CUDA starts: cuBLAS reads
    ``CUBLAS_WORKSPACE_CONFIG`` when it creates its handle (deterministic matmuls need it)."""
    return {"CUBLAS_WORKSPACE_CONFIG": DETERMINISTIC_CUBLAS[0]} if deterministic else {}


def prepare_determinism(deterministic: bool) -> None:
    """Put :func:`determinism_env` into this process's environment, before CUDA starts: every path to
    a deterministic run calls it (an evaluation from the CLI or the Python API before anything else,
    :func:`set_determinism` again before each run; ``--jobs`` children inherit it, Ray tasks get it
    in their ``runtime_env``). A deterministic value already set is kept. Raises
    :class:`UsageError` when CUDA already started in this process without one: cuBLAS may have sized
    its workspace already, and the run could not be deterministic."""
    if not deterministic or os.environ.get("CUBLAS_WORKSPACE_CONFIG") in DETERMINISTIC_CUBLAS:
        return
    if torch.cuda.is_initialized():
        raise UsageError(
            "--deterministic needs CUBLAS_WORKSPACE_CONFIG=:4096:8 before CUDA starts, and CUDA already runs in "
            "this process: set it in the environment before starting Python (export CUBLAS_WORKSPACE_CONFIG=:4096:8)"
        )
    os.environ.update(determinism_env(True))


def set_determinism(deterministic: bool, device: torch.device) -> None:
    """``--deterministic``: deterministic kernels everywhere (an op without one raises), cuDNN
    deterministic and without autotuning, cuBLAS's workspace setting (:func:`prepare_determinism`).
    Otherwise cuDNN autotunes (faster on a GPU)."""
    prepare_determinism(deterministic)
    if deterministic or torch.are_deterministic_algorithms_enabled():  # off is torch's default; the call loads
        torch.use_deterministic_algorithms(deterministic)  # inductor (2 s), which a run that never compiles skips
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic


def threads_per_run(runs_at_once: int, device_type: str) -> int:
    """torch CPU threads for each of ``runs_at_once`` runs sharing this machine: its cores split
    evenly on the CPU; 0 (torch's choice) for runs on a GPU."""
    if device_type != "cpu":
        return 0
    return max(1, (os.cpu_count() or 1) // max(1, runs_at_once))


def device_for_slot(device: str, slot: int) -> str:
    """The device of the run in slot ``slot``: runs are spread over the visible GPUs; the CPU stays the CPU."""
    if not device.startswith("cuda"):
        return device
    count = torch.cuda.device_count()
    return f"cuda:{slot % count}" if count > 1 else device


GPU_MEMORY_PER_UNIT = 6 * 2**30
"""What one process training on a GPU is allowed for when runs share it: a fused VGG-16-BN (three
seeds, batch 128, float32) needs about 3 GiB of activations and state, plus the CUDA context."""


def gpu_slots(units: int) -> int:
    """How many units (a run, or fused seeds) go at once by default: on CUDA as many as fit in the
    visible GPUs' free memory (:data:`GPU_MEMORY_PER_UNIT` each), at most ``units``; 1 elsewhere."""
    if units <= 1 or not torch.cuda.is_available():
        return 1
    free = sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
    return max(1, min(units, free // GPU_MEMORY_PER_UNIT))


def mps_running() -> bool:
    """Whether the CUDA Multi-Process Service appears to run for this user (its pipe directory):
    processes sharing a GPU then run their kernels concurrently instead of taking turns."""
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or "/tmp/nvidia-mps"
    return os.path.exists(os.path.join(pipe, "control"))
