"""The toy output kind (python_tests/toy_output_kind.py: its module and its row, nothing else) on a ``zsseg batch``
run on the local Ray cluster: every image's result, where the driver receives its row, goes to ``-o out.count``
(``--count-every``, the row's option), written through the output plan and named in the row's "wrote ..." line; a
resumed run (nothing new) leaves the count as it was. The checks before Ray starts are in
python_tests/cli/test_cli_camera_output_kind.py."""

from __future__ import annotations

import pytest
from support import VOCAB10 as VOCAB
from toy_output_kind import ROW

from zsseg_rt import cli
from zsseg_rt.outputs import kinds

pytestmark = pytest.mark.slow  # a Ray cluster (python_tests/scale/conftest.py)


@pytest.fixture
def toy_kind():
    with kinds.OUTPUT_KINDS.adding(ROW, first=True):
        yield ROW


def test_a_batch_run_writes_the_toy_kind(ray_cluster, tiny_bundle, image_folder, tmp_path, capsys, toy_kind):
    out, labels = tmp_path / "out.count", tmp_path / "labels"
    argv = ["batch", image_folder, str(labels), "--bundle", tiny_bundle, "--classes", ",".join(VOCAB)]
    argv += ["--workers", "1", "--cpus-per-worker", "0.5", "--backend", "onnxruntime", "--no-progress"]
    assert cli.main([*argv, "-o", str(out), "--count-every", "5"]) == 0
    said = capsys.readouterr()
    assert out.read_text() == "5\n" and not (tmp_path / "out.partial.count").exists()  # images 0, 5, ..., 20 of 24
    assert f"zsseg batch: wrote a count of 5 of 24 frames to {out}" in said.err
    assert "24 segmented, 0 already done" in said.out
    assert cli.main([*argv, "-o", str(out), "--overwrite"]) == 0  # resumed: no new result, the count stays
    assert out.read_text() == "5\n" and "0 segmented, 24 already done" in capsys.readouterr().out
