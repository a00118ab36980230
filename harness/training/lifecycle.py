"""What every run does around its epochs, the per-seed run (:func:`~harness.training.trainer.run_one`)
and the fused one (:func:`~harness.training.fused_run.run_fused`) alike: set up the device, start
from the last intact checkpoint or from scratch, announce it, start the loss worker (replaying the
checkpointed messages), turn an epoch's means into its metrics, say why a run failed, and write its
result.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness.errors import RunFailed
from harness.events import RunObserver, RunResumed, RunStarted
from harness.isolation.client import LossWorker, WorkerError
from harness.isolation.sandbox import Sandbox
from harness.protocol import EpochMetrics, RunResult, RunSpec
from harness.results.rundir import RunDir
from harness.training.checkpoint import Checkpointer, Resume
from harness.training.data import Split, TrainLoader, eval_batches
from harness.training.device import float32_math, set_determinism, set_fp32_precision
from harness.training.evaluation import TestMetrics
from harness.training.models import TwoHeadNet, build_model
from harness.training.sgd import Optimizer, make_sgd
from harness.training.steplog import StepLog
from harness.util.provenance import device_name
from harness.util.userpath import as_user_path


@dataclass
class RunOutcome:
    result: RunResult
    history: list[EpochMetrics] = field(default_factory=list)
    model: TwoHeadNet | None = None
    loss_state: dict[str, list[float]] | None = None


def set_up_device(spec: RunSpec) -> tuple[torch.device, torch.dtype]:
    """The run's device and dtype, with its determinism and float32 arithmetic set."""
    device, dtype = torch.device(spec.device), getattr(torch, spec.dtype)
    set_determinism(spec.deterministic, device)
    set_fp32_precision(spec.precision, device)
    return device, dtype


def fresh_model(spec: RunSpec, device: torch.device, dtype: torch.dtype) -> tuple[TwoHeadNet, Optimizer]:
    """The model as initialised by the run's seed, and its SGD optimizer."""
    torch.manual_seed(spec.seed)
    model = build_model(spec.arch, topology=spec.topology).to(device, dtype)
    if spec.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model, make_sgd(model.parameters(), device, spec.profile.optimizer)


def train_loader(spec: RunSpec, train: Split, device: torch.device, dtype: torch.dtype) -> TrainLoader:
    """The run's training split on ``device``, in the order and augmentation its seed draws."""
    profile = spec.profile
    return TrainLoader(
        train,
        batch_size=profile.batch_size,
        seed=spec.seed,
        device=device,
        padding=profile.crop_padding,
        flip=profile.horizontal_flip,
        channels_last=spec.channels_last,
        dtype=dtype,
    )


def device_test_batches(spec: RunSpec, test: Split, device: torch.device, dtype: torch.dtype) -> list:
    """The test split on ``device``, in the run's evaluation batches."""
    return eval_batches(
        test, batch_size=spec.profile.eval_batch_size, device=device, channels_last=spec.channels_last, dtype=dtype
    )


