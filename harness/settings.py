"""The settings that make a run's identity, and how each is named: the one place that lists them.

:class:`RunSettings` holds the protocol options that change what a run computes. Each field says,
in its :class:`Named` annotation, how it appears where settings are named: the comparison groups'
label (``fp32``, ``bf16+compile``, ``fp32 independent``) and a run directory's suffix (``-bf16``,
``-independent-compile``). The label, the suffix, the leaderboard's identity columns and the
checkpoints' compatibility are derived from these fields, so a new option that changes what a run
computes is one more field here. What changes only where and how fast a run goes (the device, the
sandbox, channels_last, fused seeds, where a file lies) is a field of
:class:`harness.protocol.RunSpec` marked :data:`PLACE`: recorded, never part of the identity.

``protocol_version`` is the trainer build's compatibility number: raised by hand whenever a change
of the training changes results, so that rows of different builds are never pooled into one
standing and a checkpoint of another build is never resumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticUndefined

Phase = Literal["public", "final"]
Topology = Literal["shared", "independent", "reuse-coarse", "reuse-fine", "shared-reuse-coarse", "shared-reuse-fine"]
"""How the two tasks share the network (the CIFAR-100 topology study): ``shared``, the task's one backbone with two
heads; ``independent``, a backbone per task; ``reuse-coarse`` / ``reuse-fine``, independent backbones
where one head also reads the other head's logits; ``shared-reuse-*``, the same on one backbone."""
TOPOLOGIES: tuple[str, ...] = get_args(Topology)
Precision = Literal["fp32", "tf32", "bf16", "fp64"]
"""fp32: the protocol: float32 as PyTorch computes it by default, as the task's published rows were
produced (IEEE on a CPU; on a CUDA GPU from Ampere on, cuDNN convolutions in TensorFloat-32 and
matmuls in IEEE float32). tf32: TF32 matmuls as well (CUDA only). bf16: bfloat16 autocast. fp64: for
verification (the equivalence tests), slow. Each is recorded and kept apart in the aggregates; what
the convolutions and matmuls actually computed in is recorded beside it
(:func:`harness.training.device.float32_math`)."""

PROTOCOL_VERSION = 1
"""The trainer build's compatibility number. Raise it by hand when a change of the training changes
what a run computes (its results): rows and checkpoints of other numbers are kept apart. Rows written
before it was recorded are version 1."""


class _Default:
    def __repr__(self) -> str:
        return "the field's default"


DEFAULT: Any = _Default()


@dataclass(frozen=True)
class Named:
    """How a :class:`RunSettings` field is named. A value equal to the field's default (the protocol's
    own) is left out of the label unless ``always_labelled``, and out of a run directory's name (or,
    given ``unnamed_in_dirs``, that value: directories already written keep their names when the default
    changes). Otherwise it is named by ``form`` (``{name}``, ``{value}``); the label joins ``flag``
    parts with ``+`` and puts each ``axis`` part after a space, the directory joins all with ``-``."""

    part: Literal["flag", "axis", "none"] = "flag"
    form: str = ""  # "": a bool field by its name, another by its value
    always_labelled: bool = False
    unnamed_in_dirs: Any = DEFAULT


@dataclass(frozen=True)
class Place:
    """Marks a :class:`harness.protocol.RunSpec` field that changes only where and how fast a run goes:
    recorded, not part of its identity; a run resumes across it."""


PLACE = Place()


class RunSettings(BaseModel):
    """The protocol options that change what a run computes: runs with other settings are other runs,
    and their rows other series. Device, sandbox and channels_last change only where and how fast it
    runs: a run resumes across them, and they are recorded, not part of the identity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: Annotated[str, Named("none")]
    phase: Annotated[Phase, Named("none")] = "public"
    topology: Annotated[Topology, Named("axis")] = "shared"
    precision: Annotated[Precision, Named(always_labelled=True)] = "fp32"
    compile: Annotated[bool, Named()] = False
    deterministic: Annotated[bool, Named()] = False
    protocol_version: Annotated[int, Named("axis", form="protocol{value}", unnamed_in_dirs=1)] = PROTOCOL_VERSION

    @classmethod
    def _named(cls) -> list[tuple[str, Named, Any]]:
        """``(field, how it is named, its default)`` of the fields that names show, in field order."""
        out = []
        for name, info in cls.model_fields.items():
            named = next((m for m in info.metadata if isinstance(m, Named)), None)
            if named is None:
                raise TypeError(f"{cls.__name__}.{name} needs a Named annotation: how settings name it")
            if named.part != "none":
                out.append((name, named, None if info.default is PydanticUndefined else info.default))
        return out

    def _part(self, name: str, named: Named) -> str:
        value = getattr(self, name)
        form = named.form or ("{name}" if isinstance(value, bool) else "{value}")
        return form.format(name=name, value=value)

    @property
    def label(self) -> str:
        """``fp32``, ``bf16+compile``, ``fp32 independent``...: what differs from the protocol's
        computation (profile and phase are shown apart)."""
        flags: list[str] = []
        axes: list[str] = []
        for name, named, default in self._named():
            if named.always_labelled or getattr(self, name) != default:
                (flags if named.part == "flag" else axes).append(self._part(name, named))
        return "+".join(flags) + "".join(" " + a for a in axes)

    @property
    def dir_suffix(self) -> tuple[str, ...]:
        """The parts a run directory's name adds for these settings (``independent``, ``bf16``,
        ``compile``...), in field order: none for the protocol's own."""
        parts = []
        for name, named, default in self._named():
            unnamed = default if named.unnamed_in_dirs is DEFAULT else named.unnamed_in_dirs
            if getattr(self, name) != unnamed:
                parts.append(self._part(name, named))
        return tuple(parts)

    @classmethod
    def from_cells(cls, cells: dict[str, object]) -> RunSettings:
        """The settings of a leaderboard row's cells as read from the CSV (booleans as text, numbers
        as floats, empty cells as NaN or None: the field's default)."""
        values: dict[str, object] = {"profile": ""}
        for name in cls.model_fields:
            value = cells.get(name)
            value = value.item() if hasattr(value, "item") else value  # numpy scalars
            if value is None or value == "" or (isinstance(value, float) and value != value):
                continue  # empty: the field's default
            values[name] = int(value) if isinstance(value, float) and value.is_integer() else value
        return cls.model_validate(values)


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The model class a field holds (``X`` or ``X | None``), if any."""
    for t in (annotation, *get_args(annotation)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def identity(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``data`` (a ``model`` as JSON) without what changes only where and how fast a run goes: the
    fields marked :data:`PLACE`, at any depth, and those left empty (None: an optional field that a
    spec of an earlier version did not have). Two runs whose identities are equal compute the same."""
    out = {}
    for name, info in model.model_fields.items():
        value = data.get(name)
        if value is None or PLACE in info.metadata:
            continue
        inner = _model_in(info.annotation)
        out[name] = identity(value, inner) if inner is not None and isinstance(value, dict) else value
    return out
