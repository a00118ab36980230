"""Terminal escape sequences in everything the worker can say: its printed output (the worker-log
tail shown on a crash) and an exception message (the reason shown and stored): a clipboard write
(OSC 52), clear screen, hidden text, a carriage return that overwrites the line with a forged "ok",
and a bidi override. None may reach the operator's terminal, failure.txt or the report."""
import os

import torch.nn as nn

NASTY = "\x1b]52;c;ZXZpbA==\x07\x1b[2J\x1b[8mhidden\x1b[0m\r\u202eko :tluser\x9b31m ok"


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, step):
        print(NASTY, flush=True)
        if step == 1:
            raise RuntimeError(NASTY)
        if step == 2:
            os._exit(3)  # a crash: the message quotes the worker log's tail
        return fine_loss + coarse_loss
