"""harness: a leaderboard evaluation system for multi-task loss strategies on CIFAR-100."""

__version__ = "0.1.0"
