"""The static check: each hostile pattern is named with its line; ordinary code passes."""

import textwrap

import pytest

from harness.errors import SubmissionRejected
from harness.isolation.check import static_check

HEADER = "import torch\nimport torch.nn as nn\n\n\nclass MultiTaskLoss(nn.Module):\n"


def _file(tmp_path, body):
    path = tmp_path / "loss.py"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.parametrize(
    "body, line, message",
    [
        ("import subprocess\n" + HEADER + "    pass\n", 1, "import of 'subprocess' is not allowed"),
        ("import gc\n" + HEADER + "    pass\n", 1, "import of 'gc' is not allowed"),
        ("from sys import _getframe\n" + HEADER + "    pass\n", 1, "import from 'sys' is not allowed"),
        ("from torch import load\n" + HEADER + "    pass\n", 1, "importing 'torch.load' is not allowed"),
        ("from . import sibling\n" + HEADER + "    pass\n", 1, "import from '.' is not allowed"),
        (HEADER + "    x = eval('1')\n", 6, "`eval` is not allowed"),
        (HEADER + "    f = open\n", 6, "`open` is not allowed"),
        (HEADER + "    b = getattr(__builtins__, 'open')\n", 6, "the name '__builtins__' is not allowed"),
        (
            HEADER + "    m = getattr(torch, 'load')\n",
            6,
            None,
        ),  # literal name: allowed by rule 2, caught by the sandbox
        (
            HEADER + "    name = 'lo' + 'ad'\n    m = getattr(torch, name)\n",
            7,
            "`getattr` needs a literal, non-private",
        ),
        (HEADER + "    k = (1).__class__.__bases__\n", 6, "the attribute '__class__' is not allowed"),
        (
            HEADER + "    def forward(self, f, c, e, t):\n        return f.grad_fn.next_functions\n",
            7,
            "the attribute 'grad_fn' is not allowed",
        ),
        (HEADER + "    s = torch.serialization.os.system\n", 6, "the attribute 'os' is not allowed"),
        (HEADER + "    h = torch.hub\n", 6, "torch.hub is not allowed"),
        (HEADER + "    c = torch._C\n", 6, "private torch attribute torch._C is not allowed"),
        (
            HEADER + "    def f(self):\n        torch.nn.functional.cross_entropy = None\n",
            7,
            "modifying the module 'torch.nn.functional' is not allowed",
        ),
        (
            "import torch as t\nimport torch.nn as nn\n\nclass MultiTaskLoss(nn.Module):\n    x = t.save\n",
            5,
            "torch.save is not allowed",
        ),
        (
            HEADER + "    def forward(self, f, c, e, t):\n        return f + c + torch.cuda.current_device()\n",
            7,
            "torch.cuda is not allowed (the loss runs on the CPU)",
        ),
    ],
)
def test_hostile_patterns_are_rejected_with_their_line(body, line, message, tmp_path):
    path = _file(tmp_path, body)
    if message is None:
        static_check(path)
        return
    with pytest.raises(SubmissionRejected) as e:
        static_check(path)
    assert f"loss.py:{line}: {message}" in str(e.value)


def test_every_problem_is_listed(tmp_path):
    path = _file(tmp_path, "import socket\nimport sys\n" + HEADER + "    x = eval('1')\n")
    with pytest.raises(SubmissionRejected) as e:
        static_check(path)
    text = str(e.value)
    assert "3 problem(s)" in text and "loss.py:1:" in text and "loss.py:2:" in text and "loss.py:8:" in text
    assert "allowed imports: " in text and "torch.nn.functional" in text


def test_ordinary_code_passes(tmp_path):
    path = _file(
        tmp_path,
        '''
        """A docstring."""
        from __future__ import annotations

        import collections
        import math
        import random
        from dataclasses import dataclass
        from typing import Optional

        import torch
        import torch.nn.functional as F
        from torch import Tensor, nn


        @dataclass
        class Config:
            temperature: float = 2.0


        class MultiTaskLoss(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                nn.Module.__init__(self)
                self.w = nn.Parameter(torch.zeros(2))
                self.register_buffer("count", torch.zeros(()))
                self._history = collections.deque(maxlen=10)
                self.cfg = Config()

            def forward(self, fine_loss: Tensor, coarse_loss: Tensor, epoch: int, total_epochs: int,
                        *, gramian: Optional[Tensor] = None) -> Tensor:
                self._history.append(fine_loss.item())
                weights = F.softmax(self.w / self.cfg.temperature, dim=0) * 2
                scale = math.cos(math.pi * epoch / total_epochs) + random.random() * 0
                if getattr(self, "w", None) is None or __name__ == "x":
                    pass
                return weights[0] * fine_loss + weights[1] * coarse_loss * (1 + 0 * scale)
        ''',
    )
    static_check(path)


