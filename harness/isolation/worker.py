"""The loss worker: the only process that imports a submission.

It runs in the sandbox as a plain script (``python -I worker.py``) and imports nothing but the
standard library, torch and ``wire.py`` (the wire format), staged read-only beside it by every
sandbox (:func:`harness.isolation.sandbox.stage`) and loaded by its path (:func:`_load_wire`: ``-I``
puts no script directory on ``sys.path``) before a frame is read or the submission imported. The
trainer never imports this file: it speaks the format through :mod:`harness.isolation.wire`.

Per STEP the worker runs ``forward`` on fresh leaf tensors, checks the result, backpropagates it,
steps its own SGD and replies with the derivatives and which losses ``L`` uses at all
(:meth:`LossSession.step`). ``submissions/README.md`` states the contract.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import random
import sys
import traceback
from typing import TYPE_CHECKING, Any


def _load_wire() -> Any:
    """``wire.py`` from this script's own directory (the sandbox's read-only staged copy), by its path:
    no directory joins ``sys.path``, no other module named ``wire`` can stand in for it, and the
    submission cannot import it by name."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wire.py")
    spec = importlib.util.spec_from_file_location("wire", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the wire format from {path}")
    spec.loader.exec_module(module := importlib.util.module_from_spec(spec))
    return module


if TYPE_CHECKING or __package__:  # imported as a module of the harness (its tests, the type checker)
    from harness.isolation import wire
else:  # the sandbox's script
    wire = _load_wire()


class InterfaceError(Exception):
    """The submission broke the interface contract (a message for the submitter)."""


CPU_HINT = (
    " (the loss module runs on the CPU: move tensors to CUDA only under `if torch.cuda.is_available():`, "
    "which is False here)"
)


def _raised(what: str, e: BaseException) -> str:
    """``what raised Type: message``, with the CPU hint when the error is about CUDA (a ``.cuda()``
    or ``.to("cuda")`` that cannot work where the loss runs)."""
    text = f"{what} raised {type(e).__name__}: {e}"
    return text + CPU_HINT if "cuda" in str(e).lower() or "nvidia" in str(e).lower() else text


def _short_traceback(exc: BaseException, submission: str) -> str:
    """The traceback from the first frame in the submission on, truncated."""
    frames: list[traceback.FrameSummary] = traceback.extract_tb(exc.__traceback__)
    for i, frame in enumerate(frames):
        if frame.filename == submission:
            frames = frames[i:]
            break
    text = "".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(type(exc), exc))
    if len(text) > wire.TRACEBACK_LIMIT:
        text = "...\n" + text[-wire.TRACEBACK_LIMIT :]
    return text


