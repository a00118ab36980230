"""Coarse-to-fine curriculum, Kaggle-notebook style: logging, optional wandb / tensorboard / tqdm,
seed_everything(), settings from the environment with defaults, and the numbers worth watching."""

import logging
import os
import random
import time
import warnings

import numpy as np
import torch
import torch.nn as nn

try:
    import wandb

    HAS_WANDB = True
except ImportError:
    HAS_WANDB = False

try:
    from torch.utils.tensorboard import SummaryWriter
except ImportError:
    SummaryWriter = None

try:
    from tqdm.auto import tqdm
except ImportError:
    tqdm = None

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
logger = logging.getLogger(__name__)
warnings.filterwarnings("ignore", category=UserWarning)

WARMUP_FRAC = float(os.environ.get("WARMUP_FRAC", 0.15))
MAX_COARSE = float(os.getenv("MAX_COARSE", "1.0"))


def seed_everything(seed=42):
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        seed_everything(42)
        self.started = time.time()
        self.coarse_weight = np.float64(MAX_COARSE)
        self.writer = SummaryWriter() if SummaryWriter is not None else None
        logger.info("wandb: %s, tensorboard: %s, tqdm: %s", HAS_WANDB, self.writer is not None, tqdm is not None)
        if HAS_WANDB:
            wandb.init(project="cifar100-mtl")

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        progress = epoch / max(1, total_epochs)
        if progress < WARMUP_FRAC:
            self.coarse_weight = np.float64(MAX_COARSE)
        else:
            self.coarse_weight = np.float64(MAX_COARSE * (1 - progress) / (1 - WARMUP_FRAC))
        if HAS_WANDB:
            wandb.log({"coarse_weight": self.coarse_weight})
        return fine_loss + float(self.coarse_weight) * coarse_loss

    def scalars(self):
        return {"coarse_weight": self.coarse_weight, "elapsed": np.float32(time.time() - self.started)}
