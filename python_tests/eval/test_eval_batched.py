"""``zsseg eval`` of a bundle on a GPU: ``segment_dataset`` segments the images ``EVAL_BATCH`` at a time in one Engine
call (``HookedSegmenter.many``: the device pipeline's batched graphs), with the metrics and the speed summary of one
call an image. Here on the CPU with the batch forced (the host path's list call): the same confusion matrix, the
same numbers, the calls counted; a last partial batch segmented too. Its speed is measured on a GPU only."""

from __future__ import annotations

import numpy as np
import pytest

from zsseg_rt.assets import SAMPLES_DIR

pytest.importorskip("onnxruntime")


class _Counting:
    """An Engine whose calls are counted (a list call: its length)."""

    def __init__(self, engine):
        self.engine, self.calls = engine, []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def __call__(self, image, **kwargs):
        self.calls.append(len(image) if isinstance(image, list) else 1)
        return self.engine(image, **kwargs)


def test_a_batched_eval_gives_the_numbers_of_one_call_an_image(tiny_bundle):
    from zsseg_rt.data import build_dataset
    from zsseg_rt.eval.evaluate import EVAL_BATCH, HookedSegmenter, load_for_eval, segment_dataset

    ds = build_dataset({"type": "voc", "root": str(SAMPLES_DIR), "split": "val"})
    assert len(ds) == 4
    engine = _Counting(load_for_eval(tiny_bundle, backend="onnxruntime")[1])
    rng = np.random.default_rng(0)  # distinct embeddings: the random model predicts several classes
    text = rng.standard_normal((len(ds.class_names), engine.meta.embed_dim)).astype(np.float32)
    segmenter = HookedSegmenter("bundle", engine, ds.class_names, text / np.linalg.norm(text, axis=1)[:, None], "slide")
    from zsseg_rt.runtime.device.frame_batches import BATCH_SIZES

    assert segmenter.batch == 1 and EVAL_BATCH == BATCH_SIZES[-1]  # the host: one call an image; a GPU: its largest
    single = segment_dataset(segmenter, ds, ds.class_names, progress=False)
    assert engine.calls == [1, 1, 1, 1]
    engine.calls.clear()
    segmenter.batch = 3  # as a GPU's EVAL_BATCH would, with a last partial batch
    batched = segment_dataset(segmenter, ds, ds.class_names, progress=False)
    assert engine.calls == [3, 1]
    assert batched["images"] == single["images"] == 4
    for key in ("pAcc", "mIoU", "mIoU_seen"):
        assert batched[key] == single[key], key
    assert batched["per_class"] == single["per_class"] and 0 < single["pAcc"] < 100
    assert batched["speed"]["images"] == 4 and list(batched["speed"]["ms_per_image"]) == list(
        single["speed"]["ms_per_image"]
    )  # the Engine's stages of each image, as one call an image gives them


def test_a_batched_segmenter_that_gives_fewer_maps_than_images_is_an_error_not_a_short_score():
    from test_eval_speed import ToyDataset

    from zsseg_rt.eval.evaluate import segment_dataset

    class Short:
        batch = 3

        def many(self, rgbs):
            return [np.zeros(rgb.shape[:2], np.int64) for rgb in rgbs[1:]]

    with pytest.raises(ValueError, match=r"^a batched segmenter gave 2 label maps for 3 images$"):
        segment_dataset(Short(), ToyDataset(), ["a", "b"], progress=False)