def read_capabilities(forward: Any, kwargs_inputs: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Keyword-only parameters of ``forward`` that the trainer knows how to compute, and, when it takes
    ``**kwargs``, the inputs the static check saw it read from there (``kwargs_inputs``)."""
    try:
        params = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError) as e:
        raise InterfaceError(f"cannot read the signature of MultiTaskLoss.forward: {e}") from e
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    has_varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    if len(positional) < 4 and not has_varargs:
        raise InterfaceError(
            "MultiTaskLoss.forward must accept (fine_loss, coarse_loss, epoch, total_epochs); "
            f"it takes {[p.name for p in positional]}"
        )
    caps = []
    for p in params:
        if p.kind != p.KEYWORD_ONLY:
            continue
        if p.name in wire.CAPABILITIES:
            caps.append(p.name)
        elif p.default is p.empty:
            raise InterfaceError(
                f"MultiTaskLoss.forward has a required keyword-only parameter {p.name!r} that the "
                f"harness does not provide; available: {', '.join(wire.CAPABILITIES)}"
            )
    if any(p.kind == p.VAR_KEYWORD for p in params):
        caps += [k for k in kwargs_inputs if k in wire.CAPABILITIES and k not in caps]
    return caps


def _variadic(forward: Any) -> bool:
    """``forward(self, *losses)`` (at most two named positional parameters before ``*args``), common
    in public code: it gets the two losses only, never the epoch among ``losses``."""
    params = inspect.signature(forward).parameters.values()
    return (
        any(p.kind == p.VAR_POSITIONAL for p in params)
        and sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params) <= 2
    )


def _check_no_required_arguments(cls: Any) -> None:
    """The harness builds ``MultiTaskLoss()``; a constructor argument without a default (``n_losses``,
    common in public code) gets a message that says what to change."""
    try:
        required = [
            p.name
            for p in inspect.signature(cls).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
    except (TypeError, ValueError):
        return
    if required:
        names = ", ".join(f"`{n}`" for n in required)
        raise InterfaceError(
            f"MultiTaskLoss is built with no arguments, but its __init__ requires {names}: give "
            f"{'it' if len(required) == 1 else 'them'} a default (there are two tasks: e.g. "
            f"{required[0]}=2 if it counts them)"
        )


def read_head_loss(module: Any) -> Any:
    """The module's bound ``head_loss`` method, or None. Only a function defined on the class
    counts: a file written for the task's interface that happens to keep an attribute of that name (``self.head_loss =
    nn.CrossEntropyLoss()``, a number) is left alone. It takes ``(fine_loss, coarse_loss)``."""
    if not inspect.isfunction(inspect.getattr_static(type(module), wire.HEAD_LOSS, None)):
        return None
    method = getattr(module, wire.HEAD_LOSS)
    try:
        inspect.signature(method).bind(0.0, 0.0)
    except (TypeError, ValueError) as e:
        raise InterfaceError(f"MultiTaskLoss.{wire.HEAD_LOSS} must accept (fine_loss, coarse_loss): {e}") from e
    return method


def _import_without_optional_tools(real: Any) -> Any:
    """``__import__`` for the submission's module: an import of one of :data:`wire.OPTIONAL_TOOLS` fails."""

    def guarded(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        for full in [name] + [f"{name}.{item}" for item in fromlist or ()]:
            if any(full == t or full.startswith(t + ".") for t in wire.OPTIONAL_TOOLS):
                raise ModuleNotFoundError(f"No module named {full!r} (not in the loss worker)", name=full)
        return real(name, globals, locals, fromlist, level)

    return guarded


def untrained_tensors(module: Any) -> list[str]:
    """Warnings naming each tensor with ``requires_grad=True`` that the module holds but that is not one of
    its parameters (``self.w = torch.tensor([1., 1.], requires_grad=True)``): nothing ever trains it."""
    import torch

    found = [f"self.{name} (a buffer)" for name, b in module.named_buffers() if b.requires_grad]
    for prefix, sub in module.named_modules():
        for name, value in vars(sub).items():
            if name in ("_parameters", "_buffers", "_modules"):
                continue
            items = (
                value.items() if isinstance(value, dict) else enumerate(value) if type(value) in (list, tuple) else ()
            )
            for where, v in [("", value)] + [(f"[{k!r}]", v) for k, v in items]:
                if type(v) is torch.Tensor and v.requires_grad and v.is_leaf:
                    found.append(f"self.{prefix + '.' if prefix else ''}{name}{where}")
    return [
        f"{what} is a tensor with requires_grad=True but not an nn.Parameter, so nothing trains it (the harness "
        "steps the module's parameters only): wrap it in nn.Parameter, e.g. self.w = nn.Parameter(torch.ones(2))"
        for what in found[:5]
    ]


def as_loss(leaf: Any) -> Any:
    """``leaf``'s value as a loss tensor is in training: a non-leaf 0-d tensor made by ``nll_loss``
    (``grad_fn`` NllLossBackward0, exactly ``leaf``'s value, derivative 1), so that in-place
    operations and graph inspection behave as on the trainer's real losses, and nothing in the
    inputs tells this process from in-process training. The gradient arrives at ``leaf``."""
    import torch
    import torch.nn.functional as F

    return F.nll_loss((-leaf).reshape(1, 1), torch.zeros(1, dtype=torch.long))


def sgd_step(params: list[Any], buffers: dict[Any, Any], lr: float, *, momentum: float, weight_decay: float,
             nesterov: bool) -> None:  # fmt: skip
    """``torch.optim.SGD.step`` (dampening 0) by the tensor operations of its CPU path: the same bits, without the
    compiler stack torch.optim loads first (1.3 s of each worker start). ``buffers``: the momentum buffers, keyed by
    parameter as torch.optim's state is; a parameter without a gradient is left alone. Call under ``no_grad()``."""
    for p in (p for p in params if p.grad is not None):
        grad = p.grad if weight_decay == 0 else p.grad.add(p, alpha=weight_decay)
        if momentum != 0:
            if (buf := buffers.get(p)) is None:
                buf = buffers[p] = grad.detach().clone()
            else:
                buf.mul_(momentum).add_(grad, alpha=1)
            grad = grad.add(buf, alpha=momentum) if nesterov else buf
        p.add_(grad, alpha=-lr)


class LossSession:
    """The submission's loss module, its SGD (:func:`sgd_step`), and the per-step contract."""

    def __init__(self, submission: str, init: dict[str, Any]) -> None:
        """``init``: the INIT message (seed, optimizer, max_params, dtype, kwargs_inputs)."""
        import builtins
        import importlib.util

        import torch

        self.torch = torch
        self.submission = submission
        torch.set_num_threads(1)
        seed, dtype, max_params = init["seed"], init.get("dtype", "float32"), init["max_params"]
        torch.manual_seed(seed)
        random.seed(seed)
        try:
            import numpy

            numpy.random.seed(seed)
        except ImportError:
            pass
        spec = importlib.util.spec_from_file_location("submission", submission)
        if spec is None or spec.loader is None:
            raise InterfaceError(f"cannot import {submission}")
        module = importlib.util.module_from_spec(spec)
        module.__dict__["__builtins__"] = dict(vars(builtins), __import__=_import_without_optional_tools(__import__))
        spec.loader.exec_module(module)
        cls = getattr(module, "MultiTaskLoss", None)
        if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
            raise InterfaceError("the file must define `class MultiTaskLoss(nn.Module)`")
        _check_no_required_arguments(cls)
        self.module = cls()
        if not isinstance(self.module, torch.nn.Module):
            raise InterfaceError("MultiTaskLoss() did not produce an nn.Module")
        if dtype not in ("float32", "float64"):
            raise InterfaceError(f"unsupported dtype {dtype!r}")
        self.dtype = getattr(torch, dtype)
        self.module.to(self.dtype)
        self.module.train()
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.num_params = sum(p.numel() for p in self.module.parameters())
        if self.num_params > max_params:
            raise InterfaceError(f"the loss module has {self.num_params:,} parameters; the limit is {max_params:,}")
        for p in self.module.parameters():
            if p.device.type != "cpu":
                raise InterfaceError("the loss module runs on the CPU; do not move it to another device")
        self.warnings = untrained_tensors(self.module)
        self.capabilities = read_capabilities(self.module.forward, list(init.get("kwargs_inputs", [])))
        self.losses_only = _variadic(self.module.forward)  # forward(self, *losses): the two losses only
        self.head_loss = read_head_loss(self.module)
        self.sgd = {k: init["optimizer"][k] for k in ("momentum", "weight_decay", "nesterov")}
        self.momentum_buffers: dict[Any, Any] = {}

    def step(self, record: wire.StepRecord) -> wire.ResultRecord:
        """One training step."""
        torch = self.torch
        fine_leaf = torch.tensor(record.fine_loss, dtype=self.dtype, requires_grad=True)
        coarse_leaf = torch.tensor(record.coarse_loss, dtype=self.dtype, requires_grad=True)
        fine, coarse = as_loss(fine_leaf), as_loss(coarse_leaf)
        kwargs = {cap: self._input(cap, record) for cap in self.capabilities}
        for p in self.params:
            p.grad = None
        args = (fine, coarse) if self.losses_only else (fine, coarse, int(record.epoch), int(record.total_epochs))
        out = self.module(*args, **kwargs)
        self._check_output(out, "forward")
        out.backward()
        d_fine, d_coarse, uses = self._derivatives(fine_leaf.grad, coarse_leaf.grad, "the loss")
        h_fine, h_coarse, head_uses = d_fine, d_coarse, uses
        if self.head_loss is not None:  # after forward, so that it may use what forward computed
            fine_h = torch.tensor(record.fine_loss, dtype=self.dtype, requires_grad=True)
            coarse_h = torch.tensor(record.coarse_loss, dtype=self.dtype, requires_grad=True)
            head = self.head_loss(fine_h, coarse_h)
            self._check_output(head, wire.HEAD_LOSS)
            grad_fine, grad_coarse = torch.autograd.grad(head, [fine_h, coarse_h], allow_unused=True)  # no parameters
            h_fine, h_coarse, head_uses = self._derivatives(grad_fine, grad_coarse, "the head loss")
        with torch.no_grad():
            sgd_step(self.params, self.momentum_buffers, record.lr, **self.sgd)
        return wire.ResultRecord(float(out.detach()), d_fine, d_coarse, h_fine, h_coarse, uses | head_uses << 2)

    def _input(self, cap: str, r: wire.StepRecord) -> Any:
        """The value of the optional input ``cap`` for this step (:data:`~harness.isolation.wire.CAPABILITIES`)."""
        pairs = {
            "gramian": (wire.FLAG_GRAMIAN, [[r.g00, r.g01], [r.g01, r.g11]]),
            "head_sq_norms": (wire.FLAG_HEAD_NORMS, [r.head_fine_sq, r.head_coarse_sq]),
            "batch_fine_acc": (wire.FLAG_ACCURACY, r.batch_fine_acc),
            "batch_coarse_acc": (wire.FLAG_ACCURACY, r.batch_coarse_acc),
        }
        if cap in ("step", "steps_per_epoch"):
            return int(getattr(r, cap))
        if cap == "previous_losses_after_update":  # absent on a run's first call
            return (
                self.torch.tensor([r.after_fine, r.after_coarse], dtype=self.dtype)
                if r.flags & wire.FLAG_AFTER
                else None
            )
        flag, value = pairs[cap]
        if not r.flags & flag:
            raise RuntimeError(f"trainer sent no {cap}")
        return float(value) if isinstance(value, float) else self.torch.tensor(value, dtype=self.dtype)

    @staticmethod
    def _derivatives(grad_fine: Any, grad_coarse: Any, what: str) -> tuple[float, float, int]:
        """``(d/dfine, d/dcoarse, USES bits)``; a loss without a path to an input has no derivative
        there (``None``), which is not the same as a derivative of 0."""
        d_fine = 0.0 if grad_fine is None else float(grad_fine)
        d_coarse = 0.0 if grad_coarse is None else float(grad_coarse)
        if not (math.isfinite(d_fine) and math.isfinite(d_coarse)):
            raise InterfaceError(f"the gradient of {what} is not finite (d/dfine={d_fine}, d/dcoarse={d_coarse})")
        return (
            d_fine,
            d_coarse,
            (wire.USES_FINE if grad_fine is not None else 0) | (wire.USES_COARSE if grad_coarse is not None else 0),
        )

    def _check_output(self, out: Any, method: str) -> None:
        torch = self.torch
        if type(out) is not torch.Tensor:
            hint = {
                float: ": do not call .item() or float() on the loss; return the tensor",
                tuple: ": return only the combined loss (not a tuple such as `total, l1, l2`)",
                list: ": return only the combined loss, one tensor",
            }.get(type(out), "")
            raise InterfaceError(
                f"{method} must return a 0-d floating torch.Tensor, got "
                f"{type(out).__module__}.{type(out).__qualname__}{hint}"
            )
        if out.dim() != 0:
            raise InterfaceError(
                f"{method} must return a 0-d tensor (a scalar), got shape {tuple(out.shape)}; "
                "combine the losses into one number, e.g. with .sum()"
            )
        if not out.is_floating_point():
            raise InterfaceError(f"{method} must return a floating tensor, got dtype {out.dtype}")
        value = float(out.detach())
        if not math.isfinite(value):
            raise InterfaceError(f"{method} returned a non-finite loss ({value})")
        if not out.requires_grad:
            raise InterfaceError(
                f"the loss returned by {method} does not depend on fine_loss or coarse_loss "
                "(it is a constant or was detached); return a differentiable combination"
            )

    def state(self) -> dict[str, list[float]]:
        """The module's parameters, then (up to :data:`wire.MAX_STATE_EXTRA` numbers) its floating and integer
        buffers (``buffer:NAME``: an EMA, an initial loss) and its plain-number attributes
        (``attr:NAME``: a step counter, a list of past losses); non-finite values are left out."""
        import torch

        out = {
            name: p.detach().reshape(-1).tolist()
            for name, p in self.module.named_parameters()
            if wire.valid_name(name, wire.MAX_STATE_NAME)
        }
        room = wire.MAX_STATE_EXTRA
        extra: list[tuple[str, list[float]]] = []
        for name, b in self.module.named_buffers():
            if not b.dtype.is_complex and b.dtype != torch.bool:
                extra.append((f"buffer:{name}", b.detach().reshape(-1).double().tolist()))
        for name, value in vars(self.module).items():
            numbers = value if isinstance(value, (list, tuple)) else [value]
            if (
                not name.startswith("_")
                and numbers
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers)
            ):
                extra.append((f"attr:{name}", [float(x) for x in numbers]))
        for name, values in extra:
            values = [v for v in values if math.isfinite(v)]
            if values and len(values) <= room and wire.valid_name(name, wire.MAX_STATE_NAME):
                out[name] = values
                room -= len(values)
        return out


