"""What the commands print as they go: an evaluation's plan, checks, failures and results, its
standing against the baselines, and the benchmark's tables. Every text that came from a worker
was made printable where it was received; everything here is escaped for Rich markup."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.isolation.check import CheckReport
from harness.protocol import Phase, Profile, VersionKey
from harness.report import run_table
from harness.results.record import Recorded
from harness.util.userpath import as_user_path


def capabilities(console: Console, report: CheckReport, profile: Profile | None = None) -> None:
    """What the interface check found, its warnings, and the worker time a run of ``profile`` (and of
    the full protocol) would take at the measured speed, against the run's budget."""
    caps = ", ".join(report.capabilities) or "none (losses, epoch and total_epochs only)"
    heads = "head_loss (the task heads follow it)" if report.head_loss else "the loss itself"
    console.print(
        f"interface ok: {report.num_params} loss-module parameters; extra inputs: {caps}; heads trained on: {heads}"
    )
    for text in report.warnings:
        warning(console, text)
    projections = [report.projection()] + ([report.projection(profile)] if profile and profile.name != "full" else [])
    for t in filter(None, projections):
        line = (
            f"worker time: {(report.call_seconds or 0.0) * 1e3:.2f} ms per call (median of the probe calls); "
            f"a {t.profile} "
            f"run makes {t.calls:,} calls: ~{t.seconds:,.0f} s of its {t.budget:,.0f} s budget"
        )
        if t.exhausted_at_epoch is not None:
            warning(
                console,
                f"{line}. It would run out in epoch {t.exhausted_at_epoch} and the run would fail: "
                "make forward faster (per-step Python loops and .item() calls are the usual cause)",
            )
        elif t.seconds > t.budget / 2:
            warning(console, f"{line}: over half of it; a slower machine could run out")
        else:
            console.print(f"[dim]{escape(line)}[/]")


def rejected(console: Console, error: Exception) -> None:
    console.print(f"[red]rejected:[/] {escape(str(error))}")


def warning(console: Console, text: str) -> None:
    console.print(f"[bold yellow]warning:[/] {escape(text)}")


def planned_file(console: Console, f, lb_path: Path) -> None:
    """What is known of a :class:`~harness.evaluate.plan.PlannedFile` before its check: runs skipped."""
    for (arch, seed), finished in f.skipped.items():
        console.print(
            f"skipping {escape(f.entry.name)} {arch} seed {seed}: already in {escape(str(lb_path))} (ok, "
            f"finished {finished}) for this version of the entry; --force re-runs it"
        )


def recovered(console: Console, f, lb_path: Path) -> None:
    """The rows of an earlier evaluation of a checked :class:`~harness.evaluate.plan.PlannedFile`:
    recorded now, or still unwritten."""
    for row in f.recovered:
        console.print(
            f"recorded {escape(row.submission)} {row.arch} seed {row.seed} in {escape(str(lb_path))}: the "
            f"run finished at {row.finished_at} but its row could not be written then"
        )
    for row, problem, kept in f.unwritten:
        _unwritten(console, f"{row.submission} {row.arch} seed {row.seed}", lb_path, problem, kept)


def _unwritten(console: Console, label: str, lb_path: Path, problem: str, kept: Path | None) -> None:
    then = (
        (
            f"the row is kept in {kept}: run the same command again once that is fixed and it is recorded "
            "without training again"
        )
        if kept
        else "the run will be run again by the same command"
    )
    console.print(
        f"[red]could not write the row of {escape(label)} to {escape(str(lb_path))}:[/] {escape(problem)}\n"
        f"  {escape(then)}"
    )


def recorded(console: Console, rec: Recorded, lb_path: Path, shown: tuple[Path, Path] | None = None) -> None:
    """A run has ended and its row was appended (or could not be). ``shown``: ``(the copy that ran,
    the user's path)``: the reason names the user's file (failure.txt keeps the copy's path)."""
    label = f"{rec.spec.submission} {rec.spec.arch} seed {rec.spec.seed}"
    if rec.result.status == "failed":
        reason = as_user_path(rec.result.reason or "", shown[1], shown[0]) if shown else rec.result.reason
        console.print(
            f"[red]run failed:[/] {escape(f'{label}: {reason}')}\n"
            f"  details: {escape(str(rec.run.failure))}; worker output: {escape(str(rec.run.worker_log))}"
        )
    if rec.problem is not None:
        _unwritten(console, label, lb_path, rec.problem, rec.kept)


def results(console: Console, records: Sequence[Recorded], lb_path: Path, *, several: bool = False) -> None:
    """The table of this evaluation's runs, and how many rows were appended. Epochs are counted from 1,
    as in the progress lines and the plots (the CSV's ``best_epoch`` is 0-indexed). The runs of one
    file are listed together, in the order they ended; on a narrow terminal the table is the compact
    one of :mod:`harness.report.run_table`."""
    console.print(run_table.results_table(console, records, several=several))
    unwritten = sum(not rec.written for rec in records)
    console.print(
        f"appended {len(records) - unwritten} row(s) to {escape(str(lb_path))}"
        + (f"; [red]{unwritten} row(s) could not be written[/] (see above)" if unwritten else "")
    )
    homes = sorted({str(rec.run.path.parent.parent) for rec in records})  # <entry-version dir>/<phase>/<run>
    if homes:
        console.print(
            "run files (settings, per-epoch metrics, per-step loss weights and scalars, worker log, failure.txt):\n"
            + "\n".join(f"  {escape(home)}" for home in homes)
        )


