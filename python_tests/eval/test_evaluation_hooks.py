"""The generic ``evaluate()`` resolves the checkpoint's family once and runs the eval toolkit with that family's
hooks: its PyTorch inference and bundle settings under the generalized zero-shot protocol, or its own protocol's
``EvaluationProtocol.prepare`` (options, restore, the declared protocol's name checked); the toolkit pieces do not
look families up themselves."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import pytest

from zsseg_rt.contract import registry
from zsseg_rt.contract.family import Evaluation, FamilyArgument, ModelFamily
from zsseg_rt.data import SyntheticDataset
from zsseg_rt.eval.evaluate import (
    EvaluationProtocol,
    HookedSegmenter,
    PreparedRun,
    evaluate,
    follow_settings,
    prepare_generalized_zero_shot,
    protocol_hooks,
    run_prepared,
)

CALLS: list = []


class _GroundTruthEvaluation(Evaluation):
    """Predicts the ground truth of the image it is given (looked up by the image's bytes), so the metrics are 100."""

    truth: Dict[bytes, np.ndarray] = {}

    def predict(self, model, rgb, class_names, text=None, mode="slide", device=None, seen_classes=None):
        CALLS.append(("predict", len(class_names), mode))
        labels = self.truth[rgb.tobytes()]
        return labels, np.ones(labels.shape, np.float32)


_NOT_BUILT = {"config_class": "a:b", "model_class": "a:b", "load_config": "a:b", "create": "a:b"}  # never imported


def _registered(family: ModelFamily):
    with registry.FAMILIES.kept():
        registry.register_family(family)
        CALLS.clear()
        yield family


@pytest.fixture
def family():
    yield from _registered(ModelFamily(evaluation_class=_GroundTruthEvaluation, name="zz_hooked", **_NOT_BUILT))


def _dataset():
    ds = SyntheticDataset(length=3, size=(32, 40), num_classes=4, seed=1)
    truth = {}
    for i in range(len(ds)):
        rgb, gt = ds.load(i)
        truth[rgb.tobytes()] = np.asarray(gt)
    return ds, truth


def test_evaluate_runs_the_family_predict_hook_and_resolves_the_family_once(family, monkeypatch):
    ds, truth = _dataset()
    family.evaluation.truth = truth
    looked_up = []
    real = registry.family_of_object
    monkeypatch.setattr(registry, "family_of_object", lambda obj: looked_up.append(obj) or real(obj))
    model = SimpleNamespace(config=SimpleNamespace(family="zz_hooked", class_names=None))
    text = np.zeros((ds.num_classes, 8), np.float32)
    out = evaluate(model, ds, text_embeddings=text, progress=False)
    assert looked_up == [model]
    assert CALLS == [("predict", ds.num_classes, "slide")] * len(ds)
    assert out["images"] == len(ds) and out["source"] == "torch"
    assert out["mIoU"] == pytest.approx(100.0)
    assert "evaluation_settings" not in out


def test_toolkit_loop_needs_no_registry(family):
    ds, truth = _dataset()
    family.evaluation.truth = truth
    model = SimpleNamespace(config=SimpleNamespace(family="not_registered", class_names=None))
    text = np.zeros((ds.num_classes, 8), np.float32)
    run = prepare_generalized_zero_shot("torch", model, ds, (), text=text, predict=family.evaluation.predict)
    out = run_prepared(run, limit=2, progress=False)
    assert out["images"] == 2 and out["mIoU"] == pytest.approx(100.0)
    assert (out["mode"], out["dataset"], out["source"]) == ("slide", ds.name, "torch")


def test_hooked_segmenter_refuses_a_torch_model_without_its_hook():
    with pytest.raises(ValueError, match="pass predict="):
        HookedSegmenter("torch", object(), ["a", "b"], np.zeros((2, 4), np.float32), "slide")


class _Settings(Evaluation):
    def settings(self, meta: Any, dataset_name: str, choice: str = "official") -> Optional[Dict[str, Any]]:
        return None if choice == "bundle" else {"dataset": dataset_name, "of": meta.family}

    def apply_settings(self, engine: Any, record: Mapping[str, Any]) -> Callable[[], None]:
        engine.applied.append(dict(record))
        return lambda: engine.applied.pop()


def test_follow_settings_uses_the_given_evaluation():
    evaluation = _Settings(SimpleNamespace(name="x"))
    engine = SimpleNamespace(meta=SimpleNamespace(family="unregistered_family"), applied=[])
    record, restore = follow_settings(evaluation, engine, "voc_val")
    assert record == {"dataset": "voc_val", "of": "unregistered_family"}
    assert engine.applied == [record]
    restore()
    assert engine.applied == []
    assert follow_settings(evaluation, engine, "voc_val", "bundle")[0] is None
    with pytest.raises(ValueError, match="settings must be one of"):
        follow_settings(evaluation, engine, "voc_val", "nonsense")


def test_family_of_object_reads_a_bundle_meta_or_a_model_config(family):
    assert registry.family_of_object(SimpleNamespace(meta=SimpleNamespace(family="zz_hooked"))) is family
    assert registry.family_of_object(SimpleNamespace(config=SimpleNamespace(family="zz_hooked"))) is family
    with pytest.raises(TypeError, match="no config.family"):
        registry.family_of_object(object())


class _GroundTruthProtocol(EvaluationProtocol):
    """A family's own protocol as hooks of the toolkit's: predicts the ground truth shifted by one class (wrong on
    every pixel but the ignored ones), with its own option and extra keys; records every call."""

    name = "zz_own_protocol"
    truth: Dict[bytes, np.ndarray] = {}
    fail_on_image: Optional[int] = None

    def prepare(
        self,
        kind,
        obj,
        ds,
        evaluation,
        unseen=(),
        mode="slide",
        text=None,
        device=None,
        seen_classes=None,
        settings="official",
        zz_knob=None,
    ):
        CALLS.append(("prepare", kind, type(evaluation).__name__, zz_knob))
        seen = []

        def segment(rgb):
            seen.append(rgb)
            if self.fail_on_image is not None and len(seen) > self.fail_on_image:
                raise RuntimeError("segmenter broke")
            gt = self.truth[rgb.tobytes()]
            return np.where(gt == 255, 0, (gt + 1) % ds.num_classes)

        return PreparedRun(
            segment, ds, list(ds.class_names), (), "own", {"knob": zz_knob}, restore=lambda: CALLS.append(("restore",))
        )


class _OwnEvaluation(Evaluation):
    hooks: Any = None

    def arguments(self):
        return (FamilyArgument(("--zz-knob",), {"type": float, "default": None, "help": "(ZzOwn) a knob"}),)

    def protocol_hooks(self):
        return self.hooks


@pytest.fixture
def own_family():
    own = {"evaluation_class": _OwnEvaluation, "evaluation_protocol": "zz_own_protocol"}
    yield from _registered(ModelFamily(name="zz_own", **own, **_NOT_BUILT))


def test_a_family_protocol_runs_as_hooks_of_the_toolkit_loop(own_family):
    ds, truth = _dataset()
    hooks = _GroundTruthProtocol()
    hooks.truth = truth
    own_family.evaluation.hooks = hooks
    model = SimpleNamespace(config=SimpleNamespace(family="zz_own", class_names=None))
    out = evaluate(model, ds, progress=False, zz_knob=0.25)
    assert CALLS == [("prepare", "torch", "_OwnEvaluation", 0.25), ("restore",)]
    assert out["images"] == len(ds) and out["knob"] == 0.25
    assert out["mIoU"] == pytest.approx(0.0)  # every labelled pixel is off by one class: the loop scored it


def test_the_run_is_restored_when_the_segmenter_fails(own_family):
    ds, truth = _dataset()
    hooks = _GroundTruthProtocol()
    hooks.truth, hooks.fail_on_image = truth, 1
    own_family.evaluation.hooks = hooks
    model = SimpleNamespace(config=SimpleNamespace(family="zz_own", class_names=None))
    with pytest.raises(RuntimeError, match="segmenter broke"):
        evaluate(model, ds, progress=False)
    assert CALLS == [("prepare", "torch", "_OwnEvaluation", None), ("restore",)]  # restored once


def test_protocol_hooks_must_be_an_evaluation_protocol(own_family):
    ds, _ = _dataset()
    own_family.evaluation.hooks = object()
    model = SimpleNamespace(config=SimpleNamespace(family="zz_own", class_names=None))
    with pytest.raises(TypeError, match=r"protocol_hooks\(\) must return an EvaluationProtocol"):
        evaluate(model, ds, progress=False)
    generic = SimpleNamespace(name="x", label="X", evaluation_protocol="generalized_zero_shot")
    assert protocol_hooks(Evaluation(generic)).name == "generalized_zero_shot"


def test_the_hooks_must_be_those_of_the_declared_protocol(own_family):
    """A family that declares its own protocol but gives no hooks is not scored as generalized zero-shot (and the
    reverse): refused, naming both."""
    ds, _ = _dataset()
    model = SimpleNamespace(config=SimpleNamespace(family="zz_own", class_names=None))
    own_family.evaluation.hooks = None
    with pytest.raises(NotImplementedError, match=r"declares the evaluation protocol 'zz_own_protocol'.*'generalized"):
        evaluate(model, ds, progress=False)
    assert CALLS == []
    generic = SimpleNamespace(name="x", label="X", evaluation_protocol="generalized_zero_shot")
    evaluation = _OwnEvaluation(generic)
    evaluation.hooks = _GroundTruthProtocol()
    with pytest.raises(NotImplementedError, match=r"'generalized_zero_shot'.*hooks of 'zz_own_protocol'"):
        protocol_hooks(evaluation)


def test_the_generic_protocol_takes_no_family_option_and_restores_a_bundle_it_could_not_set_up():
    ds, _ = _dataset()
    with pytest.raises(TypeError, match="takes no family options"):
        EvaluationProtocol().prepare("torch", object(), ds, Evaluation(SimpleNamespace(name="x")), zz_knob=1)
    restored = []

    class _Settled(_Settings):
        def apply_settings(self, engine, record):
            return lambda: restored.append(record["dataset"])

    def refuse(names):
        raise ValueError("no such vocabulary")

    engine = SimpleNamespace(meta=SimpleNamespace(family="x", training_class_names=None), set_classes=refuse)
    with pytest.raises(ValueError, match="no such vocabulary"):
        EvaluationProtocol().prepare("bundle", engine, ds, _Settled(SimpleNamespace(name="x")))
    assert restored == [ds.name]
