"""The shared steps of the official importers: key mapping, the fit check and the checkpoint reader."""

import pytest
import torch

from zsseg_rt.contract.common.weights import WeightsError, map_keys, read_official_state, require_fit


def test_map_keys_sorts_tensors_into_mapped_unused_and_unexpected():
    state = {"a.w": torch.ones(1), "skip.w": torch.ones(1), "b.w": torch.ones(1)}
    target = {"A.w": torch.zeros(1)}
    mapped, unused, unexpected = map_keys(
        state, target, lambda k: None if k.startswith("skip") else k.replace("a.", "A.")
    )
    assert list(mapped) == ["A.w"] and unused == ["skip.w"] and unexpected == ["b.w"]


def test_require_fit_names_the_problems_and_the_advice():
    target = {"w": torch.zeros(2), "v": torch.zeros(1)}
    require_fit({"w": torch.ones(2), "v": torch.ones(1)}, target, [], [], "x")  # fits: no error
    with pytest.raises(WeightsError, match=r"^f: does not fit: 1 missing key\(s\): v; .*shape-mismatched.*\. Try y$"):
        require_fit({"w": torch.ones(3)}, target, ["v"], [], "f: does not fit", "Try y")
    with pytest.raises(WeightsError, match=r"unexpected key\(s\): u$"):
        require_fit({}, {}, [], ["u"], "f")


def test_read_official_state_takes_the_first_container_key_and_strips_module(tmp_path):
    path = tmp_path / "ck.pth"
    torch.save({"model": {"module.a": torch.ones(1)}, "state_dict": {"b": torch.ones(1)}, "meta": {}}, path)
    sd, ck = read_official_state(path, "Fam", "example.org", "a test", ("model", "state_dict"), "re-save it")
    assert list(sd) == ["a"] and set(ck) == {"model", "state_dict", "meta"}
    sd, _ = read_official_state(path, "Fam", "example.org", "a test", ("state_dict",), "re-save it")
    assert list(sd) == ["b"]
    with pytest.raises(FileNotFoundError, match="official Fam checkpoint .* README of example.org"):
        read_official_state(tmp_path / "none.pth", "Fam", "example.org", "a test", ("model",), "")
    torch.save([1, 2], path)
    with pytest.raises(WeightsError, match="expected a test checkpoint dict, got list"):
        read_official_state(path, "Fam", "example.org", "a test", ("model",), "")
    torch.save({"model": {"x": 1}}, path)
    with pytest.raises(WeightsError, match="no tensors in the checkpoint"):
        read_official_state(path, "Fam", "example.org", "a test", ("model",), "")
