"""Text side: templates, ensembles, vocabulary cache, official .npy embeddings, config data files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zsseg_rt.contract.common.text import OFFICIAL_EMBEDDINGS_DIR
from zsseg_rt.models import VocabularyCache, list_configs, load_config, load_templates, load_text_embeddings


def test_single_template_equals_normalised_tower_output(tiny_model):
    te = tiny_model.text_encoder
    names = ["cat", "dog", "traffic light"]
    emb = te.encode(names, ["a photo of a {}"], use_cache=False)
    tok = te.tokenizer([f"a photo of a {n}" for n in names])
    assert tok.shape == (3, 77)
    with torch.no_grad():
        ref = te.encode_tokens(tok.long())
    assert emb.dtype == torch.float32 and emb.shape == (3, 32)
    torch.testing.assert_close(emb, ref)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))


def test_template_ensemble_normalise_average_renormalise(tiny_model):
    te = tiny_model.text_encoder
    templates = load_templates("coco_multi")
    assert len(templates) == 15
    emb = te.encode(["cow", "sky-other"], templates, use_cache=False)
    with torch.no_grad():
        rows = []
        for n in ["cow", "sky-other"]:
            e = te.encode_tokens(te.tokenizer([t.format(n) for t in templates]).long())
            e = e / e.norm(dim=-1, keepdim=True)
            m = e.mean(0)
            rows.append(m / m.norm())
    torch.testing.assert_close(emb, torch.stack(rows))
    # differs from a plain (un-normalised) average of raw tower outputs only through the normalisations
    assert not torch.allclose(emb[0], emb[1])


def test_vocabulary_cache(tiny_model):
    te = tiny_model.text_encoder
    te.cache.clear()
    a = tiny_model.text_embeddings(["cat", "dog"])
    hits = te.cache.hits
    b = tiny_model.text_embeddings(["cat", "dog"])
    assert te.cache.hits == hits + 1
    torch.testing.assert_close(a, b)
    b.zero_()  # callers get a copy
    torch.testing.assert_close(tiny_model.text_embeddings(["cat", "dog"]), a)
    c = tiny_model.text_embeddings(["dog", "cat"])  # order is part of the key
    torch.testing.assert_close(c, a.flip(0))
    # loading new weights invalidates the cache
    assert len(te.cache) >= 1
    tiny_model.text_encoder.load_state_dict(tiny_model.text_encoder.state_dict())
    assert len(te.cache) == 0

    cache = VocabularyCache(maxsize=2)
    calls = []
    f = lambda n, t: calls.append(n) or torch.ones(len(n), 4)  # noqa: E731
    cache.get(["a"], ["{}"], f)
    cache.get(["b"], ["{}"], f)
    cache.get(["a"], ["{}"], f)
    cache.get(["c"], ["{}"], f)  # evicts "b" (least recently used)
    assert (("a",), ("{}",)) in {k for k in cache._data}
    assert (["b"], ["{}"]) not in cache
    assert [list(c) for c in calls] == [["a"], ["b"], ["c"]]  # "a" was served from the cache once


@pytest.mark.parametrize("name,shape", [("voc12_single.npy", (20, 512)), ("coco_multi.npy", (171, 512))])
def test_official_npy_embeddings(name, shape):
    raw = np.load(OFFICIAL_EMBEDDINGS_DIR / name)
    assert raw.dtype == np.float16
    t = load_text_embeddings(OFFICIAL_EMBEDDINGS_DIR / name, num_classes=shape[0], embed_dim=512)
    assert t.dtype == torch.float32 and tuple(t.shape) == shape
    torch.testing.assert_close(t, torch.from_numpy(raw.astype(np.float32)), rtol=0, atol=0)
    # fp16 rounding leaves the rows unit-norm to ~1e-3
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(shape[0]), rtol=0, atol=2e-3)
    with pytest.raises(ValueError, match="rows but the vocabulary"):
        load_text_embeddings(OFFICIAL_EMBEDDINGS_DIR / name, num_classes=shape[0] + 1)


def test_bad_embedding_files(tmp_path):
    bad = tmp_path / "bad.npy"
    arr = np.ones((3, 4), dtype=np.float16)
    arr[1, 2] = np.nan
    np.save(bad, arr)
    with pytest.raises(ValueError, match="NaN or inf"):
        load_text_embeddings(bad)
    np.save(tmp_path / "rank3.npy", np.ones((1, 3, 4), dtype=np.float16))
    with pytest.raises(ValueError, match=r"\[C, D\]"):
        load_text_embeddings(tmp_path / "rank3.npy")


def test_bundled_configs_and_vocab_files():
    names = list_configs()
    for ds in ("voc", "coco"):
        for setting in ("inductive", "transductive", "fully"):
            assert f"zegclip_vitb16_{ds}_{setting}" in names
    voc = load_config("zegclip_vitb16_voc_inductive")
    assert len(voc.class_names) == 20 and "background" not in voc.class_names
    assert [voc.class_names[i] for i in voc.unseen_classes] == ["pottedplant", "sheep", "sofa", "train", "tvmonitor"]
    assert voc.num_prompt_tokens == 10 and voc.calibration_bias == 0.1 and voc.templates == ["a photo of a {}"]
    assert (voc.image_size, voc.crop_size, voc.stride, voc.patch_size, voc.embed_dim) == (512, 512, 426, 16, 512)
    assert voc.mean == [123.675, 116.28, 103.53] and voc.std == [58.395, 57.12, 57.375]
    assert voc.loss["mask_weight"] == 100.0 and voc.loss["dice_weight"] == 1.0 and voc.loss["mask_ignore"] is False
    coco = load_config("zegclip_vitb16_coco_inductive")
    assert len(coco.class_names) == 171 and len(coco.seen_classes) == 156 and coco.num_prompt_tokens == 100
    assert [coco.class_names[i] for i in coco.unseen_classes] == [
        "cow",
        "giraffe",
        "suitcase",
        "frisbee",
        "skateboard",
        "carrot",
        "scissors",
        "cardboard",
        "clouds",
        "grass",
        "playingfield",
        "river",
        "road",
        "tree",
        "wall-concrete",
    ]
    assert len(coco.templates) == 15
    assert load_config("zegclip_vitb16_coco_transductive").calibration_bias == 0.0
    fully = load_config("zegclip_vitb16_voc_fully")
    assert fully.seen_classes == list(range(20)) and fully.unseen_classes == []


def test_template_validation():
    with pytest.raises(ValueError, match="exactly one"):
        load_templates(["a photo of {} and {}"])
    with pytest.raises(ValueError, match="unknown template set"):
        load_templates("nope")
    with pytest.raises(ValueError, match="empty"):
        load_templates([])
