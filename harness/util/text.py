"""The one text cleaner: text that a submission file or the loss worker controls, made safe to print,
store or render."""

from __future__ import annotations

import re

from rich.console import Console

_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 control characters but newline and tab (terminal escape sequences start with ESC or
CSI), and the zero-width and bidirectional-override characters that hide or reorder text."""


def printable(text: str) -> str:
    """``text`` with every character of :data:`_UNPRINTABLE` replaced by ``?``: no escape sequence
    reaches a terminal, a file or a page, and nothing hides or reorders the text around it."""
    return _UNPRINTABLE.sub("?", text)


def one_line(text: str) -> str:
    """:func:`printable`, with newlines and tabs as spaces: a name or a cell on one line."""
    return printable(text).replace("\n", " ").replace("\t", " ")


_MARKDOWN = re.compile(r"([\\`*{}\[\]#|~$])")  # ( ) + ! act only next to an escaped [ ]; _ inside a word is text


def markdown_text(text: str) -> str:
    """``text`` as literal Markdown on one line: ``& < >`` as HTML entities (no raw HTML) and every
    other character Markdown acts on backslash-escaped (no heading, link or emphasis)."""
    text = one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN.sub(r"\\\1", text)


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """``text`` for a CSV a spreadsheet may open: a leading ``= + - @``, tab or CR (a formula to a
    spreadsheet) is preceded by ``'``, as OWASP advises for CSV injection."""
    return f"'{text}" if text.startswith(_FORMULA) else text


class SafeConsole(Console):
    """A Rich console that passes every string it renders through :func:`printable` first: no
    escape sequence from a file name, a leaderboard cell or a worker reaches the terminal (Rich's
    own styles are added after, and stay)."""

    def render_str(self, text: str, **kwargs):
        return super().render_str(printable(text), **kwargs)
