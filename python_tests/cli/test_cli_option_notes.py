"""An Engine option that pins the device pipeline's choice (``--encoder-variant``, ``--postprocess-kernel``) given
where no device pipeline runs the frames (the host path: this CPU) is accepted and changes nothing, said in one line
(its row's help says so), in the flag's words on the command line and the keyword's in Python. Review of this wave,
item 4: ``zsseg segment --encoder-variant fp8`` (and ``--backend torch``) said nothing; camera said it in Python
words (``encoder_variant='fp8'``)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from stream_fakes import write_band_clip  # noqa: E402

ENCODER = (
    "--encoder-variant fp8 picks the image encoder of the device pipeline only: this Engine runs its frames on the "
    "host path, so it changes nothing here"
)


def _photo(tmp_path) -> str:
    path = str(tmp_path / "p.png")
    cv2.imwrite(path, np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    return path


@pytest.mark.time_bound(300)
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_segment_notes_a_pinned_encoder_variant_on_the_host_path(tmp_path, tiny_bundle, capsys, backend):
    """One note line, the flag's words, exit 0 and the image written; "auto" says nothing."""
    if backend == "torch":
        pytest.importorskip("torch")
    from zsseg_rt import cli

    photo = _photo(tmp_path)
    argv = ["segment", photo, "--bundle", tiny_bundle, "--classes", "a,b", "--backend", backend]
    assert cli.main([*argv, "-o", str(tmp_path / "one"), "--encoder-variant", "fp8"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "encoder" in line] == [f"zsseg segment: note: {ENCODER}"], err
    assert os.path.exists(tmp_path / "one" / "p_overlay.png")
    assert cli.main([*argv, "-o", str(tmp_path / "two")]) == 0
    assert not [line for line in capsys.readouterr().err.splitlines() if "encoder" in line]


@pytest.mark.time_bound(300)
def test_camera_and_python_say_it_in_their_words(tmp_path, tiny_bundle, caplog):
    """``zsseg camera`` logs the note in the flags' words (both options), a Python Engine in the keywords'; the
    pipeline keeps what it said (``option_notes``)."""
    from zsseg_rt import cli
    from zsseg_rt.runtime import Engine

    clip = write_band_clip(tmp_path / "clip.avi", frames=2)
    argv = ["camera", clip, "--bundle", tiny_bundle, "--classes", "a,b", "--backend", "onnxruntime", "--no-progress"]
    argv += ["-o", str(tmp_path / "c.mp4"), "--encoder-variant", "fp8", "--postprocess-kernel", "columns"]
    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        assert cli.main(argv) == 0
    said = [r.getMessage() for r in caplog.records if "changes nothing here" in r.getMessage()]
    assert said == [
        "--postprocess-kernel columns picks the CUDA post-processing kernel of the device pipeline only: this Engine "
        "post-processes its frames on the host (no device pipeline on a GPU), so it changes nothing here",
        ENCODER,
    ], said
    engine = Engine(tiny_bundle, classes=["a", "b"], backend="onnxruntime", encoder_variant="fp8")
    assert engine.pipeline.option_notes == [ENCODER.replace("--encoder-variant fp8", "encoder_variant='fp8'")]