def read_scalars(module: Any) -> dict[str, float]:
    """The module's optional ``scalars()`` method's report: a dict of at most MAX_SCALARS printable names
    (1 to MAX_SCALAR_NAME characters) to numbers (int, float or a one-element tensor); not finite ones are left out."""
    import torch

    method = inspect.getattr_static(type(module), "scalars", None)
    out = method(module) if inspect.isfunction(method) else {}

    np = sys.modules.get("numpy")  # a numpy value means numpy is loaded

    def number(v: Any) -> bool:
        if type(v) in (int, float, bool) or type(v) is torch.Tensor and v.numel() == 1 and not v.is_complex():
            return True
        return np is not None and isinstance(v, (np.generic, np.ndarray)) and v.size == 1 and v.dtype.kind in "biuf"

    contract = (
        f"a dict of at most {wire.MAX_SCALARS} names (each at most {wire.MAX_SCALAR_NAME} characters: letters, "
        f"digits, spaces or {''.join(sorted(wire.NAME_PUNCTUATION - {' '}))}) to numbers (int, float, a numpy "
        "number or a one-element tensor or array)"
    )
    if not (isinstance(out, dict) and len(out) <= wire.MAX_SCALARS):
        raise InterfaceError(f"MultiTaskLoss.scalars() must return {contract}; got {repr(out)[:200]}")
    for k, v in out.items():
        if not wire.valid_name(k, wire.MAX_SCALAR_NAME):
            raise InterfaceError(f"MultiTaskLoss.scalars() returned the name {repr(k)[:60]}; it must return {contract}")
        if not number(v):
            raise InterfaceError(
                f"MultiTaskLoss.scalars()[{k!r}] is {type(v).__module__}.{type(v).__qualname__} "
                f"{repr(v)[:80]}; it must return {contract}"
            )
    values = {k: float(v.item() if hasattr(v, "item") else v) for k, v in out.items()}
    return {k: v for k, v in values.items() if math.isfinite(v)}


