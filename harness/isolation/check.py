"""Checking a submission: the static check (on the host, nothing imported) and the
interface check (through the loss worker, in the sandbox).

The contract itself is documented in ``submissions/README.md`` and enforced per call by
:mod:`harness.isolation.worker`; the interface check drives a fresh worker through a short probe
schedule with exactly the messages training sends.
"""

from __future__ import annotations

import ast
import math
import random
import stat
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import SubmissionRejected
from harness.isolation.client import LossWorker, StepRequest, WorkerError
from harness.isolation.inputs import input_problems, input_warnings
from harness.isolation.rules import allowed_imports, find_problems
from harness.isolation.sandbox import Sandbox
from harness.protocol import PROFILES, OptimizerSettings, Profile
from harness.util.hints import GRAMIAN_HINT, file_reaches_for_gradients, reaches_for_gradients
from harness.util.userpath import as_user_path

MAX_FILE_BYTES = 64 * 1024
CIFAR100_TRAIN = 50_000  # training images of CIFAR-100 (the full protocol: 391 steps of 128 per epoch)


_TOO_DEEP = (
    "{path}: nested too deeply to be checked (an expression or block nested hundreds of levels deep); "
    "split it into smaller expressions"
)


def directory_message(path: Path) -> str:
    return f"{path} is a directory; pass the submission file(s) in it, e.g. {path}/*.py"