def standing(console: Console, lb_path: Path, profile: Profile, phase: Phase, versions: Collection[VersionKey]) -> None:
    """These entries' file versions against the baselines already in the
    leaderboard (same profile and phase)."""
    from harness import report
    from harness import results as leaderboard
    from harness.results.retired import retired

    rep = report.build(leaderboard.read_rows(lb_path), phase, profile.name, retired(lb_path))
    mine = [e for e in rep.entries if e.version_key in versions]
    groups = {e.settings for e in mine}  # the baselines ranked with them: the same comparison groups
    others = [e for e in rep.entries if e.kind == "baseline" and e.version_key not in versions and e.settings in groups]
    if not mine:
        return
    if not others and not any(e.kind == "baseline" for e in mine):  # evaluating baselines: they are the baselines
        console.print(
            f"no baselines in {escape(str(lb_path))} for profile {profile.name} yet: `harness baselines --only "
            f"equal_weighting --profile {profile.name}` adds the reference the others are compared with "
            f"(`harness baselines --profile {profile.name}`: all of them)"
        )
    rep = dataclasses.replace(rep, entries=mine + others, references=[])
    console.print(f"standing in {escape(str(lb_path))} (profile {profile.name}, phase {phase}):")
    report.render_table(rep, console, highlight=versions)


def bench(console: Console, rep, *, rounds: int, steps: int) -> None:
    """The tables of a :class:`~harness.tools.bench.BenchReport`."""
    table = Table(
        title=f"training throughput on {rep.device} ({rep.precision}, channels_last={rep.channels_last}, "
        f"{rep.threads} threads; harness worker in '{rep.sandbox}')",
        title_justify="left",
    )
    for col in (
        "arch",
        "harness img/s",
        "bare img/s",
        "reference img/s",
        "harness/bare",
        "harness/reference",
        "eval s/epoch",
    ):
        table.add_column(col, justify="left" if col == "arch" else "right")
    for a in rep.archs:
        table.add_row(
            a.arch,
            f"{a.harness_img_s:.0f}",
            f"{a.bare_img_s:.0f}",
            f"{a.reference_img_s:.0f}",
            f"{a.harness_over_bare:.3f}",
            f"{a.harness_over_reference:.2f}",
            f"{a.eval_s_per_epoch:.2f} ({a.eval_images:,} img)",
        )
    console.print(table)
    trips = Table(title="loss-worker round trip (one step exchange)", title_justify="left")
    for col in ("sandbox", "median us", "p99 us", "calls"):
        trips.add_column(col, justify="left" if col == "sandbox" else "right")
    for t in rep.roundtrips:
        trips.add_row(t.sandbox, f"{t.median_us:.0f}", f"{t.p99_us:.0f}", str(t.calls))
    console.print(trips)
    if rep.jobs:
        jt = Table(
            title="several runs at once on one device (--jobs N): aggregate harness throughput", title_justify="left"
        )
        for col in ("arch", "jobs", "img/s in all", "img/s per run"):
            jt.add_column(col, justify="left" if col == "arch" else "right")
        for j in rep.jobs:
            jt.add_row(j.arch, str(j.jobs), f"{j.aggregate_img_s:.0f}", f"{j.per_job_img_s:.0f}")
        console.print(jt)
    console.print(
        f"batch {rep.archs[0].batch_size if rep.archs else '-'}, median of {rounds} interleaved rounds "
        f"of {steps} steps each; total {rep.seconds:.0f} s"
    )


def models(console: Console, counts: Sequence[tuple[str, str, int, int]]) -> None:
    """``(arch, topology, parameters, shared parameters)`` rows as a table, with the ratio to the
    shared topology of the same architecture."""
    table = Table(title="parameters per architecture and topology", title_justify="left")
    for col in ("arch", "topology", "parameters", "vs shared", "both tasks reach"):
        table.add_column(col, justify="left" if col in ("arch", "topology") else "right")
    base = {arch: n for arch, topology, n, _ in counts if topology == "shared"}
    for arch, topology, n, shared in counts:
        ratio = f"{n / base[arch]:.2f}x" if arch in base else ""
        table.add_row(arch, topology, f"{n:,}", ratio, f"{shared:,}" if shared else "none: G over all")
    console.print(table)


def run_plan(
    console: Console, opts, data, archs: Sequence[str], seeds: Sequence[int], n_files: int, device: str, precision: str
) -> None:
    """What is about to train: the profile, the data, the device, the runs and the settings."""
    profile = opts.profile
    console.print(f"profile '{profile.name}': {profile.description}")
    console.print(
        f"data: {len(data[0]):,} train / {len(data[1]):,} test images; device {device}; "
        f"runs: {', '.join(archs)} x seeds {', '.join(map(str, seeds))}"
        + (f" x {n_files} files" if n_files > 1 else "")
    )
    console.print(
        f"settings: precision {precision}, compile {opts.compile}, deterministic {opts.deterministic}, "
        f"topology {opts.topology}"
    )
    if opts.topology != "shared":
        topology(console, opts.topology, archs)


def topology(console: Console, name: str, archs: Sequence[str]) -> None:
    """What the topology shares on each architecture: the parameters both tasks' losses reach, which
    the Gramian covers for a file that asks for it (all parameters when none is shared)."""
    import torch

    from harness.training.models import build_model, parameter_counts

    for arch in archs:
        torch.manual_seed(0)
        total, shared = parameter_counts(build_model(arch, topology=name))
        what = (
            f"both tasks reach {shared:,} of its {total:,} parameters: the Gramian covers those"
            if shared
            else f"no parameter of its {total:,} is shared: the Gramian covers all of them (G01 = 0)"
        )
        console.print(f"topology {name} on {arch}: {what}")
