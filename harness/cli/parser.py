"""The ``harness`` command line: its commands, options and help texts (the commands themselves are
in :mod:`harness.cli.commands`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path

from rich.console import Console

from harness.evaluate.names import NAME_RULE, SOURCE_BASELINES
from harness.isolation.sandbox import available_sandboxes
from harness.protocol import PROFILES, TOPOLOGIES

Handler = Callable[[argparse.Namespace, Console], int]
DEFAULT_BASELINES_DIR = SOURCE_BASELINES


DESCRIPTION = """\
Evaluate multi-task loss strategies on CIFAR-100: check a file that defines
class MultiTaskLoss, train ResNet-20 and ResNet-56 (and the hidden VGG-16-BN in
the final phase) with a fine and a coarse head under a fixed protocol, with the
file sandboxed, and keep the results in a leaderboard beside the baselines."""

EPILOG = """\
examples:
  harness check submissions/my_loss.py          fast feedback, no training
  harness evaluate submissions/my_loss.py --profile smoke
                                                a 1-minute demo on synthetic data
  harness evaluate submissions/my_loss.py       the full protocol (GPU-days)
  harness baselines --only equal_weighting      the reference the others are compared with
  harness leaderboard --profile smoke           the standings of one profile
  harness leaderboard --format html -o report.html

`harness COMMAND --help` lists a command's options. Exit codes: 0 ok, 1 a run
failed or the setup is wrong, 2 a file was rejected or the command line is
wrong, 130 interrupted."""


def _version() -> str:
    import torch

    from harness.util.provenance import harness_commit, harness_version

    commit = harness_commit()
    short = commit if commit == "unknown" else commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    return f"harness {harness_version()} (commit {short}; torch {torch.__version__})"


class _Version(argparse.Action):
    """``--version``, importing torch only when asked."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="print the harness version and commit, and torch's version",
        )

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version())
        parser.exit()