def read_submission(path: Path) -> bytes:
    """The bytes of the submission file at ``path``, read once: it must be a regular file, and at most
    ``MAX_FILE_BYTES + 1`` bytes are ever read (a huge or endless file costs nothing). Raises
    :class:`SubmissionRejected` with what is wrong."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SubmissionRejected(f"{path}: no such file") from None
    except OSError as e:
        raise SubmissionRejected(f"{path}: cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(info.st_mode):
        raise SubmissionRejected(directory_message(path))
    if not stat.S_ISREG(info.st_mode):
        raise SubmissionRejected(f"{path}: not a regular file (a submission is one .py file)")
    if info.st_size > MAX_FILE_BYTES:
        raise SubmissionRejected(f"{path}: {info.st_size:,} bytes; a submission is at most {MAX_FILE_BYTES:,} bytes")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise SubmissionRejected(f"{path}: cannot be read ({e.strerror or e})") from None
    if len(data) > MAX_FILE_BYTES:  # it grew after the stat
        raise SubmissionRejected(
            f"{path}: over {MAX_FILE_BYTES:,} bytes; a submission is at most {MAX_FILE_BYTES:,} bytes"
        )
    return data


def static_check(path: Path, data: bytes | None = None) -> ast.Module:
    """Reject files that cannot be a submission before anything is imported.

    Checks: the file is a regular file of at most ``MAX_FILE_BYTES`` (:func:`read_submission`; or
    ``data``, its bytes read already); it is UTF-8 Python that parses; it defines a top-level
    ``class MultiTaskLoss`` with a base class; it breaks none of the rules of
    :mod:`harness.isolation.rules`; and its ``forward`` reads from ``**kwargs`` only inputs the harness
    can see and pass (:mod:`harness.isolation.inputs`). All problems are listed.
    """
    path = Path(path)
    if data is None:
        data = read_submission(path)
    try:
        tree = ast.parse(data.decode("utf-8"), filename=str(path))
    except UnicodeDecodeError as e:
        raise SubmissionRejected(f"{path}: not UTF-8 text ({e})") from None
    except SyntaxError as e:
        raise SubmissionRejected(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except (RecursionError, MemoryError):
        raise SubmissionRejected(_TOO_DEEP.format(path=path)) from None
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MultiTaskLoss"]
    if not classes:
        others = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.bases]
        hint = ""
        if others:
            found = ", ".join(f"`{n.name}` (line {n.lineno})" for n in others)
            hint = (
                f"; it defines {found}: rename the one the harness should train to MultiTaskLoss "
                "(the harness builds that class, with no arguments)"
            )
        raise SubmissionRejected(f"{path}: defines no top-level `class MultiTaskLoss(nn.Module)`{hint}")
    if not classes[0].bases:
        raise SubmissionRejected(f"{path}:{classes[0].lineno}: MultiTaskLoss must derive from nn.Module")
    try:
        problems = sorted(find_problems(tree) + input_problems(tree), key=lambda p: p.line)
    except RecursionError:
        raise SubmissionRejected(_TOO_DEEP.format(path=path)) from None
    if problems:
        listing = "\n".join(f"  {path}:{p.line}: {p.message}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        allowed = f"\nallowed imports: {allowed_imports()}" if any("import" in p.message[:30] for p in problems) else ""
        hint = f"\n{GRAMIAN_HINT}" if reaches_for_gradients(tree) else ""
        raise SubmissionRejected(
            f"{path}: the static check found {len(problems)} problem(s):\n{listing}{more}"
            f"{allowed}{hint}\nsee submissions/README.md for what a submission may use"
        )
    return tree


@dataclass(frozen=True)
class CheckReport:
    capabilities: tuple[str, ...]
    num_params: int
    probes: int
    head_loss: bool = False
    warnings: tuple[
        str, ...
    ] = ()  # what the file probably meant but will not get (inputs.input_warnings, the worker's)
    call_seconds: float | None = None  # median time of a probe call, round trip included (the first two left out)

    def projection(self, profile: Profile | None = None) -> WorkerTime | None:
        """The worker time of one run of ``profile`` (default: the full protocol) at this speed."""
        return None if self.call_seconds is None else WorkerTime.of(self.call_seconds, profile or PROFILES["full"])


@dataclass(frozen=True)
class WorkerTime:
    """A run's projected worker time against its budget: the profile's calls (one per training
    step) times the measured seconds per call. A run whose worker waits longer than the budget fails."""

    profile: str
    calls: int
    steps_per_epoch: int
    seconds: float
    budget: float

    @classmethod
    def of(cls, call_seconds: float, profile: Profile) -> WorkerTime | None:
        images = profile.train_subset or (CIFAR100_TRAIN if profile.dataset == "cifar100" else None)
        if images is None:
            return None
        steps = math.ceil(images / profile.batch_size)
        return cls(
            profile.name,
            steps * profile.epochs,
            steps,
            call_seconds * steps * profile.epochs,
            profile.worker_run_budget_s,
        )

    @property
    def exhausted_at_epoch(self) -> int | None:
        """The (1-based) epoch in which the budget would run out; None if it lasts."""
        if self.seconds <= self.budget:
            return None
        return math.floor(self.budget / (self.seconds / self.calls) / self.steps_per_epoch) + 1


FIRST_EPOCHS = 4  # probed with several steps each, as the start of a run
STEPS = 3  # steps per probed epoch at the start


def probe_epochs(total_epochs: int) -> list[tuple[int, int]]:
    """``(epoch, steps)`` of the probe: the first :data:`FIRST_EPOCHS` epochs with several steps each
    (at least 12 calls in all), then every later epoch of the profile's run once, in order. Every
    epoch a run visits is visited, so a curriculum by absolute epoch (``if epoch < 5``) and state
    kept per epoch (DWA's previous epochs) meet what training gives them."""
    first = min(total_epochs, FIRST_EPOCHS)
    steps = max(STEPS, -(-FIRST_EPOCHS * STEPS // first))
    return [(e, steps) for e in range(first)] + [(e, 1) for e in range(first, total_epochs)]


def _probe_schedule(total_epochs: int = 200) -> list[StepRequest]:
    """Plausible, decreasing losses, random Gramians (some conflicting), head norms, accuracies and
    losses after the update (none on the first call), over every epoch of a run of ``total_epochs``
    (the profile's; :func:`probe_epochs`)."""
    rng = random.Random(0)
    out: list[StepRequest] = []
    schedule = probe_epochs(total_epochs)
    steps_per_epoch = schedule[0][1]
    k = 0
    for epoch, steps in schedule:
        lr = OptimizerSettings().lr_at(epoch, total_epochs)
        for i in range(steps):
            step = epoch * steps_per_epoch + i
            decay = max(0.85**k, 0.05)
            k += 1
            gf = [rng.gauss(0, 1) for _ in range(8)]
            gc = [rng.gauss(0, 1) - (0.8 * a if step % 2 else 0.0) for a in gf]
            dot = sum(a * b for a, b in zip(gf, gc))
            out.append(
                StepRequest(
                    epoch=epoch,
                    total_epochs=total_epochs,
                    step=step,
                    steps_per_epoch=steps_per_epoch,
                    lr=lr,
                    fine_loss=math.log(100) * decay + 0.05 * rng.random(),
                    coarse_loss=math.log(20) * decay + 0.05 * rng.random(),
                    gramian=(sum(a * a for a in gf), dot, sum(b * b for b in gc)),
                    batch_accuracy=(min(1.0, 0.01 + 0.07 * step), min(1.0, 0.05 + 0.08 * step)),
                    head_sq_norms=(0.3 * decay, 0.2 * decay),
                    after_losses=(out[-1].fine_loss * 0.97, out[-1].coarse_loss * 0.98) if out else None,
                )
            )
    return out


def interface_check(
    path: Path,
    *,
    sandbox: Sandbox,
    log_path: Path | None = None,
    start_timeout: float = 120.0,
    call_timeout: float = 30.0,
    shown_as: Path | None = None,
    total_epochs: int = 200,
) -> CheckReport:
    """Construct the module in a fresh worker and call ``forward`` on the probe schedule.

    Every reply must satisfy the per-call contract (enforced by the worker) and at least
    one must have a non-zero ``dL/d fine_loss``. Raises :class:`SubmissionRejected`, naming the
    file ``shown_as`` (the user's path, when ``path`` is a copy), also in the worker's traceback.
    """
    path, shown = Path(path), Path(shown_as or path)
    probes = _probe_schedule(total_epochs)
    weights, seconds = [], []
    try:
        with LossWorker(
            path,
            sandbox=sandbox,
            seed=0,
            optimizer=OptimizerSettings(),
            log_path=log_path,
            start_timeout=start_timeout,
            call_timeout=call_timeout,
        ) as worker:
            ready = worker.start()
            for req in probes:
                t0 = time.perf_counter()
                reply = worker.step(req)
                seconds.append(time.perf_counter() - t0)
                weights.append((reply.w_fine, reply.w_coarse))
            worker.scalars()  # a scalars() that breaks its contract is found here, not in training
    except WorkerError as e:
        hint = f"\n{GRAMIAN_HINT}" if file_reaches_for_gradients(path) else ""
        raise SubmissionRejected(
            f"{shown}: interface check failed ({e.stage}): {as_user_path(str(e), shown, path)}{hint}"
        ) from None
    if all(w[0] == 0.0 for w in weights):
        raise SubmissionRejected(
            f"{shown}: interface check failed: the loss never depends on fine_loss "
            f"(dL/d fine_loss was 0 on all {len(probes)} probe calls)"
        )
    try:
        warnings = tuple(input_warnings(ast.parse(path.read_text(encoding="utf-8"))))
    except (OSError, SyntaxError, UnicodeDecodeError, RecursionError):
        warnings = ()  # the static check reports a file it cannot read
    return CheckReport(
        ready.capabilities,
        ready.num_params,
        len(probes),
        ready.head_loss,
        ready.warnings + warnings,
        statistics.median(seconds[2:] or seconds),
    )
