"""Per-epoch checkpoints of one run, so that a killed evaluation resumes where it stopped.

At the end of every epoch the trainer writes, into ``<run_dir>/checkpoint/``:

- ``messages.bin``: every STEP frame sent to the loss worker so far (rewritten whole). The
  worker's state is never saved: on resume a fresh worker is sent these frames again, so the
  trainer never loads anything the (untrusted) worker wrote.
- ``epoch-<e>.pt``: model, optimizer, RNG states, the metrics so far and how many bytes of
  ``messages.bin`` belong to it. Written to a temporary file, fsynced, then renamed.
- ``manifest.json``: the checkpoints (newest last) with the sha256 of each file, written the same
  way. The two newest checkpoints are kept.

Loading verifies the sha256 of the checkpoint and of the message log prefix; a damaged newest
checkpoint falls back to the previous one, and with none left the run starts from scratch.
Everything loads onto the CPU (RNG states must stay CPU byte tensors; the trainer moves the rest).
A save after resuming from an older checkpoint drops the entries it supersedes and rewrites the
log from the resumed prefix, so damaged bytes never survive into a new checkpoint. The
checkpoint directory is removed when the run finishes.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils._pytree import tree_map

from harness.protocol import EpochMetrics, RunSpec
from harness.settings import identity
from harness.util.fileio import private_dirs, sha256_bytes, write_atomic

KEEP = 2


@dataclass
class Resume:
    epochs_done: int
    history: list[EpochMetrics]
    frames: list[bytes]
    state: dict


def _identity(spec: dict) -> dict:
    """What a spec (as JSON) computes (:func:`harness.settings.identity`); one written before the
    protocol version was recorded was written by a build of version 1."""
    return identity({"protocol_version": 1, **spec}, RunSpec)


def _frames(blob: bytes) -> list[bytes]:
    from harness.isolation import wire

    frames, i = [], 0
    while i < len(blob):
        kind, length = wire.HEADER.unpack_from(blob, i)
        if kind != wire.STEP or length != wire.STEP_RECORD.size:  # e.g. an older build's STEP record
            raise ValueError("its loss-worker messages are not this harness version's")
        end = i + wire.HEADER.size + length
        frames.append(blob[i:end])
        i = end
    return frames


def _on_cpu(state: dict) -> dict:
    """A copy of ``state`` whose tensors are CPU copies of the given ones (the originals keep training)."""
    return tree_map(lambda v: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v, state)


def background_writes(device: torch.device) -> bool:
    """Whether a run on ``device`` writes its checkpoints in the background: on a GPU, whose training
    goes on while the CPU writes; not on a CPU, whose cores are the training's."""
    return device.type == "cuda"


