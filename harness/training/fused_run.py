"""The runs of one (entry, architecture, settings) that differ only in their seed, carried out as
one fused training (:mod:`harness.training.fused`): :func:`run_fused` is :func:`run_one` for
several seeds at once, and leaves exactly what their separate runs leave (each seed's run directory,
settings, metrics, steps, checkpoints, worker log, result, failure; one row per seed).

Each seed checkpoints after every epoch into its own directory, as a separate run does, and a run
interrupted fused resumes fused, bit for bit (``tests/test_fused.py``). Seeds whose checkpoints
are at different epochs (a damaged newest checkpoint in one of them) are carried out one after
another with :func:`run_one` instead. A seed that fails (its worker, its divergence) leaves the
fused model; the others go on. An epoch's time is the fused epoch's, shared equally by the seeds
that trained in it (their rows' ``wall_seconds`` add up to the time the fused run took).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from harness.events import ONE_STEP, EpochDone, RunObserver
from harness.isolation.sandbox import Sandbox
from harness.protocol import RunResult, RunSpec
from harness.results.rundir import RunDir
from harness.training.checkpoint import Checkpointer
from harness.training.compiled import no_silent_fallback
from harness.training.data import Split
from harness.training.fused import FusedNet, Seed, evaluate_fused, train_fused_epoch
from harness.training.lifecycle import (
    RunOutcome,
    announce_start,
    best_fine_acc,
    completed,
    device_test_batches,
    epoch_metrics,
    failed,
    final_loss_state,
    loss_worker,
    record_epoch,
    set_up_device,
    start_run,
    start_worker,
    train_loader,
    write_result,
)
from harness.training.sharing import CpuShare
from harness.training.steplog import StepLog
from harness.training.trainer import TrainMeans, resumed_carry, run_one, save_checkpoint


def fusable(specs: list[RunSpec]) -> bool:
    """Whether these runs can be trained as one: two or more seeds of one entry, file version,
    architecture and settings, on one device."""
    first = specs[0]
    same = {"seed", "submission_path", "fused"}
    return (
        len(specs) > 1
        and len({s.seed for s in specs}) == len(specs)
        and all(s.model_dump(exclude=same) == first.model_dump(exclude=same) for s in specs)
    )


def run_fused(
    specs: list[RunSpec],
    *,
    submission: Path,
    train: Split,
    test: Split,
    run_dirs: list[RunDir],
    sandbox: Sandbox,
    observers: list[RunObserver] | None = None,
    threads: int = 0,
) -> list[RunOutcome]:
    """Train the seeds of ``specs`` (:func:`fusable`) as one fused model; one outcome per spec, in
    order. Never raises for a failure of the submission or a worker (that seed's outcome is then
    ``failed``); an internal error fails every seed still training."""
    if not fusable(specs):
        raise ValueError("run_fused needs two or more seeds of one entry, architecture and settings")
    observers = observers or [RunObserver() for _ in specs]
    runs = list(run_dirs)
    first, profile = specs[0], specs[0].profile
    for spec, run in zip(specs, runs):
        run.start(spec)
    start = time.perf_counter()
    device, dtype = set_up_device(first)
    checkpointers = [Checkpointer(run.checkpoint, spec) for spec, run in zip(specs, runs)]
    started = [start_run(spec, run, device, dtype, ck) for spec, run, ck in zip(specs, runs, checkpointers)]
    done = [resume.epochs_done if resume else 0 for _, _, resume, _ in started]
    if max(done) == min(done) + 1:  # stopped between two seeds' checkpoints: the previous one is kept
        started = [
            start_run(spec, run, device, dtype, ck, at_most=min(done)) if e > min(done) else got
            for spec, run, ck, got, e in zip(specs, runs, checkpointers, started, done)
        ]
        done = [resume.epochs_done if resume else 0 for _, _, resume, _ in started]
    if len(set(done)) > 1:
        return [  # the seeds stopped at different epochs: each goes on from its own checkpoint
            run_one(spec, submission=submission, train=train, test=test, run_dir=run, sandbox=sandbox,
                    observer=observer, threads=threads)
            for spec, run, observer in zip(specs, runs, observers)
        ]  # fmt: skip
    models = [model for model, _, _, _ in started]
    optimizers = [optimizer for _, optimizer, _, _ in started]
    resumes = [resume for _, _, resume, _ in started]
    fused = FusedNet(models)
    if first.compile:
        fused.compile()
    loaders = [train_loader(spec, train, device, dtype) for spec in specs]
    test_batches = device_test_batches(first, test, device, dtype)
    steps = loaders[0].steps_per_epoch
    started_at = [
        announce_start(observer, spec, resume, notes, steps)
        for spec, observer, resume, (_, _, _, notes) in zip(specs, observers, resumes, started)
    ]
    first_epoch, histories = started_at[0][0], [history for _, history in started_at]  # every seed's first epoch
    carries = [resumed_carry(resume, device) for resume in resumes]
    results: dict[int, RunResult] = {}
    loss_states: dict[int, dict[str, list[float]] | None] = {}

    def fail(s: int, e: Exception) -> None:
        results[s] = failed(specs[s], e, submission, runs[s], checkpointers[s], histories[s], start)

    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(no_silent_fallback(first.compile))
            share = stack.enter_context(CpuShare(device.type, cap=threads))
            workers = [
                stack.enter_context(loss_worker(spec, run, submission, sandbox)) for spec, run in zip(specs, runs)
            ]
            logs: list[StepLog | None] = [None] * len(specs)
            for s, (worker, resume) in enumerate(zip(workers, resumes)):
                try:
                    start_worker(worker, resume)
                    logs[s] = StepLog(runs[s], worker, steps, profile.epochs, first_epoch)
                except Exception as e:  # noqa: BLE001  (this seed's worker; the others go on)
                    fail(s, e)
            fused.drop(list(results))

            def on_step(s: int):
                def done() -> None:
                    observers[s].on_event(specs[s], ONE_STEP)
                    if s == fused.active[0]:
                        share.tick()

                return done

            for epoch in range(first_epoch, profile.epochs):
                if not fused.active:
                    break
                epoch_start = time.perf_counter()
                lr = profile.optimizer.lr_at(epoch, profile.epochs)
                seeds = []
                for s in fused.active:
                    for group in optimizers[s].param_groups:
                        group["lr"] = lr
                    seeds.append(Seed(s, loaders[s], optimizers[s], workers[s], logs[s], TrainMeans(), carries[s],
                                      on_step(s)))  # fmt: skip
                ended = train_fused_epoch(
                    fused, seeds, epoch=epoch, total_epochs=profile.epochs, precision=first.precision
                )
                for s, failure in ended.items():
                    fail(s, failure)
                if not fused.active:
                    break
                tests = evaluate_fused(fused, test_batches, precision=first.precision)
                seconds = (time.perf_counter() - epoch_start) / len(seeds)  # the fused epoch, shared
                for seed, test_metrics in zip([seed for seed in seeds if seed.s in fused.active], tests):
                    s, metrics = seed.s, epoch_metrics(epoch, lr, seed.means, test_metrics, seconds)
                    record_epoch(runs[s], histories[s], metrics, logs[s])
                    if epoch + 1 < profile.epochs:
                        save_checkpoint(checkpointers[s], epoch + 1, histories[s], workers[s], models[s], optimizers[s],
                                        device, carries[s])  # fmt: skip
                for s in fused.active:  # after every seed's checkpoint (an observer may stop the run)
                    observers[s].on_event(specs[s], EpochDone(histories[s][-1], best_fine_acc(histories[s])))
            for s in list(fused.active):
                loss_states[s] = final_loss_state(workers[s], runs[s])
                results[s] = completed(histories[s])
                checkpointers[s].clear()
    except Exception as e:  # noqa: BLE001  (an internal error: every seed still training fails with it)
        for s in range(len(specs)):
            if s not in results:
                fail(s, e)
    finally:
        for checkpointer in checkpointers:
            checkpointer.settle()  # a stopped run leaves no write under way
    outcomes = []
    for s in range(len(specs)):
        result = write_result(runs[s], results[s], device)
        outcomes.append(RunOutcome(result, histories[s], models[s], loss_states.get(s)))
    return outcomes
