"""Identity is derived from the fields of RunSettings: the settings label (the comparison groups),
run directories' names and checkpoint compatibility follow each field's annotation, so that a new
option is one field; the protocol version keeps rows of incompatible trainer builds apart."""

from __future__ import annotations

import json
from typing import Annotated

import pandas as pd
import pytest
from helpers import SEEDS, leaderboard_row, run_spec, tiny_profile, write_leaderboard

from harness import api
from harness.errors import LeaderboardError
from harness.results import append_row, read_rows
from harness.results.rundir import EvalDir, RunDir


def _checkpoint(tmp_path, spec):
    from harness.training.checkpoint import Checkpointer

    return Checkpointer(RunDir(tmp_path / "r").checkpoint, spec)


def test_a_checkpoint_written_with_channels_last_resumes_without_it(tmp_path):
    """channels_last is where-and-how-fast (docs/protocol.md: a run resumes across it), like the device
    and the sandbox; what a run computes (here the precision) still keeps a checkpoint apart."""
    spec = run_spec(tiny_profile(epochs=3), submission="famo.py").model_copy(update={"channels_last": True})
    _checkpoint(tmp_path, spec).save(1, [], [], {"model": {}})
    for other in ({"channels_last": False}, {"channels_last": False, "device": "cuda:0", "sandbox": "bwrap"}):
        resume, notes = _checkpoint(tmp_path, spec.model_copy(update=other)).load()
        assert resume is not None and resume.epochs_done == 1 and notes == [], other
    resume, notes = _checkpoint(tmp_path, spec.model_copy(update={"precision": "bf16"})).load()
    assert resume is None and len(notes) == 1 and "other settings" in notes[0]


def test_a_checkpoint_of_the_previous_build_still_resumes_unless_the_protocol_version_changed(tmp_path):
    """A manifest as harness versions before the protocol version wrote it (the spec minus device,
    sandbox, path and fusion, channels_last in it, no protocol_version: version 1) is this run's."""
    spec = run_spec(tiny_profile(epochs=3), submission="famo.py")
    ckpt = _checkpoint(tmp_path, spec)
    ckpt.save(1, [], [], {"model": {}})
    manifest = json.loads(ckpt.manifest.read_text())
    old = spec.model_dump(
        mode="json", exclude={"device", "sandbox", "submission_path", "fused", "arch_source", "protocol_version"}
    )
    manifest["spec"] = json.dumps({**old, "channels_last": not spec.channels_last})
    ckpt.manifest.write_text(json.dumps(manifest))
    resume, notes = _checkpoint(tmp_path, spec).load()
    assert resume is not None and notes == []
    resume, notes = _checkpoint(tmp_path, spec.model_copy(update={"protocol_version": 2})).load()
    assert resume is None and "other settings" in notes[0]


@pytest.mark.parametrize(
    ("settings", "label", "suffix"),
    [
        ({}, "fp32", "resnet20-seed42"),
        ({"precision": "bf16"}, "bf16", "resnet20-seed42-bf16"),
        (
            {"compile": True, "deterministic": True},
            "fp32+compile+deterministic",
            "resnet20-seed42-compile-deterministic",
        ),
        ({"topology": "reuse-fine", "precision": "fp64"}, "fp64 reuse-fine", "resnet20-seed42-reuse-fine-fp64"),
        (
            {"topology": "independent", "precision": "bf16", "compile": True},
            "bf16+compile independent",
            "resnet20-seed42-independent-bf16-compile",
        ),
        ({"protocol_version": 1}, "fp32", "resnet20-seed42"),
    ],
)
def test_labels_and_run_directories_of_existing_settings_are_unchanged(tmp_path, settings, label, suffix):
    """The names rows and run directories already carry: derived now, byte for byte as before."""
    spec = run_spec(tiny_profile(), submission="famo.py").model_copy(update=settings)
    assert spec.settings.label == label
    run = EvalDir.of(tmp_path, "tiny", spec.entry, spec.submission_sha256).run(spec)
    assert run.path.name == suffix and run.path.parent.name == "public"
    row = leaderboard_row(**{"precision": "fp32", **settings})
    from harness.results.aggregate import settings_labels

    assert settings_labels(pd.DataFrame([row.model_dump()])) == [label]
    assert row.key == spec.key.model_copy(update={"entry": row.key.entry, "sha256": row.key.sha256})


def test_another_protocol_version_is_another_standing(tmp_path):
    """Rows identical but for the trainer build's protocol version are never pooled: through the
    board a user reads (harness.api.leaderboard), they are two entries in two settings groups."""
    rows = [
        leaderboard_row(
            seed=s,
            acc=60.0 + i + v,
            submission="mine.py",
            profile="full",
            arch=arch,
            epochs=200,
            protocol_version=v,
            run_id=f"full/{arch}-{s}-{v}",
        )
        for v in (1, 2)
        for arch in ("resnet20", "resnet56")
        for i, s in enumerate(SEEDS)
    ]
    board = api.leaderboard(write_leaderboard(tmp_path / "leaderboard.csv", rows))
    mine = sorted((e.group or "", e.entry, e.archs["resnet20"].n) for e in board.entries if e.name == "mine.py")
    assert mine == [("fp32", "mine.py", 3), ("fp32 protocol2", "mine.py [fp32 protocol2]", 3)]
    assert len({e.group for e in board.entries if e.name == "mine.py"}) == 2


