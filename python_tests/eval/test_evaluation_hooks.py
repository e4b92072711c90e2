"""The generic ``evaluate()`` resolves the checkpoint's family once and runs the eval toolkit with that family's
hooks (its PyTorch inference, its bundle settings); the toolkit pieces do not look families up themselves."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import pytest

from zsseg_rt.contract import registry
from zsseg_rt.contract.family import Evaluation, ModelFamily
from zsseg_rt.data import SyntheticDataset
from zsseg_rt.eval.evaluate import HookedSegmenter, evaluate, follow_settings, run_generalized_zero_shot

CALLS: list = []


class _GroundTruthEvaluation(Evaluation):
    """Predicts the ground truth of the image it is given (looked up by the image's bytes), so the metrics are 100."""

    truth: Dict[bytes, np.ndarray] = {}

    def predict(self, model, rgb, class_names, text=None, mode="slide", device=None, seen_classes=None):
        CALLS.append(("predict", len(class_names), mode))
        labels = self.truth[rgb.tobytes()]
        return labels, np.ones(labels.shape, np.float32)


@pytest.fixture
def family():
    fam = ModelFamily(
        evaluation_class=_GroundTruthEvaluation,
        name="zz_hooked",
        config_class="a:b",
        model_class="a:b",
        load_config="a:b",
        create="a:b",
    )
    registry.register_family(fam)
    CALLS.clear()
    try:
        yield fam
    finally:
        registry._FAMILIES.pop("zz_hooked", None)


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
    out = run_generalized_zero_shot(
        "torch", model, ds, (), text=text, limit=2, progress=False, predict=family.evaluation.predict
    )
    assert out["images"] == 2 and out["mIoU"] == pytest.approx(100.0)


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
