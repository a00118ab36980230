"""The page at ``/``: the HTML report of ``harness leaderboard --format html`` (escaped as the report
escapes it) with a submission form and the participant's own submissions above it, kept live by a
small script that swaps in the new board when rows land.

The script is served from ``/static/board.js`` (the Content-Security-Policy allows no inline
script); it writes every piece of data with ``textContent``, never as markup. The token typed into the
form stays in the tab's ``sessionStorage`` and travels only in the ``Authorization`` header.
"""

from __future__ import annotations

import html

_HEADER = """
<section class="serve">
<form id="submit-form">
<h2>Submit a loss</h2>
<label>Token <input type="password" id="token" autocomplete="off" required></label>
<label>File <input type="file" id="file" accept=".py,text/x-python" required></label>
<label>Entry name <input type="text" id="name" placeholder="default: the file's name" maxlength="100"></label>
<button type="submit">Submit</button>
<p id="submit-result" role="status"></p>
</form>
<div id="mine" hidden>
<h2>Your submissions</h2>
<table class="mine"><thead><tr><th>entry</th><th>status</th><th>progress</th><th>submitted</th><th>id</th>
<th>reason</th></tr></thead><tbody id="mine-rows"></tbody></table>
</div>
<p class="live">{live}</p>
</section>
<div id="board">
"""

_STYLE = """<style>
section.serve { border: 1px solid #ccc; padding: 0.5em 1em; margin-bottom: 1.5em; background: #fafafa; }
section.serve label { margin-right: 1em; } section.serve h2 { margin-top: 0.3em; }
#submit-result.error { color: #a00; white-space: pre-wrap; font-family: monospace; }
table.mine td { text-align: left; } p.live { color: #555; font-size: 0.85em; }
</style>"""

SCRIPT = r"""
"use strict";
const $ = (id) => document.getElementById(id);
const tokenBox = $("token");
tokenBox.value = sessionStorage.getItem("harness-token") || "";

function auth() {
  return { Authorization: "Bearer " + tokenBox.value.trim() };
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  row.appendChild(td);
}

async function refreshMine() {
  if (!tokenBox.value.trim()) return;
  const r = await fetch("/api/submissions", { headers: auth() });
  if (!r.ok) return;
  const data = await r.json();
  const body = $("mine-rows");
  body.replaceChildren();
  for (const s of data.submissions) {
    const row = document.createElement("tr");
    const p = s.progress || {};
    cell(row, s.entry);
    cell(row, s.status);
    const queued = s.status === "queued" ? "#" + (s.queue_position + 1) + " in the queue" : "";
    cell(row, p.runs != null ? p.runs_ended + "/" + p.runs + " runs" : queued);
    cell(row, s.created_at);
    cell(row, s.id);
    cell(row, s.reason);
    body.appendChild(row);
  }
  $("mine").hidden = false;
}

$("submit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = $("submit-result");
  sessionStorage.setItem("harness-token", tokenBox.value.trim());
  const form = new FormData();
  form.append("file", $("file").files[0]);
  if ($("name").value.trim()) form.append("name", $("name").value.trim());
  out.className = "";
  out.textContent = "uploading...";
  const r = await fetch("/api/submissions", { method: "POST", headers: auth(), body: form });
  const data = await r.json().catch(() => ({ error: "the server's answer was not JSON (" + r.status + ")" }));
  if (r.ok) {
    out.textContent = "queued as " + data.entry + " (submission " + data.id + ")";
  } else {
    out.className = "error";
    out.textContent = data.error;
  }
  refreshMine();
});

async function refreshBoard() {
  const r = await fetch("/api/leaderboard/version");
  if (!r.ok) return;
  const { version } = await r.json();
  if (version === document.body.dataset.version) return;
  const page = await fetch("/board");
  if (!page.ok) return;
  $("board").innerHTML = await page.text();  // the server's report, escaped as the report escapes it
  document.body.dataset.version = version;
}

refreshMine();
setInterval(() => { refreshBoard(); refreshMine(); }, 5000);
"""


def body_of(report: str) -> str:
    """What the report shows: the part between its ``<body>`` and ``</body>``."""
    start, end = report.find("<body>"), report.rfind("</body>")
    if start < 0 or end < start:
        return report
    return report[start + len("<body>") : end]


def page(report: str, version: str, live: str) -> str:
    """The report with the form above it and the live script below; ``live`` is a line saying what
    the board is (profile, phase, queue)."""
    header = _HEADER.format(live=html.escape(live))
    head_end = report.find("</head>")
    if head_end >= 0:
        report = report[:head_end] + _STYLE + report[head_end:]
    start, end = report.find("<body>"), report.rfind("</body>")
    if start < 0 or end < start:
        return (
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{_STYLE}</head>'
            f'<body data-version="{html.escape(version)}">{header}{html.escape(report)}</div>'
            '<script src="/static/board.js"></script></body></html>'
        )
    return (
        report[:start]
        + f'<body data-version="{html.escape(version)}">'
        + header
        + report[start + len("<body>") : end]
        + '</div>\n<script src="/static/board.js"></script>\n</body>'
        + report[end + len("</body>") :]
    )