def test_a_version_5_leaderboard_migrates_to_protocol_version_1(tmp_path):
    """Schema 6 records the protocol version; a version-5 file's measured rows were trained by version 1
    (published rows do not say). It reads migrated (the file left as it is), is refused for appending,
    and ``harness migrate`` converts a copy."""
    from harness.results.store import COLUMNS_BY_VERSION, migrate

    rows = [
        leaderboard_row(seed=1).model_dump(),
        {**leaderboard_row(seed=2).model_dump(), "origin": "published", "source": "a paper"},
    ]
    v5 = pd.DataFrame(rows).astype(str).replace({"None": ""})
    v5["schema_version"] = "5"
    path = tmp_path / "lb.csv"
    v5[list(COLUMNS_BY_VERSION[5])].to_csv(path, index=False, lineterminator="\n")
    before = path.read_bytes()
    read = read_rows(path)
    assert read["protocol_version"].fillna(0).tolist() == [1, 0] and set(read["schema_version"]) == {6}
    with pytest.raises(LeaderboardError, match="harness migrate"):
        read_rows(path, appending=True)
    with pytest.raises(LeaderboardError, match="harness migrate"):
        append_row(path, leaderboard_row())
    assert path.read_bytes() == before
    new, version = migrate(path)
    assert version == 5 and new.name == "lb.v6.csv"
    migrated = read_rows(new)
    assert migrated["protocol_version"].fillna(0).tolist() == [1, 0]
    assert migrated.drop(columns="protocol_version").equals(read.drop(columns="protocol_version"))
    again = append_row(new, leaderboard_row(seed=1))
    assert again.attempt == 2  # the migrated row is the same run: protocol version 1 is this build's


# --- a new option is one field of RunSettings ------------------------------------------------------


def test_every_identity_field_is_named_carried_and_recorded():
    """For each field of RunSettings (whatever they are): a value other than its default shows in the
    label (unless it is the profile or phase, shown apart) and the run directory, changes the run's key
    and its checkpoint identity, and is a leaderboard column; no field that only says where a run goes
    does any of that."""
    from harness.protocol import LEADERBOARD_COLUMNS, RunSettings, RunSpec
    from harness.settings import PLACE, Named, identity

    spec = run_spec(tiny_profile(), submission="famo.py")
    ident = identity(json.loads(spec.model_dump_json()), RunSpec)
    others = {
        "phase": "final",
        "topology": "independent",
        "precision": "bf16",
        "compile": True,
        "deterministic": True,
        "protocol_version": 2,
    }
    assert set(RunSettings.model_fields) == {"profile", *others}  # a new field needs a value here
    for name, value in others.items():
        info = RunSettings.model_fields[name]
        assert any(isinstance(m, Named) for m in info.metadata), name
        assert name in LEADERBOARD_COLUMNS and name in RunSpec.model_fields, name
        changed = spec.model_copy(update={name: value})
        assert changed.key != spec.key and changed.settings != spec.settings, name
        assert identity(json.loads(changed.model_dump_json()), RunSpec) != ident, name
        if name != "phase":
            assert changed.settings.label != spec.settings.label, name
            assert changed.settings.dir_suffix != spec.settings.dir_suffix, name
    place = [n for n, f in RunSpec.model_fields.items() if PLACE in f.metadata]
    assert set(place) == {"submission_path", "device", "sandbox", "channels_last", "fused"}
    for name, value in {
        "submission_path": "/elsewhere/x.py",
        "device": "cuda:1",
        "sandbox": "docker",
        "channels_last": not spec.channels_last,
        "fused": True,
    }.items():
        moved = spec.model_copy(update={name: value})
        assert moved.key == spec.key and identity(json.loads(moved.model_dump_json()), RunSpec) == ident, name


def test_a_field_added_to_run_settings_is_named_and_kept_apart_without_other_code():
    """A subclass with one more option (and a spec carrying it): the label, the run directory's
    suffix, reading its cells from a CSV and the checkpoint identity all pick it up from the field
    alone; a field without a Named annotation is refused, not silently left out of every name."""
    from harness.protocol import RunSpec
    from harness.settings import PLACE, Named, RunSettings, identity

    class Wider(RunSettings):
        width: Annotated[int, Named(form="w{value}")] = 1
        mixup: Annotated[bool, Named()] = False

    base = Wider(profile="tiny")
    assert base.label == "fp32" and base.dir_suffix == ()
    wide = Wider(profile="tiny", precision="bf16", width=2, mixup=True)
    assert wide.label == "bf16+w2+mixup" and wide.dir_suffix == ("bf16", "w2", "mixup")
    assert Wider.from_cells({"precision": "fp32", "width": 4.0, "mixup": "true"}).label == "fp32+w4+mixup"
    assert Wider.from_cells({"precision": "fp32", "width": float("nan"), "mixup": ""}) == base.model_copy(
        update={"profile": ""}
    )

    class Unnamed(RunSettings):
        depth: int = 1

    with pytest.raises(TypeError, match="Unnamed.depth needs a Named annotation"):
        Unnamed(profile="tiny").label  # noqa: B018

    class WiderSpec(RunSpec):
        width: int = 1
        threads: Annotated[int, PLACE] = 1

    spec = WiderSpec(**run_spec(tiny_profile(), submission="famo.py").model_dump())
    ident = identity(json.loads(spec.model_dump_json()), WiderSpec)
    assert identity(json.loads(spec.model_copy(update={"width": 2}).model_dump_json()), WiderSpec) != ident
    assert identity(json.loads(spec.model_copy(update={"threads": 8}).model_dump_json()), WiderSpec) == ident