def build_parser(handlers: Mapping[str, Handler]) -> argparse.ArgumentParser:
    """The ``harness`` command line; ``handlers`` maps each ``cmd_*`` name to its function."""
    parser = argparse.ArgumentParser(
        prog="harness", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = sub.add_parser("evaluate", help="check a submission, train with it and append to the leaderboard")
    ev.add_argument(
        "paths",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="submission file(s) defining class MultiTaskLoss, e.g. submissions/*.py; "
        "the runs of all files are scheduled together",
    )
    ev.add_argument(
        "--name",
        metavar="NAME.py",
        help="the entry's name in the leaderboard (default: the file's "
        f"name; one file only). A name has {NAME_RULE}; a baseline's name is not available, nor "
        "a name that belongs to a file in another place",
    )
    ev.add_argument(
        "--json",
        action="store_true",
        help="print the outcome as JSON on standard output: each run trained now, each run skipped and why, "
        "rejected files, the interface checks and the entries' standing (progress and tables go to standard "
        "error); the same data as harness.api.evaluate",
    )
    _add_evaluate_options(ev)
    ev.set_defaults(func=handlers["cmd_evaluate"])

    bl = sub.add_parser("baselines", help="evaluate the baselines (rows marked kind=baseline)")
    bl.add_argument("--only", action="append", metavar="NAME", help="only this baseline (repeatable), e.g. dwa")
    bl.add_argument(
        "--baselines-dir",
        type=Path,
        default=DEFAULT_BASELINES_DIR,
        help="where the baseline files are (default: baselines/ of the source checkout)",
    )
    _add_evaluate_options(bl)
    bl.set_defaults(func=handlers["cmd_baselines"])

    ck = sub.add_parser("check", help="check a submission's file and interface without training")
    ck.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="one or more submission files")
    ck.add_argument(
        "--sandbox",
        default="auto",
        choices=["auto", *available_sandboxes()],
        help="how the file is isolated while its probe calls run (default auto: Docker, else "
        "bubblewrap, else none with a warning)",
    )
    ck.set_defaults(func=handlers["cmd_check"])

    lb = sub.add_parser("leaderboard", help="aggregate the leaderboard: mean ± std, n, score, rank, significance")
    _add_view_options(lb)
    lb.add_argument(
        "--format",
        default="table",
        choices=["table", "markdown", "csv", "json", "html", "tests"],
        help="table (the terminal; default), markdown, csv (one number per column), json (the same fields, "
        "nested per architecture, and every test: for scripts and notebooks), html (one file with figures; use "
        "-o/--output) or tests (every test of the board's families, one CSV line each, unrounded)",
    )
    lb.add_argument("-o", "--output", type=Path, metavar="PATH", help="write to PATH instead of the terminal")
    lb.add_argument(
        "--arch",
        metavar="NAME",
        help="rank on one architecture alone (its own intervals and tests), e.g. resnet20 when only it has every seed",
    )
    lb.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="where the run directories are, for the HTML report's curves (default: runs)",
    )
    _add_version_option(lb)
    lb.set_defaults(func=handlers["cmd_leaderboard"])

    cp = sub.add_parser("compare", help="two entries compared directly, paired over seeds (Δ, interval, p)")
    cp.add_argument(
        "a",
        metavar="A",
        help="an entry: its file name (x.py or x), NAME@SHA for one version, or its label as the leaderboard shows it",
    )
    cp.add_argument("b", metavar="B", help="the entry A is compared with, e.g. equal_weighting")
    _add_view_options(cp)
    _add_version_option(cp)
    cp.set_defaults(func=handlers["cmd_compare"])

    rn = sub.add_parser("runs", help="every row one submission has in the leaderboard: versions, attempts, status")
    rn.add_argument("submission", metavar="FILE", help="the submission file, or its name (x.py or x)")
    _add_view_options(rn, phase=False)
    rn.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where the run directories are (default: runs)")
    rn.set_defaults(func=handlers["cmd_runs"])

    rt = sub.add_parser(
        "retire", help="hide a file version from every view, keeping its rows (--restore: show it again)"
    )
    rt.add_argument(
        "target",
        metavar="FILE|NAME@SHA",
        help="the submission file (its current version), or "
        "NAME@SHA for one version (a prefix of its sha256, as `harness runs` shows it)",
    )
    rt.add_argument("--reason", help="why, shown beside the hidden version (e.g. 'bug: coarse weight sign')")
    rt.add_argument("--restore", action="store_true", help="show the version again")
    rt.add_argument(
        "--kind",
        choices=["submission", "baseline"],
        help="the entry's kind, when a name is both a submission's and a baseline's (older leaderboards)",
    )
    _add_view_options(rt, phase=False)
    rt.set_defaults(func=handlers["cmd_retire"])

    bn = sub.add_parser(
        "bench",
        help="training throughput against a bare loop and a conventional pipeline, worker round trip, evaluation time",
    )
    bn.add_argument(
        "--arch",
        action="append",
        metavar="NAME",
        help="architecture (repeatable; default resnet20 and resnet56; a hidden one, e.g. vgg16bn, is loaded "
        "from --hidden-dir)",
    )
    bn.add_argument(
        "--hidden-dir", type=Path, help="where the hidden architectures are (default: ./hidden of the source checkout)"
    )
    bn.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto: CUDA when torch sees a GPU, else the CPU (default auto)",
    )
    bn.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "tf32", "bf16", "fp64"],
        help="as for evaluate (default fp32; fp64: float64 parameters and inputs)",
    )
    bn.add_argument(
        "--channels-last",
        default=True,
        action=argparse.BooleanOptionalAction,
        help="channels-last memory format, as the trainer uses (default on)",
    )
    bn.add_argument("--batch", type=int, default=128, help="batch size (default 128, the protocol's)")
    bn.add_argument("--steps", type=int, help="steps per timed round (default: 6 on a CPU, 60 on a GPU)")
    bn.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds; the median is reported")
    bn.add_argument("--calls", type=int, default=2000, help="worker round trips timed per sandbox")
    bn.add_argument("--eval-images", type=int, default=10_000, help="test images for the evaluation timing")
    bn.add_argument(
        "--sandbox",
        default="auto",
        choices=["auto", *available_sandboxes()],
        help="sandbox of the harness step's worker (round trips are measured for every available one)",
    )
    bn.add_argument(
        "--reference-workers",
        type=int,
        help="DataLoader workers of the conventional pipeline "
        "(default: 0 on a CPU, where workers would take the training's cores; 4 on a GPU)",
    )
    bn.add_argument(
        "--jobs",
        type=int,
        action="append",
        metavar="N",
        help="also measure N concurrent runs on the "
        "device (repeatable: --jobs 1 --jobs 2 --jobs 4; default: 1, 2 and 4 on a GPU, none on a CPU)",
    )
    bn.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    bn.add_argument("--json", action="store_true", help="print the figures as JSON (progress goes to stderr)")
    bn.set_defaults(func=handlers["cmd_bench"])

    st = sub.add_parser(
        "selftest",
        help="check the training path on a device end to end through the command line: evaluation, resume, "
        "the Gramian and after-update inputs, fused seeds, several runs at once, --compile, bench; each "
        "figure against its expectation (exit 1 on any difference)",
    )
    st.add_argument("--device", required=True, choices=["cpu", "cuda"], help="the device to check")
    st.add_argument(
        "--sandbox",
        default="none",
        choices=["auto", *available_sandboxes()],
        help="the loss workers' sandbox (default none: the check is of the training path; the sandboxes have "
        "their own tests)",
    )
    st.add_argument(
        "--inductor",
        action="store_true",
        help="on a CPU, compile with inductor as evaluations do (a minute or more on a small CPU; default "
        "aot_eager there; a GPU always uses inductor)",
    )
    st.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR and keep its files (default: a temporary "
                    "directory, kept only when a figure differs)")  # fmt: skip
    st.set_defaults(func=handlers["cmd_selftest"])

    md = sub.add_parser(
        "models",
        help="parameter counts per architecture and network topology, and what "
        "both tasks share (what the Gramian covers)",
    )
    md.add_argument("--hidden", action="store_true", help="include the hidden architectures (vgg16bn)")
    md.add_argument(
        "--hidden-dir", type=Path, help="where the hidden architectures are (default: ./hidden of the source checkout)"
    )
    md.set_defaults(func=handlers["cmd_models"])

    mg = sub.add_parser("migrate", help="convert a leaderboard of an older schema version (the original is kept)")
    mg.add_argument("path", type=Path, help="the leaderboard CSV to convert, e.g. leaderboard.csv")
    mg.add_argument("-o", "--output", type=Path, help="default: PATH with .v<version> before the suffix")
    mg.set_defaults(func=handlers["cmd_migrate"])

    image = sub.add_parser("image", help="the Docker sandbox image").add_subparsers(dest="image_command", required=True)
    ib = image.add_parser("build", help="build the sandbox image (wheelhouse on the host, no network in the build)")
    ib.add_argument(
        "--base-image",
        default="harness-base:bookworm",
        help="local base image with python3 3.11 (default: harness-base:bookworm)",
    )
    ib.add_argument(
        "--bootstrap",
        action="store_true",
        help="build the base image from Debian (mmdebstrap, else debootstrap) when it is missing",
    )
    ib.set_defaults(func=handlers["cmd_image_build"])

    data = sub.add_parser("data", help="get the dataset").add_subparsers(dest="data_command", required=True)
    syn = data.add_parser("synthetic", help="write synthetic CIFAR-100-format data to DIR")
    syn.add_argument("dir", type=Path, help="where to write cifar-100-python/ (pass it as --data-dir later)")
    syn.add_argument("--seed", type=int, default=0, help="random seed of the images and labels (default 0)")
    syn.add_argument("--train-size", type=int, default=5000, help="training images (default 5000)")
    syn.add_argument("--test-size", type=int, default=1000, help="test images (default 1000)")
    syn.set_defaults(func=handlers["cmd_data_synthetic"])
    dl = data.add_parser("download", help="download CIFAR-100 (needs torchvision: pip install 'harness[download]')")
    dl.add_argument(
        "--data-dir",
        type=Path,
        help="where to put it (default: $HARNESS_DATA_DIR, else the user cache dir, ~/.cache/harness/cifar100)",
    )
    dl.set_defaults(func=handlers["cmd_data_download"])

    from harness.serve.options import add_parsers as add_serve_parsers  # serve, participants, submit

    add_serve_parsers(sub, handlers)
    return parser