class Checkpointer:
    def __init__(self, directory: Path, spec: RunSpec) -> None:
        self.dir = Path(directory)  # a run's RunDir.checkpoint
        # what it computes must not change between attempts; where and how fast it runs (the spec's fields
        # marked PLACE: device, sandbox, channels_last...) may (harness.settings.identity)
        self.identity = _identity(json.loads(spec.model_dump_json()))
        self.messages = self.dir / "messages.bin"
        self.manifest = self.dir / "manifest.json"
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def clear(self) -> None:
        self.settle()
        shutil.rmtree(self.dir, ignore_errors=True)

    def settle(self) -> None:
        """Until no write is under way, dropping its error (the run ends or stops anyway; what was
        written is on disk, what was not is not in the manifest)."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        self._error = None

    def _ours(self, spec: object) -> bool:
        """Whether a manifest's spec (its identity as JSON) is this run's: it computes the same."""
        try:
            data = json.loads(spec) if isinstance(spec, str) else None
        except ValueError:
            return False
        return isinstance(data, dict) and _identity(data) == self.identity

    def _entries(self) -> list[dict]:
        try:
            data = json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            return []
        if not isinstance(data, dict) or not self._ours(data.get("spec")):  # not ours to resume
            return []
        keys = {"file": str, "sha256": str, "message_bytes": int, "messages_sha256": str, "epochs_done": int}
        entries = data.get("checkpoints")
        return [
            e
            for e in (entries if isinstance(entries, list) else [])
            if isinstance(e, dict) and all(isinstance(e.get(k), t) for k, t in keys.items())
        ]

    def _foreign(self) -> bool:
        """A manifest with checkpoints for another spec."""
        try:
            data = json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and bool(data.get("checkpoints")) and not self._ours(data.get("spec"))

    def save(
        self,
        epochs_done: int,
        history: list[EpochMetrics],
        frames: list[bytes],
        state: dict,
        *,
        background: bool = False,
    ) -> None:
        """Write the checkpoint after ``epochs_done`` epochs; ``frames`` are all STEP frames so far.

        ``background``: everything is copied to the CPU now (the training goes on changing the
        tensors), and serialised, hashed and written by a thread while the next epoch trains (on a
        GPU the CPU is otherwise idle, and a VGG-16-BN checkpoint is 118 MB a seed). The guarantee is
        the same: a checkpoint counts once its manifest is written (last, atomically); a process
        killed before that resumes from the previous one. One write at a time, in order; an error in
        the thread is raised by the next :meth:`save`, :meth:`wait` or :meth:`load`."""
        self.wait()
        snapshot = (epochs_done, list(history), list(frames), _on_cpu(state))
        if not background:
            self._write(*snapshot)
            return
        self._writer = threading.Thread(target=self._write_noting_error, args=snapshot, daemon=True)
        self._writer.start()

    def wait(self) -> None:
        """Until the checkpoint being written in the background (if any) is on disk; raises its error."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _write_noting_error(self, *snapshot) -> None:
        try:
            self._write(*snapshot)
        except BaseException as e:  # noqa: BLE001  (raised in the trainer's thread by wait())
            self._error = e

    def _write(self, epochs_done: int, history: list[EpochMetrics], frames: list[bytes], state: dict) -> None:
        private_dirs(self.dir)
        # entries from before this one only: a later or equal one was damaged (we resumed before it)
        # or belongs to an attempt that this one replaces
        entries = [e for e in self._entries() if e["epochs_done"] < epochs_done]
        blob = b"".join(frames)
        # the log starts with every kept entry's prefix (frames include the replayed ones), so
        # rewriting it whole keeps those entries valid and drops whatever followed them
        write_atomic(self.messages, blob)
        payload = {
            "epochs_done": epochs_done,
            "history": [m.model_dump() for m in history],
            "message_bytes": len(blob),
            **state,
        }
        path = self.dir / f"epoch-{epochs_done}.pt"
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
        write_atomic(path, data)
        entries.append(
            {
                "file": path.name,
                "sha256": sha256_bytes(data),
                "message_bytes": len(blob),
                "messages_sha256": sha256_bytes(blob),
                "epochs_done": epochs_done,
            }
        )
        for old in entries[:-KEEP]:
            (self.dir / old["file"]).unlink(missing_ok=True)
        entries = entries[-KEEP:]
        write_atomic(self.manifest, json.dumps({"spec": json.dumps(self.identity), "checkpoints": entries}).encode())

    def load(self, at_most: int | None = None) -> tuple[Resume | None, list[str]]:
        """The newest intact checkpoint (None: start from scratch), of at most ``at_most`` epochs when
        given (fused seeds go on from the same epoch), and messages saying what was skipped. Never
        raises; every tensor is on the CPU."""
        notes = []
        self.wait()
        entries = [e for e in self._entries() if at_most is None or e["epochs_done"] <= at_most]
        if not entries and self._foreign():
            notes.append(
                "the checkpoint here was written for other settings (or by another harness version); "
                "starting from scratch"
            )
        try:
            log = self.messages.read_bytes() if entries else b""
        except OSError:
            log = b""
        for entry in reversed(entries):
            path = self.dir / entry["file"]
            try:
                data = path.read_bytes()
            except OSError:
                notes.append(f"checkpoint {entry['file']} is missing")
                continue
            try:
                prefix = log[: entry["message_bytes"]]
                if (
                    sha256_bytes(data) != entry["sha256"]
                    or len(prefix) != entry["message_bytes"]
                    or sha256_bytes(prefix) != entry["messages_sha256"]
                ):
                    notes.append(f"checkpoint {entry['file']} is damaged (checksum mismatch)")
                    continue
                payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
                history = [EpochMetrics(**m) for m in payload.pop("history")]
                epochs = payload.pop("epochs_done")
                payload.pop("message_bytes")
                return Resume(epochs, history, _frames(prefix), payload), notes
            except Exception as e:  # noqa: BLE001  (an intact file this build cannot read)
                notes.append(f"checkpoint {entry['file']} cannot be read ({type(e).__name__}: {e})")
        return None, notes
