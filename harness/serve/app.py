"""The HTTP routes of the served board (Starlette).

Public: ``GET /`` (the live page), ``GET /board`` (the board alone, for the page's refresh),
``GET /api/leaderboard`` (``harness leaderboard --format json``), ``GET /api/leaderboard/version``.
With ``Authorization: Bearer TOKEN``: ``POST /api/submissions`` (multipart ``file``, optional
``name``; 201 with the id), ``GET /api/submissions`` (your own), ``GET /api/submissions/ID`` (status,
progress, rows, reason, log, outcome), ``DELETE /api/submissions/ID`` (cancel, queued or running).

Errors are JSON ``{"error": message}``: 400 refused at intake (the command line's message), 401
without a valid token, 404 for a submission that is not yours (whether or not it exists: nobody learns
of another participant's submissions), 413 too large, 429 over the quota or the request rate (with
``Retry-After``), 503 when the board cannot be rendered.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime, timezone
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from harness.serve import page, pipeline
from harness.serve.board import Board, BoardError
from harness.serve.db import FINISHED, Database, Submission
from harness.serve.guards import ASGIApp, BodyLimit, RateLimit, SecurityHeaders
from harness.serve.intake import Refused, accept, prepare_files
from harness.serve.runner import Runner, log_path, progress, read_outcome
from harness.serve.settings import ServeSettings

LOG_TAIL = 64 * 1024  # characters of a log returned to its owner
WORKER_LOG_TAIL = 8 * 1024


def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: object) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _tail(path: Path, limit: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:]


class Served:
    """The server's parts: settings, database, scheduler and board."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.db = Database(settings.db)
        self.board = Board(settings)
        self.runner = Runner(self.db, settings)

    def participant(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Unauthorized(
                "no token: send the header 'Authorization: Bearer TOKEN' (the operator's "
                "`harness participants add NAME` makes a token)"
            )
        name = self.db.authenticate(token.strip())
        if name is None:
            raise _Unauthorized("the token is not valid (mistyped, or revoked by the operator)")
        return name

    def summary(self, sub: Submission) -> dict[str, object]:
        out: dict[str, object] = {
            "id": sub.id,
            "entry": sub.entry,
            "submission_sha256": sub.sha256,
            "status": sub.status,
            "created_at": _iso(sub.created_at),
            "started_at": _iso(sub.started_at),
            "finished_at": _iso(sub.finished_at),
            "attempts": sub.attempts,
            "exit_code": sub.exit_code,
            "reason": sub.reason,
        }
        if sub.status == "queued":
            out["queue_position"] = self.db.queue_position(sub.id)
        if sub.status == "running":
            out["progress"] = progress(_tail(log_path(self.settings, sub.id), LOG_TAIL))
        return out

    def details(self, sub: Submission) -> dict[str, object]:
        out = self.summary(sub)
        outcome = read_outcome(self.settings, sub.id) if sub.status in FINISHED else None
        out["outcome"] = outcome
        out["rows"] = pipeline.version_rows(self.settings, sub.entry, sub.sha256)
        out["log"] = _tail(log_path(self.settings, sub.id), LOG_TAIL)
        workers = {}
        for run in (outcome or {}).get("runs", []):
            run_dir = Path(str(run.get("run_dir", "")))
            if run_dir.is_absolute() and run_dir.resolve().is_relative_to(self.settings.runs_dir):
                workers[f"{run.get('arch')} seed {run.get('seed')}"] = _tail(run_dir / "worker.log", WORKER_LOG_TAIL)
        out["worker_logs"] = workers
        return out


class _Unauthorized(Exception):
    pass


async def _quietly(render: Awaitable[object]) -> None:
    with contextlib.suppress(BoardError):  # shown to whoever asks for the board next
        await render


def build_app(settings: ServeSettings) -> ASGIApp:
    """The ASGI application of ``settings`` (resolved: absolute paths)."""
    served = Served(settings)

    async def home(request: Request) -> Response:
        try:
            version, report = await served.board.get("html")
        except BoardError as e:
            return HTMLResponse(f"<!DOCTYPE html><title>board unavailable</title><p>{html.escape(str(e))}</p>", 503)
        live = f"Profile {settings.profile}, {settings.phase} phase; this page updates itself as results land."
        return HTMLResponse(page.page(report, version, live))

    async def board_fragment(request: Request) -> Response:
        try:
            _, report = await served.board.get("html")
        except BoardError as e:
            return error(503, str(e))
        return HTMLResponse(page.body_of(report))

    async def script(request: Request) -> Response:
        return Response(page.SCRIPT, media_type="text/javascript")

    async def leaderboard(request: Request) -> Response:
        try:
            _, text = await served.board.get("json")
        except BoardError as e:
            return error(503, str(e))
        return Response(text, media_type="application/json")

    async def version(request: Request) -> Response:
        return JSONResponse({"version": served.board.version()})

    async def submit(request: Request) -> Response:
        who = served.participant(request)
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return error(400, "no file: send the submission as the multipart field 'file' (with its file name)")
        name = form.get("name")
        data = await upload.read()
        try:
            sid, entry, sha = await asyncio.to_thread(
                accept, served.db, settings, who, upload.filename, name if isinstance(name, str) else None, data
            )
        except Refused as e:
            return error(e.status, e.message, e.headers, **e.extra)
        served.runner.poke()
        return JSONResponse(
            {"id": sid, "entry": entry, "submission_sha256": sha, "status": "queued", "url": f"/api/submissions/{sid}"},
            status_code=201,
        )

    def mine(request: Request) -> tuple[str, Submission]:
        who = served.participant(request)
        sid = request.path_params["sid"]
        sub = served.db.submission(sid)
        if sub is None or sub.participant != who:
            raise HTTPException(404, f"no submission {sid} of yours")
        return who, sub

    async def list_mine(request: Request) -> Response:
        who = served.participant(request)
        listed = [served.summary(s) for s in served.db.submissions_of(who)]
        return JSONResponse({"participant": who, "submissions": listed})

    async def show(request: Request) -> Response:
        _, sub = mine(request)
        return JSONResponse(await asyncio.to_thread(served.details, sub))

    async def cancel(request: Request) -> Response:
        who, sub = mine(request)
        before = served.db.cancel(sub.id, who)
        if before == "running":
            served.runner.cancel(sub.id)
        elif before != "queued":
            return error(409, f"submission {sub.id} is {before}; only a queued or running one can be cancelled")
        return JSONResponse({"id": sub.id, "status": "cancelled" if before == "queued" else "cancelling"})

    async def unauthorized(request: Request, exc: Exception) -> Response:
        return error(401, str(exc), {"WWW-Authenticate": 'Bearer realm="harness"'})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # noqa: S101 (registered for HTTPException only)
        return error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        prepare_files(settings)
        renders: set[asyncio.Task] = set()

        def rerender() -> None:  # a submission ended: have the board ready before anyone asks
            for fmt in ("html", "json"):
                task = asyncio.create_task(_quietly(served.board.get(fmt)))
                renders.add(task)
                task.add_done_callback(renders.discard)

        served.runner.changed = rerender
        rerender()
        await served.runner.start()
        try:
            yield
        finally:
            await served.runner.stop()

    routes = [
        Route("/", home),
        Route("/board", board_fragment),
        Route("/static/board.js", script),
        Route("/api/leaderboard", leaderboard),
        Route("/api/leaderboard/version", version),
        Route("/api/submissions", submit, methods=["POST"]),
        Route("/api/submissions", list_mine, methods=["GET"]),
        Route("/api/submissions/{sid}", show, methods=["GET"]),
        Route("/api/submissions/{sid}", cancel, methods=["DELETE"]),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={_Unauthorized: unauthorized, HTTPException: http_error}
    )
    limit = settings.rate_limit
    guarded = RateLimit(BodyLimit(app, settings.max_request_bytes), limit.count, limit.seconds)
    return SecurityHeaders(guarded)
