"""harness: a leaderboard evaluation system for multi-task loss strategies on CIFAR-100."""

import os

# Idle OpenMP threads sleep instead of spinning between parallel regions, so that trainers sharing a
# machine leave their cores to each other (harness.training.sharing). Read by OpenMP when torch is
# first imported: set here, before any harness module imports torch. A value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
