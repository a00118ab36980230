"""``harness evaluate`` read on an 80-column terminal: the live display and the tables it ends
with are whole (stacked rather than cut), on a real pseudo-terminal and for the results table alone."""

from __future__ import annotations

import io
import re
import shutil

import pytest
from helpers import REPO, harness_on_screen, run_spec, tiny_profile
from rich.cells import cell_len
from rich.console import Console

from harness.protocol import RunResult
from harness.report.run_table import results_table
from harness.results.record import Recorded

LONG = "uncertainty_weighting_with_a_learned_temperature_and_warmup_v2.py"


def _table(records, width: int, several: bool) -> list[str]:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    console.print(results_table(console, records, several=several))
    return [line.rstrip() for line in console.file.getvalue().splitlines()]


def _record(submission: str, arch: str, seed: int, acc: float | None = 44.8) -> Recorded:
    result = RunResult(
        status="ok" if acc else "failed",
        epochs_done=3,
        best_fine_acc=acc,
        best_epoch=2 if acc else None,
        final_fine_acc=acc,
        best_coarse_acc=acc and acc + 15.25,
        wall_seconds=1234.0,
        reason=None if acc else "WorkerError: boom",
    )
    return Recorded(spec=run_spec(tiny_profile(), arch, seed, submission=submission), result=result, run=None)


def test_the_results_table_is_compact_at_80_columns_with_every_name_and_number_whole():
    records = [
        _record(LONG, "resnet20", 42),
        _record("b.py", "resnet56", 456, 100.0),
        _record(LONG, "resnet56", 123, None),
    ]
    lines = _table(records, 80, several=True)
    text = "\n".join(lines)
    assert all(cell_len(line) <= 80 for line in lines) and "…" not in text, text
    # each file's name above its runs (folded inside the column when longer), the runs of one file together
    names = [x.strip() for x in lines if not re.search(r"seed|status|best|run|──|results", x) and x.strip()]
    assert "".join(names) == LONG + "b.py", text
    assert re.search(r"^ resnet20 seed 42 +ok +44\.80 +3 +44\.80 +60\.05 +1234 s$", text, re.M), text
    assert re.search(r"^ resnet56 seed 123 +failed +1234 s$", text, re.M), text
    assert re.search(r"^ resnet56 seed 456 +ok +100\.00 +3 +100\.00 +115\.25 +1234 s$", text, re.M), text
    assert text.index("resnet56 seed 123") < text.index("b.py")  # grouped by file
    one = _table(records[:1], 80, several=False)  # one file: no name lines
    assert "seed 42" in "\n".join(one) and LONG not in "\n".join(one) and all(cell_len(x) <= 80 for x in one)
    wide = "\n".join(_table(records, 200, several=True))  # wide enough: the detailed table, one line per run
    assert f"│ {LONG} │ resnet20 │   42 │ ok     │         44.80 │" in wide, wide


@pytest.mark.slow
def test_evaluate_reads_whole_on_an_80_column_terminal(tmp_path):
    for name in (LONG, "b.py"):
        shutil.copyfile(REPO / "submissions" / "example_loss.py", tmp_path / name)
    code, screen, drawn = harness_on_screen("evaluate", LONG, "b.py", "--profile", "tiny", cwd=tmp_path, columns=80)
    text = "\n".join(screen)
    assert code == 0, text
    # every line drawn, live redraws included, fits and is whole
    assert not [line for line in drawn if cell_len(line) > 80], text
    assert not [line for line in drawn if "…" in line], text
    # the live display's last frame: the long name on its line, the state and the numbers under it
    assert re.search(rf"^{LONG[:-3]} resnet20 seed 42\n  ok  best +[\d.]+%  \d:\d\d:\d\d$", text, re.M), text
    assert re.search(r"^b resnet20 seed 42 +━+ ok\n  best +[\d.]+%  \d:\d\d:\d\d$", text, re.M), text
    assert re.search(r"^  2/2 runs ended, 0 running, 0 queued  \d:\d\d:\d\d", text, re.M), text
    # a frame drawn while training: the losses and accuracies whole
    assert any(
        re.fullmatch(r"  (epoch 1/1  )?loss [\d.]+/[\d.]+  test fine +[\d.]+%  best +[\d.]+%.*", x) for x in drawn
    )
    # the results table: both files, every number
    assert re.search(r"^ resnet20 seed 42 +ok +[\d.]+ +1 +[\d.]+ +[\d.]+ +\d+ s$", text, re.M), text
    assert LONG in "".join(line.strip() for line in screen) and "\n b.py\n" in text, text
