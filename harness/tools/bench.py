"""``harness bench``: how close the training path is to the hardware limit, measured side by
side in one process.

For each architecture on the chosen device, three training loops with the same model, batch
size, optimizer settings and precision are timed in interleaved rounds (so that a noisy
neighbour slows all three alike), each over a fixed number of steps after a warm-up:

- ``harness``: the harness's own :func:`harness.training.trainer.train_one_epoch` (device-resident loader
  with batched crop and flip, the loss-worker round trip in the sandbox, the optimizer);
- ``bare``: pre-made batches already on the device, fixed weights, no loader, no augmentation,
  no worker: the limit the harness should approach;
- ``reference``: a conventional pipeline: a ``torch.utils.data.DataLoader`` over a ``Dataset``
  that crops and flips each image with plain torch ops, copying batches to the device.

Plus the loss worker's round trip (median and p99 over many calls) per available sandbox, and
the evaluation time of one full test split (10,000 images). Throughputs are images per second;
the median over rounds is reported.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.isolation.client import LossWorker, StepRequest
from harness.isolation.sandbox import Sandbox, available_sandboxes, get_sandbox, resolve_sandbox
from harness.protocol import PROFILES, Precision
from harness.tools.bench_report import ArchBench, BenchReport, JobsThroughput, RoundTrip
from harness.training.data import CIFAR100_MEAN, CIFAR100_STD, Split, TrainLoader, eval_batches
from harness.training.device import (
    autocast_context,
    device_for_slot,
    resolve_precision,
    set_fp32_precision,
    threads_per_run,
)
from harness.training.models import build_model, hidden_source, load_arch_file
from harness.training.trainer import evaluate, train_one_epoch

EQUAL_WEIGHTING = (
    "import torch.nn as nn\n\nclass MultiTaskLoss(nn.Module):\n"
    "    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):\n"
    "        return fine_loss + coarse_loss\n"
)


def synthetic_split(n: int, seed: int = 0) -> Split:
    """CIFAR-shaped random data in memory (the benchmark measures speed, not learning)."""
    g = torch.Generator().manual_seed(seed)
    fine = torch.randint(0, 100, (n,), generator=g)
    return Split(
        images=torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8), fine=fine, coarse=fine % 20
    )


class _CropFlipDataset(torch.utils.data.Dataset):
    """The conventional per-image pipeline: pad 4, random 32x32 crop, random flip, normalise."""

    def __init__(self, split: Split) -> None:
        self.split = split
        self.mean = torch.tensor(CIFAR100_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CIFAR100_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        img = F.pad(self.split.images[i], (4, 4, 4, 4))
        top, left = (int(v) for v in torch.randint(0, 9, (2,)))
        img = img[:, top : top + 32, left : left + 32]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        x = (img.float() / 255 - self.mean) / self.std
        return x, self.split.fine[i], self.split.coarse[i]


def _cycle(make: Callable[[], Iterator]) -> Iterator:
    while True:
        yield from make()


class _Harness:
    """The harness's training step: real loader, real worker in ``sandbox``, real optimizer."""

    def __init__(
        self,
        model,
        optimizer,
        split: Split,
        batch: int,
        device,
        channels_last: bool,
        precision,
        sandbox: Sandbox,
        submission: Path,
        optimizer_settings,
    ) -> None:
        self.model, self.optimizer, self.precision = model, optimizer, precision
        dtype = _dtype(precision)
        self.loader = TrainLoader(
            split, batch_size=batch, seed=0, device=device, channels_last=channels_last, dtype=dtype
        )
        self.worker = LossWorker(
            submission, sandbox=sandbox, seed=0, optimizer=optimizer_settings, dtype=str(dtype).removeprefix("torch.")
        )
        self.ready = self.worker.start()
        self.epoch = 0

    def run(self, steps: int) -> None:
        """``steps`` steps of the real epoch loop (the loader's split holds exactly that many batches)."""
        if self.loader.steps_per_epoch != steps:
            raise ValueError(f"the loader holds {self.loader.steps_per_epoch} batches per epoch, not {steps}")
        train_one_epoch(
            self.model,
            self.loader,
            self.optimizer,
            self.worker,
            epoch=self.epoch,
            total_epochs=1_000_000,
            precision=self.precision,
        )
        self.epoch += 1

    def close(self) -> None:
        self.worker.close()


def _bare_steps(model, optimizer, batches, precision, device_type: str) -> Callable[[int], None]:
    it = _cycle(lambda: iter(batches))

    def run(steps: int) -> None:
        model.train()
        for _ in range(steps):
            x, y_f, y_c = next(it)
            with autocast_context(precision, device_type):
                fine_logits, coarse_logits = model(x)
                loss = F.cross_entropy(fine_logits, y_f) + F.cross_entropy(coarse_logits, y_c)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss.item()  # the harness synchronises once per step too (the worker exchange)

    return run


