"""How the live progress display fits the terminal (:mod:`harness.report.progress` owns what it says).

Every task of the :class:`FittedProgress` carries the text fields ``label``, ``state``, ``stats``
(fields separated by two spaces), ``eta`` and ``run`` (``all`` for the overall line, else the run's
state: queued, running, retrying, ok or failed). At each refresh the layout is chosen for the
width the terminal has then:

1. one line per task, as Rich's progress table lays it out, when it fits with the bar;
2. the same without the bar;
3. stacked: the name, the bar (when at least a short one fits) and the state on one line, and
   under them, indented, the numbers and the times, wrapped between fields when they do not fit.

Nothing is cut with an ellipsis: a name longer than the whole line wraps. When the lines would not
fit the terminal's height, the queued runs, then the ended ones, fold into one line each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.progress import BarColumn, Progress, Task
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

STATS_WIDTH = 49  # the widest run line: "loss 4.399/2.281  test fine 100.00%  best 100.00%"
STATE_WIDTH = 13  # "epoch 200/200", as the state column pads it
TIME_WIDTH = 7  # 0:00:00
ETA_WIDTH = 11  # ETA 0:00:00
BAR_WIDTH = 24
MIN_BAR = 8  # a shorter bar is left out
INDENT = "  "
GAP = "  "
_FIELD = re.compile(r"  (?=[a-z])")  # between two fields of a line ("test fine  8.80%" is one field)


class FittedProgress(Progress):
    """Rich's progress display, laid out anew for the terminal's size at every refresh."""

    def make_tasks_table(self, tasks: Iterable[Task]) -> Table:
        return _Fitted(self, [t for t in tasks if t.visible])  # type: ignore[return-value]

    def one_line_table(self, tasks: list[Task], *, bar: bool) -> Table:
        columns = [c for c in self.columns if bar or not isinstance(c, BarColumn)]
        table = Table.grid(*(c.get_table_column().copy() for c in columns), padding=(0, 1))  # type: ignore[union-attr]
        for task in tasks:
            table.add_row(*(c(task) for c in columns))  # type: ignore[operator]
        return table


def _elapsed(task: Task) -> str:
    seconds = task.finished_time if task.finished else task.elapsed
    if seconds is None:
        return "-:--:--"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _flow(fields: list[str], width: int, indent: str = INDENT) -> list[Text]:
    """``fields`` (Rich markup) on as few lines as ``width`` allows, each line starting with
    ``indent``; a line breaks only between fields (a field wider than a whole line wraps by itself)."""
    lines: list[Text] = []
    for field in map(Text.from_markup, filter(None, fields)):
        if lines and lines[-1].cell_len + len(GAP) + field.cell_len <= width:
            lines[-1].append(GAP).append_text(field)
        else:
            lines.append(Text(indent).append_text(field))
    return lines


class _Fitted:
    def __init__(self, progress: FittedProgress, tasks: list[Task]) -> None:
        self.progress, self.tasks = progress, tasks

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width, height = options.max_width, options.height or console.height
        tasks, folded = self._fit_height(self.tasks, height, self._lines_per_task(width))
        label = max((cell_len(t.fields["label"]) for t in tasks), default=0)
        stats = max([STATS_WIDTH] + [cell_len(t.fields["stats"]) for t in tasks])
        one_line = label + 1 + STATE_WIDTH + 1 + stats + 1 + TIME_WIDTH + 1 + ETA_WIDTH
        if one_line + 1 + BAR_WIDTH <= width:
            yield self.progress.one_line_table(tasks, bar=True)
        elif one_line <= width:
            yield self.progress.one_line_table(tasks, bar=False)
        else:
            # the names column: as wide as the longest name that leaves room for the state
            fit = [cell_len(t.fields["label"]) for t in tasks if cell_len(t.fields["label"]) < width - STATE_WIDTH]
            for task in tasks:
                yield from self._stacked(console, task, width, max(fit, default=0))
        for line in folded:
            yield Text(line)

    def _lines_per_task(self, width: int) -> int:
        label = max((cell_len(t.fields["label"]) for t in self.tasks), default=0)
        return 1 if label + STATE_WIDTH + STATS_WIDTH + TIME_WIDTH + ETA_WIDTH + 4 <= width else 2

    @staticmethod
    def _fit_height(tasks: list[Task], height: int, per_task: int) -> tuple[list[Task], list[str]]:
        """The tasks to draw, and the lines that stand for the others: the queued runs first, then
        the ended ones, fold into a line each when everything would not fit ``height`` lines."""
        budget = max(height - 2, 1)
        if len(tasks) * per_task <= budget:
            return tasks, []
        queued = [t for t in tasks if t.fields["run"] == "queued"]
        ended = [t for t in tasks if t.fields["run"] in ("ok", "failed")]
        folded: list[str] = []
        if queued:
            tasks = [t for t in tasks if t not in queued]
            folded.append(f"{len(queued)} more run{'s' if len(queued) != 1 else ''} queued")
        if ended and len(tasks) * per_task + len(folded) > budget:
            tasks = [t for t in tasks if t not in ended]
            failed = sum(t.fields["run"] == "failed" for t in ended)
            folded.insert(
                0,
                f"{len(ended)} run{'s' if len(ended) != 1 else ''} ended ({len(ended) - failed} ok, {failed} failed):"
                " the results table follows at the end",
            )
        return tasks, folded

    def _stacked(self, console: Console, task: Task, width: int, column: int) -> Iterable[Text]:
        """The name, the bar and the state; under them the numbers and the times. A name too long
        to leave room for the state is a line of its own (wrapped if need be), the state under it."""
        label, state = task.fields["label"], task.fields["state"]
        fields = _FIELD.split(task.fields["stats"]) + [_elapsed(task) if task.started else "", task.fields["eta"]]
        if cell_len(label) <= column:
            head = Text(label.ljust(column), style="bold")
            bar = width - column - 1 - STATE_WIDTH - 1
            if bar >= MIN_BAR:
                head.append(" ")
                head.append_text(self._bar(console, task, min(bar, BAR_WIDTH)))
            head.append(" ")
            head.append_text(Text.from_markup(state))
            yield head
        else:
            yield Text(label, style="bold")
            fields.insert(0, state)
        yield from _flow(fields, width)

    @staticmethod
    def _bar(console: Console, task: Task, width: int) -> Text:
        """Rich's own bar (blank for a run not started yet), as text to put on a line."""
        if not task.started:
            return Text(" " * width)
        bar = ProgressBar(total=task.total, completed=task.completed, width=width)
        segments = console.render(bar, console.options.update(width=width, height=1))
        text = Text()
        for s in segments:
            if not s.control and s.text != "\n":
                text.append(s.text, s.style)
        text.align("left", width)  # without colour Rich leaves the part to go blank
        return text
