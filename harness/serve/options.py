"""The command line of the served board: ``harness serve``, ``harness participants`` and ``harness
submit`` (their options and help texts; the commands are in :mod:`harness.serve.commands`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path

from harness.isolation.sandbox import available_sandboxes
from harness.protocol import PROFILES
from harness.serve.settings import DEFAULT_DB

Handler = Callable[..., int]


def _db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        type=Path,
        metavar="FILE",
        help=f"the served board's SQLite database (default: {DEFAULT_DB} here, beside the default leaderboards)",
    )


def add_parsers(sub: argparse._SubParsersAction, handlers: Mapping[str, Handler]) -> None:
    """Add ``serve``, ``participants`` and ``submit`` to the ``harness`` command line."""
    sv = sub.add_parser(
        "serve",
        help="serve a live board: participants submit over HTTP, a queue runs their evaluations "
        "(pip install 'harness[serve]')",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument(
        "--db",
        type=Path,
        metavar="FILE",
        help=f"the SQLite database of participants, submissions and the queue (default: {DEFAULT_DB} beside the "
        "leaderboard)",
    )
    sv.add_argument(
        "--profile",
        default="full",
        choices=list(PROFILES),
        help="the profile every submission is evaluated under (default full; smoke: a demo board)",
    )
    sv.add_argument(
        "--phase",
        default="public",
        choices=["public", "final"],
        help="public (default): the public architectures, and the hidden one's results stay out of every view; "
        "final: evaluate and show the hidden architecture too (publishing it)",
    )
    sv.add_argument(
        "--sandbox",
        default="auto",
        choices=["auto", *available_sandboxes()],
        help="how submissions are isolated, as for evaluate (default auto; none only for trusted participants)",
    )
    sv.add_argument("--leaderboard", type=Path, metavar="CSV", help="default: the profile's, as for evaluate")
    sv.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run directories go (default: runs)")
    sv.add_argument("--data-dir", type=Path, help="directory containing cifar-100-python/, as for evaluate")
    sv.add_argument("--device", choices=["auto", "cpu", "cuda"], help="as for evaluate (default auto)")
    sv.add_argument("--jobs", type=int, metavar="N", help="runs at once within one evaluation, as for evaluate")
    sv.add_argument(
        "--concurrent",
        type=int,
        default=1,
        metavar="K",
        help="submissions evaluated at once (default 1); taken from the queue in turn between participants",
    )
    sv.add_argument(
        "--executor",
        default="local",
        choices=["local", "ray"],
        help="as for evaluate: ray sends each run to a Ray cluster (with --ray-address)",
    )
    sv.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (e.g. auto)")
    sv.add_argument(
        "--quota",
        metavar="N/PERIOD",
        help="submissions per participant, e.g. 5/day or 2/hour (default: no quota); over it: 429 with when "
        "the next slot opens",
    )
    sv.add_argument(
        "--rate-limit",
        default="120/minute",
        metavar="N/PERIOD",
        help="HTTP requests per client address (default 120/minute); over it: 429",
    )
    sv.add_argument(
        "--max-request-kib",
        type=int,
        default=1024,
        metavar="KIB",
        help="largest request body in KiB (default 1024; a submission itself is at most 64 KiB)",
    )
    sv.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        help="behind a reverse proxy: its address(es), whose X-Forwarded-For names the client (rate limits are "
        "per client)",
    )
    sv.set_defaults(func=handlers["cmd_serve"])

    pt = sub.add_parser("participants", help="the served board's participants and their tokens")
    pts = pt.add_subparsers(dest="participants_command", required=True)
    add = pts.add_parser("add", help="add a participant and print their token (shown once)")
    add.add_argument("name", help="letters, digits, '_', '-', '.'; e.g. alice")
    _db(add)
    add.set_defaults(func=handlers["cmd_participants_add"])
    ls = pts.add_parser("list", help="list the participants")
    _db(ls)
    ls.set_defaults(func=handlers["cmd_participants_list"])
    rv = pts.add_parser("revoke", help="revoke a participant's token (their entries and names stay theirs)")
    rv.add_argument("name", help="the participant, as `harness participants list` shows them")
    _db(rv)
    rv.set_defaults(func=handlers["cmd_participants_revoke"])

    sm = sub.add_parser("submit", help="send a submission to a served board (harness serve)")
    sm.add_argument("path", type=Path, metavar="FILE", help="the submission file")
    sm.add_argument("--server", required=True, metavar="URL", help="the board's address, e.g. http://127.0.0.1:8000")
    sm.add_argument("--token", help="your token (default: $HARNESS_TOKEN, which keeps it out of the process list)")
    sm.add_argument("--name", metavar="NAME.py", help="the entry's name (default: the file's name)")
    sm.add_argument(
        "--wait",
        action="store_true",
        help="wait for the evaluation and print its outcome as `harness evaluate --json` does (same exit code)",
    )
    sm.set_defaults(func=handlers["cmd_submit"])
