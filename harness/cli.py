"""The ``harness`` command: one thin function per subcommand; exit codes are
:class:`harness.errors.ExitCode` (0 ok, 1 a run failed or the setup is wrong, 2 a submission
was rejected or the command line is wrong, 130 interrupted).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness.data import default_data_dir, download_cifar100, write_synthetic
from harness.device import determinism_env
from harness.errors import ExitCode, HarnessError, SubmissionRejected, UsageError
from harness.protocol import PROFILES, TOPOLOGIES, get_profile
from harness.sandbox import available_sandboxes, resolve_sandbox
from harness.submission import interface_check, static_check

DEFAULT_BASELINES_DIR = Path(__file__).resolve().parent.parent / "baselines"


def _evaluate_options(args: argparse.Namespace, kind: str):
    """The options model from the command line; what was not given keeps the model's default, and
    the model checks the combination."""
    from harness.plan import EvaluateOptions

    given = dict(
        profile=get_profile(args.profile), phase=args.phase, topology=args.topology, archs=tuple(args.arch or ()),
        seeds=tuple(args.seed or ()), device=args.device, data_dir=args.data_dir, runs_dir=args.runs_dir,
        leaderboard=args.leaderboard, sandbox=args.sandbox, hidden_dir=args.hidden_dir, kind=kind, force=args.force,
        precision=args.precision, compile=args.compile, deterministic=args.deterministic, jobs=args.jobs,
        executor=args.executor, ray_address=args.ray_address, gpus_per_run=args.gpus_per_run,
        cpus_per_run=args.cpus_per_run, ray_retries=args.ray_retries,
    )
    return EvaluateOptions(**{k: v for k, v in given.items() if v is not None})


def cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    from harness.evaluate import evaluate

    return evaluate(args.paths, _evaluate_options(args, "submission"), console)


def cmd_baselines(args: argparse.Namespace, console: Console) -> int:
    """Evaluate every file in the baselines directory (or those named by --only) as ordinary
    submissions whose rows say ``kind=baseline``, all their runs scheduled together."""
    from harness.evaluate import evaluate

    files = sorted(p for p in args.baselines_dir.glob("*.py") if not p.name.startswith("_"))
    known = {p.stem: p for p in files}
    if not known:
        raise UsageError(f"no baselines found in {args.baselines_dir}")
    unknown = [n for n in args.only or () if n not in known]
    if unknown:
        raise UsageError(f"unknown baseline(s) {', '.join(unknown)}; available: {', '.join(known)}")
    chosen = [known[n] for n in args.only] if args.only else files
    return evaluate(chosen, _evaluate_options(args, "baseline"), console)


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    """Check each file (static check, then the interface in the sandbox); every file is checked
    even after one is rejected. Exit 2 if any was rejected."""
    from harness.report import console as show

    sandbox, warning = resolve_sandbox(args.sandbox, allow_fallback=True)
    if warning:
        show.warning(console, warning)
    err = Console(stderr=True, highlight=False, width=console.width, soft_wrap=console.soft_wrap)
    rejected = []
    for path in args.paths:
        try:
            static_check(path)
            report = interface_check(path, sandbox=sandbox)
        except SubmissionRejected as e:
            if len(args.paths) == 1:
                raise
            err.print(f"[red]rejected:[/] {escape(str(e))}")
            rejected.append(path)
            continue
        show.capabilities(console, report)
        console.print(f"[green]{path}: ok[/] ({report.probes} probe calls in sandbox '{sandbox.name}')")
    if rejected:
        err.print(f"[red]{len(rejected)} of {len(args.paths)} file(s) rejected:[/] {', '.join(map(str, rejected))}")
        return ExitCode.REJECTED
    return ExitCode.OK


def cmd_image_build(args: argparse.Namespace, console: Console) -> int:
    from harness.sandbox.image import build_image

    build_image(base_image=args.base_image, bootstrap=args.bootstrap, console=console)
    return ExitCode.OK


def cmd_data_synthetic(args: argparse.Namespace, console: Console) -> int:
    out = write_synthetic(args.dir, seed=args.seed, n_train=args.train_size, n_test=args.test_size)
    console.print(f"wrote synthetic CIFAR-100-format data ({args.train_size:,} train / {args.test_size:,} test) to {out}")
    return ExitCode.OK


def cmd_data_download(args: argparse.Namespace, console: Console) -> int:
    root = args.data_dir or default_data_dir("cifar100")
    out = download_cifar100(root)
    console.print(f"CIFAR-100 is at {out}")
    return ExitCode.OK


def cmd_leaderboard(args: argparse.Namespace, console: Console) -> int:
    from harness import leaderboard, report

    path = args.leaderboard or leaderboard.find_default()
    if not path.exists():
        raise UsageError(f"{path} does not exist; evaluate something first or pass --leaderboard CSV")
    rep = report.build(leaderboard.read_rows(path), args.phase, args.profile)
    if args.format == "table" and args.output is None:
        report.render_table(rep, console)
        return ExitCode.OK
    fmt = "markdown" if args.format == "table" else args.format
    text = report.render(rep, fmt, args.runs_dir)
    if args.output is None:
        sys.stdout.write(text)
    else:
        from harness.fileio import write_atomic

        args.output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.output, text.encode("utf-8"))
        console.print(f"wrote {args.output} ({fmt}, {len(rep.entries)} measured entries, profile {rep.profile}, "
                      f"phase {rep.phase})")
    return ExitCode.OK


def cmd_models(args: argparse.Namespace, console: Console) -> int:
    """Parameters per architecture and topology, and how many of them both tasks share."""
    import torch

    from harness.models import available_archs, build_model, count_parameters, load_hidden_archs, shared_parameters
    from harness.report import console as show

    if args.hidden:
        load_hidden_archs(args.hidden_dir)
    counts = []
    for arch in available_archs(include_hidden=args.hidden):
        for topology in TOPOLOGIES:
            torch.manual_seed(0)
            model = build_model(arch, topology=topology)
            params = list(model.parameters())
            shared = sum(p.numel() for p, s in zip(params, shared_parameters(model)) if s)
            counts.append((arch, topology, count_parameters(params), shared))
    show.models(console, counts)
    return ExitCode.OK


def cmd_migrate(args: argparse.Namespace, console: Console) -> int:
    from harness.leaderboard import migrate
    from harness.protocol import SCHEMA_VERSION

    dst, version = migrate(args.path, args.output)
    console.print(f"wrote {dst}: schema version {version} -> {SCHEMA_VERSION}; {args.path} is unchanged")
    return ExitCode.OK


def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    import json

    import torch

    from harness.bench import run_bench
    from harness.device import resolve_device

    device = resolve_device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (6 if device.type == "cpu" else 60)
    workers = args.reference_workers if args.reference_workers is not None else (0 if device.type == "cpu" else 4)
    log = (lambda m: console.print(f"[dim]{escape(m)}[/]")) if not args.json else (lambda m: print(m, file=sys.stderr))
    if args.jobs:
        try:
            sweep = tuple(int(n) for n in args.jobs.split(","))
        except ValueError:
            raise UsageError(f"--jobs takes a comma-separated list of counts like 1,2,4, got {args.jobs!r}") from None
        if any(n < 1 for n in sweep):
            raise UsageError("--jobs counts must be at least 1")
    else:
        sweep = (1, 2, 4) if device.type == "cuda" else ()
    rep = run_bench(archs=args.arch or ["resnet20", "resnet56"], device=device, precision=args.precision,
                    channels_last=args.channels_last, steps=steps, rounds=args.rounds, batch=args.batch,
                    sandbox_name=args.sandbox, calls=args.calls, eval_images=args.eval_images,
                    reference_workers=workers, log=log, jobs=sweep)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
        return ExitCode.OK
    from harness.report import console as show

    show.bench(console, rep, rounds=args.rounds, steps=steps)
    return ExitCode.OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="check a submission, train with it and append to the leaderboard")
    ev.add_argument("paths", type=Path, nargs="+", metavar="PATH",
                    help="submission file(s) defining class MultiTaskLoss, e.g. submissions/*.py; "
                         "the runs of all files are scheduled together")
    _add_evaluate_options(ev)
    ev.set_defaults(func=cmd_evaluate)

    bl = sub.add_parser("baselines", help="evaluate the baselines (rows marked kind=baseline)")
    bl.add_argument("--only", action="append", metavar="NAME", help="only this baseline (repeatable), e.g. dwa")
    bl.add_argument("--baselines-dir", type=Path, default=DEFAULT_BASELINES_DIR,
                    help="where the baseline files are (default: baselines/ of the source checkout)")
    _add_evaluate_options(bl)
    bl.set_defaults(func=cmd_baselines)

    ck = sub.add_parser("check", help="check a submission's file and interface without training")
    ck.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="one or more submission files")
    ck.add_argument("--sandbox", default="auto", choices=["auto", *available_sandboxes()])
    ck.set_defaults(func=cmd_check)

    lb = sub.add_parser("leaderboard", help="aggregate the leaderboard: mean ± std, n, score, rank, significance")
    lb.add_argument("--leaderboard", type=Path, metavar="CSV",
                    help="default: leaderboard.csv, else the only leaderboard-*.csv in this directory")
    lb.add_argument("--format", default="table", choices=["table", "markdown", "csv", "html"])
    lb.add_argument("--output", type=Path, metavar="PATH", help="write to PATH instead of the terminal")
    lb.add_argument("--phase", default="public", choices=["public", "final"],
                    help="final shows the hidden architecture's column")
    lb.add_argument("--profile", help="which profile's rows, when the CSV holds several")
    lb.add_argument("--runs-dir", type=Path, default=Path("runs"),
                    help="where the run directories are, for the HTML report's curves (default: runs)")
    lb.set_defaults(func=cmd_leaderboard)

    bn = sub.add_parser("bench", help="training throughput against a bare loop and a conventional pipeline, "
                                      "worker round trip, evaluation time")
    bn.add_argument("--arch", action="append", metavar="NAME", help="architecture (repeatable; default resnet20 "
                    "and resnet56)")
    bn.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bn.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"],
                    help="as for evaluate (default fp32)")
    bn.add_argument("--channels-last", default=True, action=argparse.BooleanOptionalAction)
    bn.add_argument("--batch", type=int, default=128)
    bn.add_argument("--steps", type=int, help="steps per timed round (default: 6 on a CPU, 60 on a GPU)")
    bn.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds; the median is reported")
    bn.add_argument("--calls", type=int, default=2000, help="worker round trips timed per sandbox")
    bn.add_argument("--eval-images", type=int, default=10_000, help="test images for the evaluation timing")
    bn.add_argument("--sandbox", default="auto", choices=["auto", *available_sandboxes()],
                    help="sandbox of the harness step's worker (round trips are measured for every available one)")
    bn.add_argument("--reference-workers", type=int, help="DataLoader workers of the conventional pipeline "
                    "(default: 0 on a CPU, where workers would take the training's cores; 4 on a GPU)")
    bn.add_argument("--jobs", metavar="N,N,...", help="also measure N concurrent runs on the device, e.g. 1,2,4 "
                    "(default: 1,2,4 on a GPU, none on a CPU)")
    bn.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    bn.add_argument("--json", action="store_true", help="print the figures as JSON (progress goes to stderr)")
    bn.set_defaults(func=cmd_bench)

    md = sub.add_parser("models", help="parameter counts per architecture and topology (--topology), and what "
                                       "both tasks share (what the Gramian covers)")
    md.add_argument("--hidden", action="store_true", help="include the hidden architectures (vgg16bn)")
    md.add_argument("--hidden-dir", type=Path, help="where the hidden architectures are (default: ./hidden of the "
                    "source checkout)")
    md.set_defaults(func=cmd_models)

    mg = sub.add_parser("migrate", help="convert a leaderboard of an older schema version (the original is kept)")
    mg.add_argument("path", type=Path)
    mg.add_argument("--output", type=Path, help="default: PATH with .v<version> before the suffix")
    mg.set_defaults(func=cmd_migrate)

    image = sub.add_parser("image", help="the Docker sandbox image").add_subparsers(dest="image_command", required=True)
    ib = image.add_parser("build", help="build the sandbox image (wheelhouse on the host, no network in the build)")
    ib.add_argument("--base-image", default="harness-base:bookworm",
                    help="local base image with python3 3.11 (default: harness-base:bookworm)")
    ib.add_argument("--bootstrap", action="store_true",
                    help="build the base image from Debian with debootstrap when it is missing")
    ib.set_defaults(func=cmd_image_build)

    data = sub.add_parser("data", help="get the dataset").add_subparsers(dest="data_command", required=True)
    syn = data.add_parser("synthetic", help="write synthetic CIFAR-100-format data to DIR")
    syn.add_argument("dir", type=Path)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--train-size", type=int, default=5000)
    syn.add_argument("--test-size", type=int, default=1000)
    syn.set_defaults(func=cmd_data_synthetic)
    dl = data.add_parser("download", help="download CIFAR-100 (needs torchvision: pip install 'harness[download]')")
    dl.add_argument("--data-dir", type=Path)
    dl.set_defaults(func=cmd_data_download)
    return parser


def _add_evaluate_options(ev: argparse.ArgumentParser) -> None:
    """The options of evaluate and baselines. A flag left out is None (False for a switch) and takes the
    options model's default (:class:`harness.plan.EvaluateOptions`), which the help texts quote."""
    from harness.plan import EvaluateOptions

    def default(name: str) -> object:
        return EvaluateOptions.model_fields[name].default

    ev.add_argument("--profile", default="full", choices=list(PROFILES),
                    help="full: the task card's protocol (default); smoke: quick demo on synthetic data; "
                         "tiny: for tests")
    ev.add_argument("--phase", choices=["public", "final"],
                    help=f"final adds the hidden architecture (vgg16bn); default {default('phase')}")
    ev.add_argument("--topology", choices=list(TOPOLOGIES),
                    help=f"how the two tasks share the network (seed 003): shared (the task card: one backbone, two "
                         f"heads), independent (a backbone per task, the control), reuse-coarse / reuse-fine (one "
                         f"head also reads the other head's logits), shared-reuse-*; recorded in every row and kept "
                         f"apart in the standings; `harness models` lists parameter counts; "
                         f"default {default('topology')}")
    ev.add_argument("--arch", action="append", metavar="NAME", help="only this architecture (repeatable)")
    ev.add_argument("--seed", action="append", type=int, metavar="N", help="only this seed (repeatable)")
    ev.add_argument("--device", choices=["auto", "cpu", "cuda"],
                    help=f"auto: CUDA when torch sees a GPU, else the CPU (default {default('device')})")
    ev.add_argument("--data-dir", type=Path, help="directory containing cifar-100-python/ "
                    "(default: $HARNESS_DATA_DIR, else the user cache dir)")
    ev.add_argument("--runs-dir", type=Path, help=f"where run directories go (default: {default('runs_dir')})")
    ev.add_argument("--leaderboard", type=Path,
                    help="CSV to append to (default: leaderboard.csv, or leaderboard-PROFILE.csv)")
    ev.add_argument("--sandbox", choices=["auto", *available_sandboxes()],
                    help=f"how the submission is isolated: auto picks a real sandbox; none runs it as a plain "
                         f"process (trusted code only); default {default('sandbox')}")
    ev.add_argument("--precision", choices=["fp32", "tf32", "bf16", "fp64"],
                    help="fp32 (the full profile's default; IEEE float32, on a GPU too), tf32 (TensorFloat-32 "
                         "matmuls and convolutions, CUDA only), bf16 (bfloat16 autocast, float32 parameters), "
                         "fp64 (for verification); recorded in every row and kept apart in the standings")
    ev.add_argument("--compile", action="store_true", help="run the model through torch.compile (recorded)")
    ev.add_argument("--deterministic", action="store_true",
                    help="deterministic kernels (torch.use_deterministic_algorithms, cuDNN deterministic); "
                         "slower on a GPU; recorded")
    ev.add_argument("--jobs", type=int, metavar="N",
                    help="run up to N runs at once, each in its own process, sharing the device (spread over the "
                         "GPUs when there are several); default 1, or with --executor ray as many as fit")
    ev.add_argument("--executor", choices=["local", "ray"],
                    help=f"local: this machine; ray: each run a Ray task, on a local Ray started for the evaluation "
                         f"or the cluster of --ray-address (pip install 'harness[ray]'); default {default('executor')}")
    ev.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (e.g. auto, or ray://host:10001)")
    ev.add_argument("--gpus-per-run", type=float, metavar="F",
                    help="Ray: GPUs each run asks for; a fraction shares a GPU (0.25: four runs per GPU); "
                         "default 1 on CUDA, else 0")
    ev.add_argument("--cpus-per-run", type=float, metavar="N",
                    help="Ray: CPUs each run asks for (default 1 with a GPU, else the CPUs shared between the runs)")
    ev.add_argument("--ray-retries", type=int, metavar="K",
                    help=f"Ray: resubmit a lost task (worker or node died) up to K times, resuming from its "
                         f"checkpoint (default {default('ray_retries')})")
    ev.add_argument("--force", action="store_true",
                    help="re-run runs that already have an ok row for this file version (default: skip them)")
    ev.add_argument("--hidden-dir", type=Path, help="where the hidden architectures are (default: ./hidden "
                    "of the source checkout)")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name, value in determinism_env(getattr(args, "deterministic", False)).items():
        os.environ.setdefault(name, value)  # before CUDA starts, i.e. later; --jobs children inherit it
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop as cleanly as on Ctrl-C (kept ignored under nohup)
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _interrupt)
    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    for c in (console, err):
        if not c.is_terminal:  # logs: one line per message, tables up to 160 columns
            c.width = 160
            c.soft_wrap = True
    try:
        return args.func(args, console)
    except SubmissionRejected as e:
        err.print(f"[red]rejected:[/] {escape(str(e))}")
        return ExitCode.REJECTED
    except UsageError as e:
        err.print(f"[red]error:[/] {escape(str(e))}")
        return ExitCode.REJECTED
    except HarnessError as e:
        err.print(f"[red]error:[/] {escape(str(e))}")
        return ExitCode.RUN_FAILED
    except OSError as e:  # a path that cannot be read or written, a full disk...
        err.print(f"[red]error:[/] {escape(str(e))}")
        return ExitCode.RUN_FAILED
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: loss workers were stopped; finished runs are in the leaderboard and "
                  "unfinished ones keep their per-epoch checkpoints: run the same command again to resume them")
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
