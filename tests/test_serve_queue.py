"""The served board's database without a server: tokens stored as digests and compared exactly,
the queue's round-robin order between participants, entry names owned by one participant, and
``harness serve`` without its extra installed."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from harness.serve.db import Database, new_id


def _queue(db: Database, who: str, entry: str) -> str:
    sid = new_id()
    assert db.add_submission(sid, who, entry, "0" * 64)
    return sid


def test_tokens_are_stored_as_digests_and_compared_exactly(tmp_path):
    db = Database(tmp_path / "board.sqlite")
    token = db.add_participant("alice")
    assert db.authenticate(token) == "alice"
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("board.sqlite"))
    secret = token.split("_", 2)[2]  # hsb_<key id>_<secret>; a secret may contain "_"
    assert token.encode() not in raw and secret.encode() not in raw  # neither the token nor its secret
    rows = sqlite3.connect(tmp_path / "board.sqlite").execute("SELECT token_sha256 FROM participants").fetchall()
    assert rows == [(hashlib.sha256(secret.encode()).hexdigest(),)]
    assert (tmp_path / "board.sqlite").stat().st_mode & 0o777 == 0o600
    # one character changed anywhere, another participant's key id, a truncated token: no one
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    bob = db.add_participant("bob")
    assert db.authenticate(flipped) is None
    assert db.authenticate(bob[: -len(secret)] + secret) is None  # bob's key id, alice's secret
    assert db.authenticate(token[:-2]) is None and db.authenticate("") is None
    db.revoke("alice")
    assert db.authenticate(token) is None and db.authenticate(bob) == "bob"


def test_round_robin_between_participants(tmp_path):
    """Alice queues five, then Bob one and Carol one: Bob and Carol wait for one of Alice's, not five."""
    db = Database(tmp_path / "board.sqlite")
    for name in ("alice", "bob", "carol"):
        db.add_participant(name)
    alice = [_queue(db, "alice", f"a{i}.py") for i in range(5)]
    bob = _queue(db, "bob", "b.py")
    carol = _queue(db, "carol", "c.py")
    order = []
    for t in range(7):
        sub = db.claim_next(now=1000.0 + t)
        assert sub is not None
        order.append(sub.id)
        db.finish(sub.id, "done", 0, None)
    assert db.claim_next() is None
    # by hand: a0 first (queued first); then the two who never started, in queue order; then Alice's rest
    assert order == [alice[0], bob, carol, *alice[1:]]


def test_interrupted_first_and_one_evaluation_per_entry(tmp_path):
    db = Database(tmp_path / "board.sqlite")
    db.add_participant("alice")
    db.add_participant("bob")
    first = _queue(db, "alice", "x.py")
    second = _queue(db, "alice", "x.py")  # a second version of the same entry
    other = _queue(db, "bob", "y.py")
    assert db.claim_next(now=1.0).id == first
    # the same entry is never evaluated twice at once: bob's goes next, alice's second waits
    assert db.claim_next(now=2.0).id == other
    assert db.claim_next(now=3.0) is None
    db.requeue(first)  # the server stopped while it ran
    db.finish(other, "done", 0, None)
    resumed = db.claim_next(now=4.0)
    assert resumed.id == first and resumed.attempts == 2  # interrupted work goes first, its attempt counted
    db.finish(first, "done", 0, None)
    assert db.claim_next(now=5.0).id == second


def test_an_entry_name_belongs_to_one_participant_in_any_case(tmp_path):
    db = Database(tmp_path / "board.sqlite")
    db.add_participant("alice")
    db.add_participant("bob")
    _queue(db, "alice", "loss.py")
    assert db.add_submission(new_id(), "bob", "loss.py", "1" * 64) is False
    assert db.add_submission(new_id(), "bob", "LOSS.py", "1" * 64) is False
    assert db.add_submission(new_id(), "alice", "loss.py", "2" * 64) is True  # her next version
    assert db.owner_of("Loss.py") == "alice"
    db.revoke("alice")
    assert db.add_submission(new_id(), "bob", "loss.py", "1" * 64) is False  # still hers


def test_serve_without_the_extra_says_how_to_install(monkeypatch, tmp_path, capsys):
    import importlib.util

    from harness.cli.commands import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "--profile", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "uvicorn missing" in err and "pip install 'harness[serve]'" in err
    assert not (tmp_path / "harness-serve.sqlite").exists()


@pytest.mark.parametrize("name", ["../x", "", "a b", "x" * 65])
def test_participant_names_follow_a_rule(tmp_path, name):
    from harness.errors import UsageError

    with pytest.raises(UsageError, match="cannot name a participant"):
        Database(tmp_path / "board.sqlite").add_participant(name)


def test_a_leftover_evaluation_is_found_by_its_arguments_and_stopped(tmp_path):
    """After a server died, the next one stops the `harness evaluate` of an entry's file that is still
    running, and nothing else that happens to mention that path."""
    import subprocess
    import sys

    from harness.serve.runner import leftovers, stop_leftover

    marker = str(tmp_path / "entries" / "alice" / "loss.py")
    sleeper = "import time; time.sleep(120)"
    child = subprocess.Popen([sys.executable, "-c", sleeper, "evaluate", marker], start_new_session=True)
    bystander = subprocess.Popen([sys.executable, "-c", sleeper, "less", marker], start_new_session=True)
    try:
        import time

        deadline = time.monotonic() + 30
        while child.pid not in leftovers(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert leftovers(marker) == [child.pid]
        stop_leftover(child.pid, marker, grace=10)
        assert child.wait(timeout=10) == -15  # SIGTERM: the command line stops as on Ctrl-C
        assert bystander.poll() is None and leftovers(marker) == []
    finally:
        for p in (child, bystander):
            p.kill()
            p.wait()
