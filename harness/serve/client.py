"""``harness submit``: send a file to a served board and, with ``--wait``, follow it to the end.

Standard library only (``urllib``): a participant's machine needs nothing of the server's stack.
Without ``--wait`` the submission's id is printed; with it, the status and progress go to standard
error as they change, and the outcome goes to standard output exactly as ``harness evaluate --json``
prints it, with the same exit code (0 ok, 1 a run failed, 2 rejected). A file refused at intake
prints the command line's message (``rejected: ...``) and exits 2, as ``harness evaluate`` would.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import ExitCode, HarnessError, SubmissionRejected, UsageError

MAX_SEND = 2 * 1024 * 1024  # a submission is at most 64 KiB; the server refuses more, so send no more
POLL_S = 3.0


class Api:
    """The board's HTTP API at ``server`` with a participant's ``token``."""

    def __init__(self, server: str, token: str, timeout: float = 60.0) -> None:
        if not server.startswith(("http://", "https://")):
            raise UsageError(f"--server {server!r} is not an http:// or https:// address, e.g. http://127.0.0.1:8000")
        self.server, self.token, self.timeout = server.rstrip("/"), token, timeout

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.server + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as r:  # http(s) only: checked in __init__
                return json.loads(r.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            raise _refusal(e) from None
        except urllib.error.URLError as e:
            raise HarnessError(f"cannot reach {self.server}: {e.reason}; is `harness serve` running there?") from None
        except (TimeoutError, ConnectionError) as e:
            raise HarnessError(f"{self.server} did not answer ({e}); try again") from None

    def submit(self, path: Path, name: str | None) -> dict[str, Any]:
        with open(path, "rb") as f:
            data = f.read(MAX_SEND + 1)
        boundary = secrets.token_hex(16)
        parts = [_part(boundary, 'name="file"; filename=' + _quoted(path.name), data, "text/x-python")]
        if name:
            parts.append(_part(boundary, 'name="name"', name.encode("utf-8"), None))
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.call("POST", "/api/submissions", body, f"multipart/form-data; boundary={boundary}")

    def status(self, sid: str) -> dict[str, Any]:
        return self.call("GET", f"/api/submissions/{sid}")


class _Refused(HarnessError):
    def __init__(self, status: int, message: str, retry_after: str | None) -> None:
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


def _refusal(e: urllib.error.HTTPError) -> HarnessError:
    try:
        message = json.loads(e.read().decode("utf-8")).get("error") or e.reason
    except (ValueError, AttributeError, OSError):
        message = f"{e.code} {e.reason}"
    if e.code == 400:
        return SubmissionRejected(str(message))
    return _Refused(e.code, f"the server answered {e.code}: {message}", e.headers.get("Retry-After"))


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ") + '"'


def _part(boundary: str, disposition: str, data: bytes, content_type: str | None) -> bytes:
    head = f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode("utf-8") + b"\r\n" + data + b"\r\n"


def _describe(sub: dict[str, Any]) -> str:
    status = sub.get("status")
    if status == "queued":
        return f"queued ({sub.get('queue_position', 0)} before it)"
    if status == "running":
        p = sub.get("progress") or {}
        runs = f"{p['runs_ended']}/{p['runs']} runs ended" if p.get("runs") else "started"
        return f"running, {runs}" + (f": {p['last']}" if p.get("last") else "")
    return str(status)


def wait(api: Api, sid: str, say: Callable[[str], None], poll: float = POLL_S) -> dict[str, Any]:
    """Poll submission ``sid`` until it has ended; ``say`` gets each new status line."""
    last = None
    while True:
        try:
            sub = api.status(sid)
        except _Refused as e:
            if e.status != 429:
                raise
            time.sleep(float(e.retry_after or poll))
            continue
        line = _describe(sub)
        if line != last:
            say(line)
            last = line
        if sub.get("status") in ("done", "failed", "rejected", "cancelled"):
            return sub
        time.sleep(poll)


def submit(path: Path, server: str, token: str, name: str | None, follow: bool, say: Callable[[str], None]) -> int:
    """``harness submit``: the exit code (see the module's docstring)."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    api = Api(server, token)
    made = api.submit(path, name)
    sid = made["id"]
    if not follow:
        sys.stdout.write(f"{sid}\n")
        say(f"queued {made['entry']} as submission {sid}; follow it with --wait, or GET {made['url']}")
        return ExitCode.OK
    say(f"queued {made['entry']} as submission {sid}")
    sub = wait(api, sid, say)
    outcome = sub.get("outcome")
    if sub["status"] == "rejected":
        raise SubmissionRejected(str(sub.get("reason") or "rejected"))
    if outcome is None:
        raise HarnessError(f"submission {sid} {sub['status']}: {sub.get('reason') or 'no outcome'}")
    sys.stdout.write(json.dumps(outcome, indent=2, ensure_ascii=False) + "\n")
    if sub["status"] == "failed" and sub.get("reason"):
        say(f"failed: {sub['reason']}")
    return int(outcome.get("exit_code", ExitCode.RUN_FAILED))
