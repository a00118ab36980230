"""The ``harness`` command: :mod:`.commands` (one thin function per subcommand, and :func:`main`),
:mod:`.parser` (options, help texts and examples)."""

from harness.cli.commands import main

__all__ = ["main"]