def _add_view_options(p: argparse.ArgumentParser, *, phase: bool = True) -> None:
    """Which leaderboard and view: as for ``harness leaderboard``."""
    p.add_argument(
        "--leaderboard",
        type=Path,
        metavar="CSV",
        help="default: the file of --profile, else leaderboard.csv or the only leaderboard-*.csv here",
    )
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="that profile's rows; without --leaderboard, read the file `evaluate --profile` writes "
        "(leaderboard-PROFILE.csv; leaderboard.csv for full)",
    )
    if phase:
        p.add_argument(
            "--phase",
            default="public",
            choices=["public", "final"],
            help="final includes the hidden architecture (default public)",
        )


def _add_version_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--version",
        action="append",
        metavar="NAME@SHA",
        dest="versions",
        help="rank this file version of an entry instead of its newest (repeatable; SHA: a prefix of its "
        "sha256, as `harness runs NAME` lists them); the other versions stay listed, unranked",
    )


def _add_evaluate_options(ev: argparse.ArgumentParser) -> None:
    """The options of evaluate and baselines. A flag left out is None (False for a switch) and takes the
    options model's default (:class:`harness.evaluate.options.EvaluateOptions`), which the help texts quote."""
    from harness.evaluate.options import EvaluateOptions

    def default(name: str) -> object:
        return EvaluateOptions.model_fields[name].default

    ev.add_argument(
        "--profile",
        default="full",
        choices=list(PROFILES),
        help="full: the task's protocol (default); quick: the same on CIFAR-100 for 30 "
        "epochs, to iterate on a GPU (rows kept apart in leaderboard-quick.csv); smoke: a demo "
        "on synthetic data; tiny: for tests; selftest: for harness selftest",
    )
    ev.add_argument(
        "--phase",
        choices=["public", "final"],
        help=f"final adds the hidden architecture (vgg16bn); default {default('phase')}",
    )
    ev.add_argument(
        "--topology",
        choices=list(TOPOLOGIES),
        help=f"how the two tasks share the network (the topology study): shared (the task's network: one backbone, two "
        f"heads), independent (a backbone per task, the control), reuse-coarse / reuse-fine (one "
        f"head also reads the other head's logits), shared-reuse-*; recorded in every row and kept "
        f"apart in the standings; `harness models` lists parameter counts; "
        f"default {default('topology')}",
    )
    ev.add_argument("--arch", action="append", metavar="NAME", help="only this architecture (repeatable)")
    ev.add_argument(
        "--seed",
        action="append",
        type=int,
        metavar="N",
        help="run this seed (repeatable): some of the profile's, or extra seeds beyond them, which the "
        "board's tests pair (more seeds, more power) while the score stays on the profile's",
    )
    ev.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        help=f"auto: CUDA when torch sees a GPU, else the CPU (default {default('device')})",
    )
    ev.add_argument(
        "--data-dir",
        type=Path,
        help="directory containing cifar-100-python/ (default: $HARNESS_DATA_DIR, else the user cache dir)",
    )
    ev.add_argument("--runs-dir", type=Path, help=f"where run directories go (default: {default('runs_dir')})")
    ev.add_argument(
        "--leaderboard",
        type=Path,
        metavar="CSV",
        help="CSV to append to (default: leaderboard.csv, or leaderboard-PROFILE.csv)",
    )
    ev.add_argument(
        "--sandbox",
        choices=["auto", *available_sandboxes()],
        help=f"how the submission is isolated: auto picks a real sandbox; none runs it as a plain "
        f"process (trusted code only); default {default('sandbox')}",
    )
    ev.add_argument(
        "--precision",
        choices=["fp32", "tf32", "bf16", "fp64"],
        help="fp32 (the full profile's default: float32 as PyTorch computes it by default, as the published "
        "rows were produced: on a GPU, TF32 convolutions and IEEE matmuls), tf32 (TF32 matmuls too, CUDA only), "
        "bf16 (bfloat16 autocast, float32 parameters), fp64 (for verification); recorded in every row and kept "
        "apart in the standings",
    )
    ev.add_argument("--compile", action="store_true", help="run the model through torch.compile (recorded)")
    ev.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic kernels (torch.use_deterministic_algorithms, cuDNN deterministic); "
        "slower on a GPU; recorded",
    )
    ev.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="run up to N runs (or fused seeds) at once, each in its own process, sharing the device (spread "
        "over the GPUs when there are several); default: on a GPU as many as its memory holds, on a CPU 1; "
        "with --executor ray as many as fit",
    )
    ev.add_argument(
        "--fuse",
        default=None,
        action=argparse.BooleanOptionalAction,
        help="train the seeds of each architecture as one fused model (each seed keeps its data order, "
        "initialisation, BatchNorm statistics, optimizer and loss worker; the same result up to float "
        "rounding, one row per seed); default: on with CUDA, off on a CPU; not with --executor ray",
    )
    ev.add_argument(
        "--executor",
        choices=["local", "ray"],
        help=f"local: this machine; ray: each run a Ray task, on a local Ray started for the evaluation "
        f"or the cluster of --ray-address (pip install 'harness[ray]'); default {default('executor')}",
    )
    ev.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (e.g. auto, or ray://host:10001)")
    ev.add_argument(
        "--gpus-per-run",
        type=float,
        metavar="F",
        help="Ray: GPUs each run asks for; a fraction shares a GPU (0.25: four runs per GPU); "
        "default 1 on CUDA, else 0",
    )
    ev.add_argument(
        "--cpus-per-run",
        type=float,
        metavar="N",
        help="Ray: CPUs each run asks for (default 1 with a GPU, else the CPUs shared between the runs)",
    )
    ev.add_argument(
        "--ray-retries",
        type=int,
        metavar="K",
        help=f"Ray: resubmit a lost task (worker or node died) up to K times, resuming from its "
        f"checkpoint (default {default('ray_retries')})",
    )
    ev.add_argument(
        "--force",
        action="store_true",
        help="re-run runs that already have an ok row for this file version (default: skip them)",
    )
    ev.add_argument(
        "--hidden-dir", type=Path, help="where the hidden architectures are (default: ./hidden of the source checkout)"
    )
