"""Optimizer and learning-rate schedule of the official recipe.

The schedule is a pure function of the iteration (mmcv ``PolyLrUpdaterHook`` with linear warm-up), so its
"state" is the iteration number stored in the checkpoint::

    poly(i)  = (base_lr - min_lr) * (1 - i / max_iters) ** power + min_lr
    lr(i)    = poly(i) * (1 - (1 - i / warmup_iters) * (1 - warmup_ratio))   for i < warmup_iters
             = poly(i)                                                      otherwise
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Dict, Iterable, Optional, Sequence

import torch

__all__ = ["poly_lr", "build_optimizer", "LrSchedule", "PolyWarmupSchedule"]


def poly_lr(
    iteration: int,
    base_lr: float,
    max_iters: int,
    power: float = 0.9,
    min_lr: float = 1e-6,
    warmup_iters: int = 0,
    warmup_ratio: float = 1e-6,
) -> float:
    i = min(max(int(iteration), 0), int(max_iters))
    lr = (base_lr - min_lr) * (1.0 - i / max_iters) ** power + min_lr
    if warmup_iters and i < warmup_iters:
        k = (1.0 - i / warmup_iters) * (1.0 - warmup_ratio)
        lr = lr * (1.0 - k)
    return lr


class LrSchedule:
    """Sets every param group's lr to ``lr_fn(iteration, **lr_args) * lr_mult`` (``step(i)`` before optimizer step
    ``i``); its state is the iteration. The one place a schedule's lr reaches the optimizer: a family with another
    lr curve passes its own ``lr_fn`` (ZeroSeg's ``CosineWarmupSchedule``) instead of copying this class.

    Args:
        optimizer: whose param groups are set.
        lr_fn: ``lr_fn(iteration, **lr_args) -> float`` (a pure function of the iteration, e.g. :func:`poly_lr`).
        args, lr_args: ``lr_fn``'s other arguments, positional in its order or by name, checked against its
            signature (:func:`lr_arguments`: its defaults filled in, ``int`` / ``float`` ones as annotated); kept in
            :meth:`state_dict` beside ``last_iter``.
        defaults: defaults of this schedule that replace ``lr_fn``'s own (a recipe's, e.g. its warm-up).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr_fn: Callable[..., float],
        *args: Any,
        defaults: Optional[Dict[str, Any]] = None,
        **lr_args: Any,
    ):
        self.optimizer = optimizer
        self.lr_fn = lr_fn
        self.kw: Dict[str, Any] = lr_arguments(lr_fn, args, lr_args, defaults or {})
        self.last_iter = -1

    def lr_at(self, iteration: int) -> float:
        return self.lr_fn(iteration, **self.kw)

    def step(self, iteration: int) -> float:
        lr = self.lr_at(iteration)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        self.last_iter = int(iteration)
        return lr

    def state_dict(self):
        return {"last_iter": self.last_iter, **self.kw}

    def load_state_dict(self, state):
        self.last_iter = int(state["last_iter"])


def lr_arguments(
    lr_fn: Callable[..., float], args: Sequence[Any], lr_args: Dict[str, Any], defaults: Dict[str, Any]
) -> Dict[str, Any]:
    """``lr_fn``'s arguments after the iteration, by name in its order: ``args`` and ``lr_args`` bound to its
    signature (a name it does not take, or one missing, is refused now rather than at the first step), then
    ``defaults``, then its own defaults; a parameter annotated ``int`` or ``float`` is made one."""
    signature = inspect.signature(lr_fn)
    try:
        bound = signature.bind(0, *args, **lr_args)  # 0: the iteration, given at each step
    except TypeError as exc:
        raise TypeError(f"{getattr(lr_fn, '__name__', lr_fn)}: {exc}") from None
    for name, value in defaults.items():
        bound.arguments.setdefault(name, value)
    bound.apply_defaults()  # (in the signature's order)
    try:
        hints = typing.get_type_hints(lr_fn)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: the values as given
        hints = {}
    out: Dict[str, Any] = {}
    for name, parameter in list(signature.parameters.items())[1:]:
        value = bound.arguments.get(name, parameter.default)
        if parameter.kind is parameter.VAR_KEYWORD:  # an lr function's **options: passed on as given
            out.update(value or {})
        elif parameter.kind is parameter.VAR_POSITIONAL:
            if value:
                raise TypeError(f"{lr_fn.__name__}: the schedule passes its arguments by name, not {value!r}")
        else:
            out[name] = hints[name](value) if hints.get(name) in (int, float) else value
    return out


class PolyWarmupSchedule(LrSchedule):
    """:func:`poly_lr` with linear warm-up, the official recipe's schedule (an :class:`LrSchedule`): its arguments
    (``base_lr``, ``max_iters``, ``power``, ``min_lr``, ``warmup_iters``, ``warmup_ratio``), positional in that order
    or by name, with its defaults but the recipe's warm-up (``warmup_iters=1500``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, *args: Any, **lr_args: Any):
        super().__init__(optimizer, poly_lr, *args, defaults={"warmup_iters": 1500}, **lr_args)


def build_optimizer(
    params: Iterable[Any], lr: float = 2e-4, weight_decay: float = 0.01, betas=(0.9, 0.999)
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, one group (official effective setting: lr 2e-4, wd 0.01 for
    prompts AND head; mmcv's first-match rule means the norm/ln decay_mult=0 keys never apply). ``params`` may
    also be a list of parameter-group dicts (with their own ``weight_decay`` / ``lr_mult``)."""
    params = list(params)
    if params and isinstance(params[0], dict):  # parameter groups given by the model family
        params = [g for g in params if any(p.requires_grad for p in g["params"])]
    else:
        params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: the model is fully frozen")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))