def _reference_steps(
    model, optimizer, split: Split, batch: int, device, channels_last: bool, precision, workers: int
) -> Callable[[int], None]:
    loader = torch.utils.data.DataLoader(
        _CropFlipDataset(split),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    it = _cycle(lambda: iter(loader))
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def run(steps: int) -> None:
        model.train()
        for _ in range(steps):
            x, y_f, y_c = next(it)
            x = x.to(device, _dtype(precision), non_blocking=True).contiguous(memory_format=fmt)
            y_f, y_c = y_f.to(device, non_blocking=True), y_c.to(device, non_blocking=True)
            with autocast_context(precision, device.type):
                fine_logits, coarse_logits = model(x)
                loss = F.cross_entropy(fine_logits, y_f) + F.cross_entropy(coarse_logits, y_c)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss.item()

    return run


def _dtype(precision: str) -> torch.dtype:
    """The parameters' and inputs' dtype: float64 for ``fp64``, float32 otherwise (bf16 is autocast)."""
    return torch.float64 if precision == "fp64" else torch.float32


def _fresh(arch: str, device, channels_last: bool, settings, precision: str = "fp32"):
    torch.manual_seed(0)
    model = build_model(arch).to(device, _dtype(precision))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (torch's stubs lack it)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=settings.momentum, weight_decay=settings.weight_decay)
    return model, opt


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[int], None], steps: int, device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn(steps)
    _sync(device)
    return time.perf_counter() - t


def bench_arch(
    arch: str,
    *,
    device: torch.device,
    precision: Precision,
    channels_last: bool,
    steps: int,
    rounds: int,
    batch: int,
    sandbox: Sandbox,
    submission: Path,
    eval_images: int,
    reference_workers: int,
    log: Callable[[str], None],
) -> ArchBench:
    settings = PROFILES["full"].optimizer
    split = synthetic_split(steps * batch, seed=1)
    loops: dict[str, Callable[[int], None]] = {}
    closers = []
    model, opt = _fresh(arch, device, channels_last, settings, precision)
    h = _Harness(model, opt, split, batch, device, channels_last, precision, sandbox, submission, settings)
    closers.append(h.close)
    loops["harness"] = h.run
    model, opt = _fresh(arch, device, channels_last, settings, precision)
    premade = list(
        TrainLoader(
            split, batch_size=batch, seed=0, device=device, channels_last=channels_last, dtype=_dtype(precision)
        ).epoch(0)
    )
    loops["bare"] = _bare_steps(model, opt, premade, precision, device.type)
    model, opt = _fresh(arch, device, channels_last, settings, precision)
    loops["reference"] = _reference_steps(model, opt, split, batch, device, channels_last, precision, reference_workers)
    times: dict[str, list[float]] = {name: [] for name in loops}
    try:
        for fn in loops.values():  # warm-up: allocator, kernels, worker, DataLoader workers
            _timed(fn, steps, device)
        for r in range(rounds):
            for name, fn in loops.items():
                times[name].append(_timed(fn, steps, device))
            log(
                f"{arch}: round {r + 1}/{rounds}: "
                + ", ".join(f"{n} {steps * batch / times[n][-1]:.0f} img/s" for n in loops)
            )
    finally:
        for close in closers:
            close()
    test = synthetic_split(eval_images, seed=2)
    batches = eval_batches(
        test,
        batch_size=1000 if device.type == "cpu" else 2000,
        device=device,
        channels_last=channels_last,
        dtype=_dtype(precision),
    )
    evaluate(model, batches[:1], precision=precision)  # warm-up
    _sync(device)
    t = time.perf_counter()
    evaluate(model, batches, precision=precision)
    _sync(device)
    eval_s = time.perf_counter() - t
    img_s = {n: steps * batch / statistics.median(ts) for n, ts in times.items()}
    return ArchBench(
        arch=arch,
        batch_size=batch,
        steps=steps,
        rounds=rounds,
        harness_img_s=img_s["harness"],
        bare_img_s=img_s["bare"],
        reference_img_s=img_s["reference"],
        eval_s_per_epoch=eval_s,
        eval_images=eval_images,
    )


def roundtrip(sandbox: Sandbox, submission: Path, calls: int) -> RoundTrip:
    """Median and p99 of one step exchange with a running worker (send a step, read the reply)."""
    settings = PROFILES["full"].optimizer
    with LossWorker(submission, sandbox=sandbox, seed=0, optimizer=settings) as worker:
        worker.start()
        samples = []
        for i in range(calls + 50):
            req = StepRequest(
                epoch=0, total_epochs=200, step=i, steps_per_epoch=391, lr=0.1, fine_loss=4.6, coarse_loss=3.0
            )
            t = time.perf_counter_ns()
            worker.step(req)
            if i >= 50:  # warm-up
                samples.append((time.perf_counter_ns() - t) / 1000)
    samples.sort()
    return RoundTrip(
        sandbox=sandbox.name,
        calls=calls,
        median_us=statistics.median(samples),
        p99_us=samples[min(len(samples) - 1, math.ceil(0.99 * len(samples)) - 1)],
    )


def run_bench(
    *,
    archs: list[str],
    device: torch.device,
    precision: Precision,
    channels_last: bool,
    steps: int,
    rounds: int,
    batch: int,
    sandbox_name: str,
    calls: int,
    eval_images: int,
    reference_workers: int,
    log: Callable[[str], None],
    jobs: tuple[int, ...] = (),
) -> BenchReport:
    start = time.perf_counter()
    precision = resolve_precision(precision, device)  # refuses tf32 off CUDA
    set_fp32_precision(precision, device)
    sandbox, _ = resolve_sandbox(sandbox_name, allow_fallback=True)
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        submission = Path(tmp) / "equal_weighting.py"
        submission.write_text(EQUAL_WEIGHTING)
        results = []
        for arch in archs:
            results.append(
                bench_arch(
                    arch,
                    device=device,
                    precision=precision,
                    channels_last=channels_last,
                    steps=steps,
                    rounds=rounds,
                    batch=batch,
                    sandbox=sandbox,
                    submission=submission,
                    eval_images=eval_images,
                    reference_workers=reference_workers,
                    log=log,
                )
            )
        sweep = []
        for arch in archs:
            for n in jobs:
                sweep.append(
                    jobs_throughput(
                        arch,
                        n,
                        device=device,
                        precision=precision,
                        channels_last=channels_last,
                        steps=steps,
                        batch=batch,
                        sandbox=sandbox,
                        submission=submission,
                    )
                )
                log(f"{arch} with --jobs {n}: {sweep[-1].aggregate_img_s:.0f} img/s in all")
        trips = []
        for name in available_sandboxes():
            box = get_sandbox(name)
            if not box.available():
                continue
            try:
                trips.append(roundtrip(box, submission, calls))
            except Exception as e:  # noqa: BLE001  (one backend failing must not lose the other figures)
                log(f"worker round trip in '{name}' could not be measured: {type(e).__name__}: {e}")
                continue
            log(f"worker round trip in '{name}': median {trips[-1].median_us:.0f} us, p99 {trips[-1].p99_us:.0f} us")
    return BenchReport(
        device=str(device),
        precision=precision,
        channels_last=channels_last,
        sandbox=sandbox.name,
        threads=torch.get_num_threads(),
        archs=results,
        roundtrips=trips,
        seconds=time.perf_counter() - start,
        jobs=sweep,
    )


def _jobs_child(
    arch: str,
    device: str,
    precision: str,
    channels_last: bool,
    steps: int,
    batch: int,
    sandbox_name: str,
    submission: str,
    threads: int,
    start,
    out,
    arch_source: tuple[str, str] | None = None,
) -> None:
    """One of N concurrent harness loops: warm up, wait for the others, time ``steps`` steps.
    ``arch_source``: the file defining a hidden architecture (this process loads it)."""
    if threads:
        torch.set_num_threads(threads)
    if arch_source is not None:
        load_arch_file(arch, *arch_source)
    dev = torch.device(device)
    set_fp32_precision(precision, dev)  # a spawned process starts with torch's defaults
    settings = PROFILES["full"].optimizer
    model, opt = _fresh(arch, dev, channels_last, settings, precision)
    split = synthetic_split(steps * batch, seed=1)
    h = _Harness(
        model, opt, split, batch, dev, channels_last, precision, get_sandbox(sandbox_name), Path(submission), settings
    )
    try:
        h.run(steps)  # warm-up
        start.wait()
        elapsed = _timed(h.run, steps, dev)
    finally:
        h.close()
    out.put(steps * batch / elapsed)


def jobs_throughput(
    arch: str,
    jobs: int,
    *,
    device: torch.device,
    precision: str,
    channels_last: bool,
    steps: int,
    batch: int,
    sandbox: Sandbox,
    submission: Path,
) -> JobsThroughput:
    """Aggregate throughput of ``jobs`` processes each running the harness loop on ``device``."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(jobs + 1), ctx.Queue()
    threads = threads_per_run(jobs, device.type)
    procs = [
        ctx.Process(
            target=_jobs_child,
            args=(
                arch,
                device_for_slot(str(device), i),
                precision,
                channels_last,
                steps,
                batch,
                sandbox.name,
                str(submission),
                threads,
                start,
                out,
                hidden_source(arch),
            ),
        )
        for i in range(jobs)
    ]
    for p in procs:
        p.start()
    try:
        start.wait(timeout=600)
        rates = [out.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
    return JobsThroughput(arch=arch, jobs=jobs, aggregate_img_s=sum(rates), per_job_img_s=sum(rates) / jobs)
