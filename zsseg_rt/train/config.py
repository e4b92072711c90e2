"""Training recipes: a small dataclass loaded from JSON (``zsseg_rt/train/configs/*.json``); unknown keys are
an error that names them.

Defaults are the official ZegCLIP recipe: AdamW, lr 2e-4 for every trainable parameter (the
mmcv first-match quirk makes prompts and head both x10 of 2e-5), weight decay 0.01 (no norm exemption),
poly(0.9) to 1e-6 with 1,500 linear warm-up iterations (ratio 1e-6), batch 16, crop 512.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from zsseg_rt.contract.common.config import check_choice, check_known_keys

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

__all__ = ["TrainConfig", "load_train_config", "list_train_configs", "CONFIG_DIR"]


def list_train_configs() -> List[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


@dataclass
class TrainConfig:
    # model
    model: str = "zegclip_vitb16_voc_inductive"  # zsseg_rt.models config name / JSON path
    model_overrides: Dict[str, Any] = field(default_factory=dict)
    pretrained: Optional[str] = None  # CLIP weights: open_clip tag or local file (None: random towers)
    init_from: Optional[str] = None  # training checkpoint / native dir whose weights start this run (ST)
    setting: Optional[str] = None  # inductive | transductive | fully (None: the model config's)
    unseen: Optional[List[Any]] = None  # override the split's unseen classes (names or indices)
    text_embeddings: Optional[str] = None  # None: CLIP text tower; ".npy/.pt/.safetensors" file; "random:SEED"
    # data
    dataset: Dict[str, Any] = field(
        default_factory=lambda: {"type": "voc", "root": "data/VOCdevkit/VOC2012", "split": "train_aug"}
    )
    crop_size: int = 512
    img_scale: List[int] = field(default_factory=lambda: [2048, 512])
    ratio_range: Optional[List[float]] = field(default_factory=lambda: [0.5, 2.0])
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    on_corrupt: str = "skip"  # skip (warn + count) | raise
    on_bad_label: str = "raise"  # raise | ignore (-> 255)
    num_workers: int = 4
    # optimisation
    iterations: int = 20000
    batch_size: int = 16  # global batch (all GPUs x accumulation)
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.01
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    poly_power: float = 0.9
    min_lr: float = 1e-6
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    lr_schedule: str = "poly"  # poly (official ZegCLIP/CLIP-RC) | cosine (linear warm-up + cosine, MAE/ZeroSeg)
    grad_clip: Optional[float] = None  # official: none
    amp: bool = False
    amp_dtype: str = "float16"  # float16 (with a GradScaler) | bfloat16
    seed: int = 0
    deterministic: bool = False
    # bookkeeping
    work_dir: str = "work_dirs/run"
    checkpoint_interval: int = 2000
    keep_checkpoints: int = 3  # newest checkpoints kept (0: all)
    keep_iterations: List[int] = field(default_factory=list)  # never pruned (e.g. a transductive init_from)
    log_interval: int = 10
    tensorboard: bool = False
    save_native: bool = True  # write work_dir/final (model.safetensors + config.json) at the end
    name: str = ""
    note: str = ""

    def validate(self) -> "TrainConfig":
        self._check_types()
        if self.setting not in (None, "inductive", "transductive", "fully"):
            raise ValueError(f"setting must be inductive|transductive|fully, got {self.setting!r}")
        if self.iterations < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("iterations, batch_size and grad_accum must be >= 1")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}")
        check_choice("lr_schedule", self.lr_schedule, ("poly", "cosine"))
        if self.amp_dtype not in ("float16", "bfloat16"):
            raise ValueError(f"amp_dtype must be float16 or bfloat16, got {self.amp_dtype!r}")
        check_choice("on_corrupt", self.on_corrupt, ("skip", "raise"))
        check_choice("on_bad_label", self.on_bad_label, ("raise", "ignore"))
        if self.keep_checkpoints < 0:
            raise ValueError(f"keep_checkpoints must be >= 0 (0 keeps all), got {self.keep_checkpoints}")
        if not isinstance(self.keep_iterations, (list, tuple)) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in self.keep_iterations
        ):
            raise ValueError(
                f"keep_iterations must be a list of positive iteration numbers, got {self.keep_iterations!r}"
            )
        if not isinstance(self.dataset, dict) or "type" not in self.dataset:
            raise ValueError(f"dataset must be a dict with a 'type', got {self.dataset!r}")
        return self

    def _check_types(self) -> None:
        """Every field has the type its annotation says (a ``--set lr=abc`` is refused here, naming the field, not
        deep inside the optimizer); a whole number is accepted for a float field and converted."""
        hints = typing.get_type_hints(type(self))
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            problem = _type_problem(value, hints[item.name])
            if problem:
                raise ValueError(
                    f"training config field {item.name!r} must be {problem}, got {type(value).__name__} {value!r:.80} "
                    f"(e.g. --set {item.name}=...)"
                )
            if hints[item.name] in (float, Optional[float]) and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, item.name, float(value))

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TrainConfig":
        check_known_keys(cls, data, "training config")
        return cls(**data).validate()


def _type_problem(value: Any, annotation: Any) -> str:
    """ "" when ``value`` fits ``annotation`` (int, float, bool, str, Any, Optional/Union, List[...], Dict[...]), else
    what was expected."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return ""
    if origin is Union:
        problems = [_type_problem(value, arg) for arg in args]
        return "" if "" in problems else " or ".join(p for p in problems)
    if annotation is type(None):
        return "" if value is None else "null"
    if annotation is bool:
        return "" if isinstance(value, bool) else "true or false"
    if annotation is int:
        return "" if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return "" if ok else "a finite number"
    if annotation is str:
        return "" if isinstance(value, str) else "a string"
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            return "a list"
        inner = args[0] if args else Any
        return next((f"a list of {p}" for p in (_type_problem(v, inner) for v in value) if p), "")
    if origin in (dict, Dict):
        return "" if isinstance(value, dict) else "an object"
    return ""


def _set_dotted(data: Dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    d = data
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ValueError(f"override {key!r}: {p!r} is not a dict")
    d[parts[-1]] = value


def parse_override(text: str):
    """``key=value`` with a JSON value (falls back to the raw string): ``iterations=100``,
    ``dataset.root=/data/voc``, ``unseen=["cat","dog"]``."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def load_train_config(
    ref: Union[str, Path, Dict[str, Any], TrainConfig], overrides: Optional[List[str]] = None, **kw
) -> TrainConfig:
    """Load a recipe by bundled name (``"voc_inductive"``), JSON path, dict or object; ``overrides`` are
    ``key=value`` strings (dotted keys reach into ``dataset`` / ``model_overrides``), ``kw`` plain keys."""
    if isinstance(ref, TrainConfig):
        data = ref.to_dict()
    elif isinstance(ref, dict):
        data = dict(ref)
    else:
        p = Path(str(ref))
        if not p.is_file():
            p = CONFIG_DIR / (str(ref) if str(ref).endswith(".json") else f"{ref}.json")
        if not p.is_file():
            from zsseg_rt.options import did_you_mean

            hint = did_you_mean(str(ref), list_train_configs())
            raise FileNotFoundError(
                f"training config {str(ref)!r} is neither a file nor a bundled recipe"
                + (f" ({hint})" if hint else "")
                + f"; bundled: {list_train_configs()}"
            )
        with open(p, "r", encoding="utf-8") as f:
            data = json.load(f)
        data.setdefault("name", p.stem)
    for item in overrides or []:
        k, v = parse_override(item)
        _set_dotted(data, k, v)
    for k, v in kw.items():
        data[k] = v
    return TrainConfig.from_dict(data)