def _options(argv: list[str], name: str) -> list[str]:
    """Every value of ``name VALUE`` in the worker's command line (set by the trainer)."""
    return [value for flag, value in zip(argv, argv[1:]) if flag == name]


def main() -> int:
    argv = sys.argv[1:]
    # --sys-path: under python -I a virtual environment's or a --user install's packages are not found
    sys.path.extend(p for p in _options(argv, "--sys-path") if p not in sys.path)
    wire.die_with_parent()
    connect, token_file = _options(argv, "--connect"), _options(argv, "--token-file")
    proto_in, proto_out = wire.claim_protocol_fds(
        connect[0] if connect else None, token_file[0] if token_file else None
    )

    def send(frame: bytes) -> None:
        wire.write_all(proto_out, frame)

    def fail(stage: str, message: str, tb: str = "") -> int:
        send(wire.pack_json(wire.ERROR, {"stage": stage, "message": message, "traceback": tb}))
        return 1

    frame = wire.read_frame(proto_in)
    if frame is None:
        return 0
    kind, payload = frame
    if kind != wire.INIT:
        return fail("protocol", "expected INIT")
    init = json.loads(payload)
    submission = init["submission"]
    try:
        session = LossSession(submission, init)
    except InterfaceError as e:
        return fail("interface", str(e))
    except BaseException as e:  # noqa: BLE001  (anything the submission raises while loading)
        return fail("load", _raised("importing or constructing MultiTaskLoss", e), _short_traceback(e, submission))
    send(
        wire.pack_json(
            wire.READY,
            {
                "capabilities": session.capabilities,
                "num_params": session.num_params,
                "head_loss": session.head_loss is not None,
                "warnings": session.warnings,
            },
        )
    )

    while (frame := wire.read_frame(proto_in)) is not None:
        kind, payload = frame
        if kind == wire.STEP:
            if len(payload) != wire.STEP_RECORD.size:
                return fail("protocol", f"STEP record of {len(payload)} bytes")
            try:
                send(wire.pack_result(session.step(wire.unpack_step(payload))))
            except InterfaceError as e:
                return fail("forward", str(e))
            except BaseException as e:  # noqa: BLE001
                return fail("forward", _raised("forward", e), _short_traceback(e, submission))
        elif kind == wire.STATE:
            try:
                send(wire.pack_json(wire.STATE_REPLY, {"params": session.state()}))
            except ValueError as e:  # non-finite parameters cannot travel as JSON
                return fail("state", f"cannot report the loss module's parameters: {e}")
        elif kind == wire.SCALARS:
            try:
                send(wire.pack_json(wire.SCALARS_REPLY, {"scalars": read_scalars(session.module)}))
            except InterfaceError as e:
                return fail("scalars", str(e))
            except BaseException as e:  # noqa: BLE001
                return fail("scalars", _raised("scalars()", e), _short_traceback(e, submission))
        elif kind == wire.CLOSE:
            wire.exit_now()
        else:
            return fail("protocol", f"unknown frame type {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