def restore(state: dict, model: TwoHeadNet, optimizer: Optimizer, device: torch.device) -> None:
    """Load a checkpoint's state (:func:`~harness.training.trainer.checkpoint_state` wrote it; CPU
    tensors: the optimizer state follows its parameters' device; RNG states must stay CPU byte
    tensors, as ``set_rng_state`` requires on every device)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng_cpu"])
    if device.type == "cuda" and state.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(state["rng_cuda"], device)


def start_run(
    spec: RunSpec,
    run: RunDir,
    device: torch.device,
    dtype: torch.dtype,
    checkpointer: Checkpointer,
    at_most: int | None = None,
) -> tuple[TwoHeadNet, Optimizer, Resume | None, list[str]]:
    """The model and optimizer the run goes on from: its last intact checkpoint's (of at most
    ``at_most`` epochs), else fresh (the checkpoint directory is then cleared). ``metrics.jsonl`` is
    made to match. Never raises for a damaged checkpoint: the notes say what was found."""
    resume, notes = checkpointer.load(at_most)  # never raises; tensors on the CPU
    model, optimizer = fresh_model(spec, device, dtype)
    if resume is not None:
        try:
            restore(resume.state, model, optimizer, device)
        except Exception as e:  # noqa: BLE001  (intact file, unusable content: e.g. written by another build)
            notes.append(
                f"the checkpoint after epoch {resume.epochs_done} cannot be used "
                f"({type(e).__name__}: {e}); starting from scratch"
            )
            resume = None
            model, optimizer = fresh_model(spec, device, dtype)  # the failed restore may have changed it
    if resume is None:
        checkpointer.clear()
    run.restart_history(resume.history if resume is not None else [])
    return model, optimizer, resume, notes


def announce_start(
    observer: RunObserver, spec: RunSpec, resume: Resume | None, notes: list[str], steps_per_epoch: int
) -> tuple[int, list[EpochMetrics]]:
    """Tell ``observer`` the run starts (and from which checkpoint, or why from none); returns the
    first epoch to train and the metrics of the epochs before it."""
    observer.on_event(spec, RunStarted(spec.profile.epochs * steps_per_epoch))
    first_epoch, history = (resume.epochs_done, list(resume.history)) if resume is not None else (0, [])
    if resume is not None or notes:
        observer.on_event(spec, RunResumed(first_epoch, first_epoch * steps_per_epoch, tuple(notes)))
    return first_epoch, history


def loss_worker(spec: RunSpec, run: RunDir, submission: Path, sandbox: Sandbox) -> LossWorker:
    """The run's loss worker (not started), with its profile's time limits."""
    profile = spec.profile
    return LossWorker(
        submission,
        sandbox=sandbox,
        seed=spec.seed,
        optimizer=profile.optimizer,
        dtype=spec.dtype,
        log_path=run.worker_log,
        start_timeout=profile.worker_start_timeout_s,
        call_timeout=profile.worker_call_timeout_s,
        run_budget=profile.worker_run_budget_s,
    )


def start_worker(worker: LossWorker, resume: Resume | None) -> None:
    """Start the loss worker; on resume, rebuild the loss module's state from what the trainer sent
    (never from anything the worker wrote)."""
    try:
        worker.start()
    except WorkerError as e:
        raise RunFailed(f"starting the loss module: {e}") from e
    if resume is not None:
        try:
            worker.replay(resume.frames)
        except WorkerError as e:
            raise RunFailed(f"replaying the first {resume.epochs_done} epochs to the loss module: {e}") from e


def epoch_metrics(epoch: int, lr: float, train, test: TestMetrics, seconds: float) -> EpochMetrics:
    """An epoch's metrics from its training means (:class:`~harness.training.trainer.TrainMeans`)
    and its test split."""
    return EpochMetrics(
        epoch=epoch,
        lr=lr,
        train_fine_loss=train.fine_loss,
        train_coarse_loss=train.coarse_loss,
        train_combined_loss=train.combined_loss,
        weight_fine=train.w_fine,
        weight_coarse=train.w_coarse,
        test_fine_loss=test.fine_loss,
        test_coarse_loss=test.coarse_loss,
        test_fine_acc=test.fine_acc,
        test_coarse_acc=test.coarse_acc,
        seconds=seconds,
    )


def record_epoch(run: RunDir, history: list[EpochMetrics], metrics: EpochMetrics, log: StepLog | None) -> None:
    """An epoch's metrics, in the run's history and ``metrics.jsonl``, and its logged steps on disk."""
    history.append(metrics)
    run.append_metrics(metrics)
    if log is not None:
        log.flush()


def best_fine_acc(history: list[EpochMetrics]) -> float:
    return max(m.test_fine_acc for m in history)


def final_loss_state(worker: LossWorker, run: RunDir) -> dict[str, list[float]] | None:
    """The loss module's final parameters, written to ``loss_state.json`` (a report only: a worker
    that cannot say them does not fail the run)."""
    try:
        state = worker.state()
    except WorkerError:
        return None
    run.write_loss_state(state)
    return state


def completed(history: list[EpochMetrics]) -> RunResult:
    """The result of a run that trained every epoch: the training time of every epoch, the ones
    before a resume included (their checkpointed metrics)."""
    return RunResult.from_epochs(history, sum(m.seconds for m in history))


def failed(
    spec: RunSpec,
    e: Exception,
    submission: Path,
    run: RunDir,
    checkpointer: Checkpointer,
    history: list[EpochMetrics],
    start: float,
) -> RunResult:
    """The failed result, and ``failure.txt`` saying why. A failure the submission or its worker
    caused (an error, a crash, a limit, a divergence: :class:`RunFailed`) clears the checkpoint, so the
    next attempt starts from epoch 0 and failing on purpose cannot buy a re-draw of the epochs since
    the last checkpoint (a killed process or a Ctrl-C, not RunFailed, still resumes)."""
    epochs_done = len(history)
    if isinstance(e, RunFailed):
        reason = as_user_path(str(e), submission)
        checkpointer.clear()
        note = "(a new attempt starts from epoch 0: failures caused by the submission are not resumed)\n"
    else:
        reason = f"internal error at epoch {epochs_done}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=-8)}"
        note = ""
    run.write_failure(f"{spec.submission} failed on {spec.arch}, seed {spec.seed}:\n{reason}\n{note}")
    return RunResult.failed(reason.strip(), epochs_done=epochs_done, wall_seconds=time.perf_counter() - start)


def write_result(run: RunDir, result: RunResult, device: torch.device) -> RunResult:
    """The result with the device it ran on and its float32 arithmetic, written to the run's directory."""
    result = result.model_copy(update={"device": device_name(device), "float32_math": float32_math(device)})
    run.write_result(result)
    return result
