"""The ``harness`` command: one thin function per subcommand; exit codes are
:class:`harness.errors.ExitCode` (0 ok, 1 a run failed or the setup is wrong, 2 a submission
was rejected or the command line is wrong, 130 interrupted).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from rich.console import Console
from rich.markup import escape

import harness.cli.parser as cli_parser
from harness.errors import ExitCode, HarnessError, SubmissionRejected, UsageError
from harness.protocol import TOPOLOGIES, get_profile
from harness.util.text import SafeConsole

# Commands that do not train (--help, leaderboard, runs, compare, retire) start without torch: every
# import of the training stack (torch, the trainer, the data, the sandboxes' workers) is inside the
# command that needs it. tests/test_cli_start.py holds this.


def _evaluate_options(args: argparse.Namespace, kind: str):
    """The options model from the command line; what was not given keeps the model's default, and
    the model checks the combination."""
    from harness.evaluate.options import EvaluateOptions

    given = dict(
        profile=get_profile(args.profile),
        phase=args.phase,
        topology=args.topology,
        archs=tuple(args.arch or ()),
        seeds=tuple(args.seed or ()),
        device=args.device,
        data_dir=args.data_dir,
        runs_dir=args.runs_dir,
        leaderboard=args.leaderboard,
        sandbox=args.sandbox,
        hidden_dir=args.hidden_dir,
        kind=kind,
        force=args.force,
        precision=args.precision,
        compile=args.compile,
        deterministic=args.deterministic,
        fuse=args.fuse,
        jobs=args.jobs,
        executor=args.executor,
        ray_address=args.ray_address,
        gpus_per_run=args.gpus_per_run,
        cpus_per_run=args.cpus_per_run,
        ray_retries=args.ray_retries,
        name=getattr(args, "name", None),
        baselines_dir=getattr(args, "baselines_dir", None),
    )
    return EvaluateOptions(**{k: v for k, v in given.items() if v is not None})


def cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    from harness.evaluate.run import evaluate

    opts = _evaluate_options(args, "submission")
    if not args.json:
        return evaluate(args.paths, opts, console)
    import json

    from harness.api import run_to_result

    # standard output carries only the JSON (a rejected file too); progress and tables go to standard error
    err = SafeConsole(stderr=True, highlight=False, width=console.width, soft_wrap=console.soft_wrap)
    result = run_to_result(args.paths, opts, err)
    sys.stdout.write(json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")
    return result.exit_code


def cmd_baselines(args: argparse.Namespace, console: Console) -> int:
    """Evaluate every file in the baselines directory (or those named by --only) as ordinary
    submissions whose rows say ``kind=baseline``, all their runs scheduled together."""
    from harness.evaluate.run import evaluate

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
    from harness.evaluate.names import check_name
    from harness.isolation.check import directory_message, interface_check, static_check
    from harness.isolation.sandbox import resolve_sandbox
    from harness.report import console as show

    sandbox, warning = resolve_sandbox(args.sandbox, allow_fallback=True)
    if warning:
        show.warning(console, warning)
    err = SafeConsole(stderr=True, highlight=False, width=console.width, soft_wrap=console.soft_wrap)
    rejected = []
    for path in args.paths:
        try:
            if path.is_dir():
                raise SubmissionRejected(directory_message(path))
            check_name(path.name, str(path))
            static_check(path)
            report = interface_check(path, sandbox=sandbox)
        except SubmissionRejected as e:
            if len(args.paths) == 1:
                raise
            err.print(f"[red]rejected:[/] {escape(str(e))}")
            rejected.append(path)
            continue
        show.capabilities(console, report)
        console.print(f"[green]{escape(str(path))}: ok[/] ({report.probes} probe calls in sandbox '{sandbox.name}')")
    if rejected:
        err.print(
            f"[red]{len(rejected)} of {len(args.paths)} file(s) rejected:[/] {escape(', '.join(map(str, rejected)))}"
        )
        return ExitCode.REJECTED
    files = " ".join(map(str, args.paths))
    console.print(
        f"[dim]next: harness evaluate {escape(files)} --profile smoke (a minute on synthetic data), or without "
        "--profile for the full protocol[/]"
    )
    return ExitCode.OK


def cmd_image_build(args: argparse.Namespace, console: Console) -> int:
    from harness.tools.image import build_image

    build_image(base_image=args.base_image, bootstrap=args.bootstrap, console=console)
    return ExitCode.OK


def cmd_data_synthetic(args: argparse.Namespace, console: Console) -> int:
    from harness.training.data import write_synthetic

    out = write_synthetic(args.dir, seed=args.seed, n_train=args.train_size, n_test=args.test_size)
    console.print(
        f"wrote synthetic CIFAR-100-format data ({args.train_size:,} train / {args.test_size:,} test) to {out}"
    )
    return ExitCode.OK


def cmd_data_download(args: argparse.Namespace, console: Console) -> int:
    from harness.training.data import default_data_dir, download_cifar100

    root = args.data_dir or default_data_dir("cifar100")
    out = download_cifar100(root)
    console.print(f"CIFAR-100 is at {out}")
    return ExitCode.OK


def cmd_leaderboard(args: argparse.Namespace, console: Console) -> int:
    from harness import report
    from harness import results as leaderboard

    path = _leaderboard_path(args)
    versions = args.versions or ()
    rep = report.build(leaderboard.read_rows(path), args.phase, args.profile, retired(path), args.arch, versions)
    if args.format == "table" and args.output is None:
        report.render_table(rep, console)
        return ExitCode.OK
    fmt = "markdown" if args.format == "table" else args.format
    text = report.render(rep, fmt, args.runs_dir)
    if args.output is None:
        sys.stdout.write(text)
    else:
        from harness.util.fileio import write_atomic

        args.output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.output, text.encode("utf-8"))
        console.print(
            f"wrote {args.output} ({fmt}, {len(rep.entries)} measured entries, profile {rep.profile}, "
            f"phase {rep.phase})"
        )
    return ExitCode.OK


def retired(path):
    from harness.results.retired import retired as read

    return read(path)


def _leaderboard_path(args: argparse.Namespace):
    """The leaderboard a view reads; when the user named none and several are here, one line on
    standard error says which and how to choose another."""
    from harness import results as leaderboard
    from harness.results.store import choice_note

    path = args.leaderboard or leaderboard.find_default(args.profile)
    if not path.exists():
        raise UsageError(f"{path} does not exist; evaluate something first or pass --leaderboard CSV")
    note = None if args.leaderboard or args.profile else choice_note(path)
    if note:
        SafeConsole(stderr=True, highlight=False).print(f"[dim]{escape(note)}[/]")
    return path


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from harness import report
    from harness import results as leaderboard
    from harness.report.compare import find_entry, render_compare

    path = _leaderboard_path(args)
    versions = args.versions or ()
    rep = report.build(leaderboard.read_rows(path), args.phase, args.profile, retired(path), versions=versions)
    a, b = find_entry(rep, args.a), find_entry(rep, args.b)
    if a is b:
        raise UsageError(f"{args.a!r} and {args.b!r} name the same entry")
    render_compare(console, rep, a, b)
    return ExitCode.OK


def cmd_retire(args: argparse.Namespace, console: Console) -> int:
    """Hide a file version from every view (or show it again): an event appended beside the
    leaderboard, whose rows stay as they are."""
    from harness import results as leaderboard
    from harness.report.runs import submission_rows
    from harness.results.aggregate import REFERENCE_BASELINE
    from harness.results.retired import append_event

    path = _leaderboard_path(args)
    target, _, sha = args.target.partition("@")
    name, mine, current = submission_rows(leaderboard.read_rows(path), target, path, args.profile, args.kind)
    kinds = sorted(set(mine["kind"]))
    if len(kinds) > 1:
        raise UsageError(f"{name} names a submission and a baseline in {path}; choose one with --kind")
    kind = kinds[0] if kinds else (args.kind or "submission")
    if kind == "baseline" and name == REFERENCE_BASELINE and not args.restore:
        raise UsageError(
            f"the baseline {name} is the reference every Δ and cost is computed against; retiring it "
            "would remove every comparison. Evaluate the version you want to keep: the views date and "
            "mark the others superseded"
        )
    versions = sorted(set(mine["submission_sha256"]))
    listed = ", ".join(f"{name}@{v[:8]}" for v in versions) or "none"
    if sha:
        chosen = [v for v in versions if v.startswith(sha.lower())]
    elif current is not None:
        if current not in versions:
            raise UsageError(
                f"the file {target} as it is now (version {current[:8]}) has no row in {path}; name the "
                f"version to retire as NAME@SHA: {listed}"
            )
        chosen = [current]
    else:
        chosen = versions
    if len(chosen) != 1:
        raise UsageError(
            f"{args.target!r} names {len(chosen)} of the versions of {name} in {path} ({listed}): name one as NAME@SHA"
        )
    action = "restore" if args.restore else "retire"
    append_event(path, action, kind, name, chosen[0], args.reason or "")
    what = "shown again in" if args.restore else "hidden from"
    console.print(
        f"{escape(name)} @{chosen[0][:8]} is {what} the views of {escape(str(path))} (its rows stay; "
        f"events in {escape(str(path))}.retired)"
    )
    return ExitCode.OK


def cmd_runs(args: argparse.Namespace, console: Console) -> int:
    from harness import results as leaderboard
    from harness.report.runs import render_runs

    path = _leaderboard_path(args)
    render_runs(
        console, leaderboard.read_rows(path), args.submission, path, args.runs_dir, retired(path), profile=args.profile
    )
    return ExitCode.OK


def cmd_models(args: argparse.Namespace, console: Console) -> int:
    """Parameters per architecture and topology, and how many of them both tasks share."""
    import torch

    from harness.report import console as show
    from harness.training.models import available_archs, build_model, load_hidden_archs, parameter_counts

    if args.hidden:
        load_hidden_archs(args.hidden_dir)
    counts = []
    for arch in available_archs(include_hidden=args.hidden):
        for topology in TOPOLOGIES:
            torch.manual_seed(0)
            counts.append((arch, topology, *parameter_counts(build_model(arch, topology=topology))))
    show.models(console, counts)
    return ExitCode.OK


def cmd_migrate(args: argparse.Namespace, console: Console) -> int:
    from harness.protocol import SCHEMA_VERSION
    from harness.results import migrate

    dst, version = migrate(args.path, args.output)
    console.print(f"wrote {dst}: schema version {version} -> {SCHEMA_VERSION}; {args.path} is unchanged")
    return ExitCode.OK


def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    import json

    import torch

    from harness.tools.bench import run_bench
    from harness.training.device import resolve_device
    from harness.training.models import available_archs, get_arch, load_hidden_archs

    archs = args.arch or ["resnet20", "resnet56"]
    if any(a not in available_archs() for a in archs):  # e.g. vgg16bn: the hidden ones, when there
        load_hidden_archs(args.hidden_dir)
    for a in archs:
        get_arch(a)  # a clear error for an unknown name
    device = resolve_device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (6 if device.type == "cpu" else 60)
    workers = args.reference_workers if args.reference_workers is not None else (0 if device.type == "cpu" else 4)
    log = (lambda m: console.print(f"[dim]{escape(m)}[/]")) if not args.json else (lambda m: print(m, file=sys.stderr))
    if args.jobs:
        sweep = tuple(dict.fromkeys(args.jobs))
        if any(n < 1 for n in sweep):
            raise UsageError("--jobs counts must be at least 1")
    else:
        sweep = (1, 2, 4) if device.type == "cuda" else ()
    rep = run_bench(
        archs=archs,
        device=device,
        precision=args.precision,
        channels_last=args.channels_last,
        steps=steps,
        rounds=args.rounds,
        batch=args.batch,
        sandbox_name=args.sandbox,
        calls=args.calls,
        eval_images=args.eval_images,
        reference_workers=workers,
        log=log,
        jobs=sweep,
    )
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
        return ExitCode.OK
    from harness.report import console as show

    show.bench(console, rep, rounds=args.rounds, steps=steps)
    return ExitCode.OK


def cmd_selftest(args: argparse.Namespace, console: Console) -> int:
    from harness.tools.selftest import run_selftest

    return run_selftest(
        args.device,
        sandbox=args.sandbox,
        inductor=args.inductor,
        keep=args.keep,
        say=lambda m: console.print(escape(m), soft_wrap=True),
    )


def cmd_serve(args: argparse.Namespace, console: Console) -> int:
    from harness.serve import commands

    return commands.serve(args, console)


def cmd_participants_add(args: argparse.Namespace, console: Console) -> int:
    from harness.serve import commands

    return commands.participants_add(args, console)


def cmd_participants_list(args: argparse.Namespace, console: Console) -> int:
    from harness.serve import commands

    return commands.participants_list(args, console)


def cmd_participants_revoke(args: argparse.Namespace, console: Console) -> int:
    from harness.serve import commands

    return commands.participants_revoke(args, console)


def cmd_submit(args: argparse.Namespace, console: Console) -> int:
    from harness.serve import commands

    return commands.submit(args, console)


COMMANDS = {name: fn for name, fn in globals().items() if name.startswith("cmd_")}


def build_parser() -> argparse.ArgumentParser:
    return cli_parser.build_parser(COMMANDS)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop as cleanly as on Ctrl-C (kept ignored under nohup)
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _interrupt)
    console = SafeConsole(highlight=False)
    err = SafeConsole(stderr=True, highlight=False)
    columns = os.environ.get("COLUMNS", "")
    for c in (console, err):
        if not c.is_terminal:  # logs: one line per message; tables up to COLUMNS when set, else 160 columns
            c.width = int(columns) if columns.isdigit() and int(columns) > 0 else 160
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
        err.print(
            "[yellow]interrupted[/]: loss workers were stopped; finished runs are in the leaderboard and "
            "unfinished ones keep their per-epoch checkpoints: run the same command again to resume them"
        )
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