def test_size_cap_and_encoding(tmp_path):
    big = tmp_path / "big.py"
    big.write_text(HEADER + "    pass\n" + "# padding\n" * 10_000)
    with pytest.raises(SubmissionRejected, match="a submission is at most 65,536 bytes"):
        static_check(big)
    latin = tmp_path / "latin.py"
    latin.write_bytes(b"# caf\xe9\n" + HEADER.encode() + b"    pass\n")
    with pytest.raises(SubmissionRejected, match="not UTF-8"):
        static_check(latin)


HABITS = {
    "logging to worker.log": """
        import logging
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        logger = logging.getLogger(__name__)
        logger.info("started")
    """,
    "warnings and time": """
        import time
        import warnings
        warnings.filterwarnings("ignore", category=UserWarning)
        STARTED = time.time()
        time.sleep(0)
    """,
    "settings from the environment, with defaults": """
        import os
        from os import environ, getenv
        WARMUP = float(os.environ.get("WARMUP_FRAC", 0.15))
        T = float(os.getenv("T", "2.0"))
        DEBUG = "DEBUG" in environ and getenv("X") is None
        os.environ["PYTHONHASHSEED"] = "42"
    """,
    "seed_everything with CUDA and cuDNN calls": """
        import random
        import numpy as np
        def seed_everything(seed=42):
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            torch.cuda.manual_seed(seed)
            torch.cuda.manual_seed_all(seed)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.use_deterministic_algorithms(True)
            return torch.cuda.device_count()
    """,
    "optional tools guarded by except ImportError": """
        try:
            import wandb
        except ImportError:
            wandb = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except (ImportError, OSError):
            SummaryWriter = None
        try:
            from tqdm.auto import tqdm
        except Exception:
            tqdm = None
        try:
            import mlflow
        except ModuleNotFoundError:
            pass
    """,
    "scipy's numerical parts": """
        import scipy
        import scipy.linalg as sla
        from scipy import special
        from scipy.optimize import least_squares, minimize
        solve = scipy.optimize.minimize
        lam = sla.eigh
    """,
}


@pytest.mark.parametrize("habit", HABITS)
def test_research_habits_pass(habit, tmp_path):
    """Each of these was refused before; none can harm anything or fail where the loss runs."""
    path = _file(
        tmp_path,
        "import torch\nimport torch.nn as nn\n"
        + textwrap.dedent(HABITS[habit])
        + "\n\nclass MultiTaskLoss(nn.Module):\n    pass\n",
    )
    static_check(path)


@pytest.mark.parametrize(
    "code, message",
    [
        (
            "import sys",
            "import of 'sys' is not allowed: print() needs no sys: what it prints goes to the run's worker.log",
        ),
        ("import wandb", "import of 'wandb' is not allowed: record numbers with a scalars() method instead"),
        (
            "from torch.utils.tensorboard import SummaryWriter",
            "keep the import optional: inside `try:`, with `except ImportError:` and a fallback",
        ),
        (
            "from tqdm import tqdm",
            "a loss module has no loop to show progress of: remove it, or keep the import optional",
        ),
        ("import subprocess", "a loss module runs as one process with one thread"),
        ("try:\n    import subprocess\nexcept ImportError:\n    pass", "import of 'subprocess' is not allowed"),
        ("try:\n    import wandb\nexcept ValueError:\n    pass", "import of 'wandb' is not allowed"),
        ("import socket", "the sandbox has no network"),
        ("from pathlib import Path", "a loss module reads and writes no files: keep state on self"),
        ("import os\nos.system('ls')", "os.system is not allowed: only os.environ and os.getenv are available"),
        ("import os.path", "import of 'os.path' is not allowed: only os.environ and os.getenv"),
        ("from os import remove", "importing 'os.remove' is not allowed: only os.environ and os.getenv"),
        (
            "import os\nHOME = os.environ['HOME']",
            "raises KeyError in the loss worker, whose environment is empty: read it "
            "with a default, os.environ.get('NAME', default)",
        ),
        (
            "import logging\nlogging.basicConfig(filename='train.log')",
            "logging to a file is not allowed: logging output goes to the run's worker.log",
        ),
        ("import logging\nh = logging.FileHandler('x.log')", "logging.FileHandler is not allowed"),
        ("from logging.handlers import SocketHandler", "import from 'logging.handlers' is not allowed"),
        (
            "import scipy.io",
            "scipy's numerical parts are available (scipy.optimize, scipy.linalg, scipy.special), not its file readers",
        ),
        ("import scipy\nm = scipy.io.loadmat('x.mat')", "scipy.io is not allowed: scipy's numerical parts"),
        ("v = torch.backends.cudnn.version()", "torch.backends is not allowed"),
        ("torch.backends.cudnn.version = None", "modifying the module 'torch.backends.cudnn' is not allowed"),
    ],
)
def test_what_can_harm_or_cannot_work_is_refused_with_what_to_do_instead(code, message, tmp_path):
    path = _file(
        tmp_path, "import torch\nimport torch.nn as nn\n" + code + "\n\n\nclass MultiTaskLoss(nn.Module):\n    pass\n"
    )
    with pytest.raises(SubmissionRejected) as e:
        static_check(path)
    assert message in " ".join(str(e.value).split()), str(e.value)
