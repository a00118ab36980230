"""The subcommands of the served board: ``harness serve``, ``harness participants add|list|revoke``
and ``harness submit``. Each takes the parsed command line and a console, and returns an exit code
(:class:`~harness.errors.ExitCode`); errors are raised as the CLI's error types."""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import ipaddress
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness.errors import ExitCode, UsageError
from harness.serve.settings import Rate, ServeSettings, db_path

EXTRA = ("starlette", "uvicorn", "multipart")
INSTALL = "pip install 'harness[serve]' (or, in a checkout: pip install -e '.[serve]')"


def _missing_extra() -> list[str]:
    return [m for m in EXTRA if importlib.util.find_spec(m) is None]


def _lock(db: Path):
    """Hold ``<db>.lock`` for the server's life: one server per database (released by the kernel
    when the server dies, even by SIGKILL)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{db}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"another `harness serve` is using {db}; stop it first, or pass another --db") from None
    return fd


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(args: argparse.Namespace, console: Console) -> int:
    missing = _missing_extra()
    if missing:
        raise UsageError(f"`harness serve` needs the serve extra ({', '.join(missing)} missing): {INSTALL}")
    import uvicorn

    from harness.serve import pipeline
    from harness.serve.app import build_app
    from harness.serve.db import Database

    leaderboard = args.leaderboard or pipeline.default_path(args.profile)
    settings = ServeSettings(
        host=args.host,
        port=args.port,
        db=db_path(args.db, args.leaderboard),
        profile=args.profile,
        phase=args.phase,
        sandbox=args.sandbox,
        runs_dir=args.runs_dir,
        data_dir=args.data_dir,
        device=args.device,
        jobs=args.jobs,
        concurrent=args.concurrent,
        executor=args.executor,
        ray_address=args.ray_address,
        quota=Rate.parse(args.quota, "--quota") if args.quota else None,
        rate_limit=Rate.parse(args.rate_limit, "--rate-limit"),
        max_request_bytes=args.max_request_kib * 1024,
        forwarded_allow_ips=args.forwarded_allow_ips,
    ).resolved(leaderboard)
    lock = _lock(settings.db)
    try:
        participants = [p for p in Database(settings.db).participants() if p.revoked_at is None]
        where = f"http://{settings.host}:{settings.port}"
        console.print(
            f"serving the {escape(settings.profile)} board ({settings.phase} phase) at {where}\n"
            f"  leaderboard {escape(str(settings.leaderboard))}; runs in {escape(str(settings.runs_dir))}\n"
            f"  database {escape(str(settings.db))} (private files in {escape(str(settings.files))})\n"
            f"  evaluations: sandbox {escape(settings.sandbox)}, {settings.concurrent} at once"
            + (f", quota {settings.quota.text} per participant" if settings.quota else "")
        )
        if not participants:
            console.print(
                f"[yellow]no participant yet[/]: `harness participants add NAME --db {escape(str(settings.db))}` "
                "makes one and prints their token"
            )
        if not _loopback(settings.host):
            console.print(
                "[yellow]warning[/]: listening beyond this machine over plain HTTP; put it behind a TLS reverse "
                "proxy (docs/serving.md) so that tokens never cross a network in clear"
            )
        config = uvicorn.Config(
            build_app(settings),
            host=settings.host,
            port=settings.port,
            proxy_headers=settings.forwarded_allow_ips is not None,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            server_header=False,
            log_level="info",
        )
        try:
            uvicorn.Server(config).run()
        except KeyboardInterrupt:  # the signal uvicorn handled, raised again once it stopped
            console.print(
                "stopped: evaluations that were running stay queued and resume from their checkpoints when "
                "the server starts again"
            )
            return ExitCode.INTERRUPTED
    finally:
        os.close(lock)
    return ExitCode.OK


def _existing_db(args: argparse.Namespace) -> Path:
    db = db_path(args.db, None)
    if not db.exists():
        raise UsageError(f"no served-board database at {db}; pass --db FILE (`harness participants add` creates one)")
    return db


def participants_add(args: argparse.Namespace, console: Console) -> int:
    from harness.serve.db import Database

    db = db_path(args.db, None)
    token = Database(db).add_participant(args.name)
    sys.stdout.write(token + "\n")
    sys.stdout.flush()
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(
        f"added participant {escape(args.name)} to {escape(str(db))}. The line above is their token, shown this "
        "once (only its digest is kept): give it to them privately; they submit with "
        "`harness submit FILE --server URL --token TOKEN`"
    )
    return ExitCode.OK


def participants_list(args: argparse.Namespace, console: Console) -> int:
    from harness.serve.db import Database

    found = Database(_existing_db(args)).participants()
    if not found:
        console.print("no participants yet (`harness participants add NAME`)")
    for p in found:
        made = datetime.fromtimestamp(p.created_at, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        state = "active" if p.revoked_at is None else "revoked"
        console.print(f"{escape(p.name)}  added {made}  {state}")
    return ExitCode.OK


def participants_revoke(args: argparse.Namespace, console: Console) -> int:
    from harness.serve.db import Database

    db = _existing_db(args)
    Database(db).revoke(args.name)
    console.print(
        f"revoked {escape(args.name)}'s token in {escape(str(db))}: their queued submissions are cancelled; "
        "their entries stay on the board and their names stay theirs"
    )
    return ExitCode.OK


def submit(args: argparse.Namespace, console: Console) -> int:
    from harness.serve.client import submit as send

    token = args.token or os.environ.get("HARNESS_TOKEN", "")
    if not token:
        raise UsageError("no token: pass --token TOKEN or set HARNESS_TOKEN (the board's operator gives you one)")
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    return send(args.path, args.server, token, args.name, args.wait, lambda line: err.print(escape(line)))
