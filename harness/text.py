"""The one text cleaner: text that a submission file or the loss worker controls, made safe to print,
store or render."""

from __future__ import annotations

import re

_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 control characters but newline and tab (terminal escape sequences start with ESC or
CSI), and the zero-width and bidirectional-override characters that hide or reorder text."""


def printable(text: str) -> str:
    """``text`` with every character of :data:`_UNPRINTABLE` replaced by ``?``: no escape sequence
    reaches a terminal, a file or a page, and nothing hides or reorders the text around it."""
    return _UNPRINTABLE.sub("?", text)
