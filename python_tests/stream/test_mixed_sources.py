"""Every documented mix of sources runs (issue 87, M1): ``zsseg camera clip.avi photos/`` (a video file and an image
folder together) crashed in 13 of 16 runs at 7f842ed with "partially initialized module 'PIL.Image' has no attribute
'Image'": the folder's capture thread was importing Pillow while the Engine looked for ``PIL.Image`` in
``sys.modules``. The race is forced here with an import hook (no sleep): Pillow's import is held half done in a
thread while the Engine segments an array."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from stream_fakes import count_frames, write_band_clip  # noqa: E402

# Pillow's PIL.Image held half imported (in sys.modules, no ``Image`` class yet) in a thread while the Engine runs
_RACE = textwrap.dedent(
    """
    import importlib.abc, importlib.util, sys, threading
    import numpy as np
    from zsseg_rt import Engine

    started, release = threading.Event(), threading.Event()

    class Held(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if name != "PIL.Image":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            self.real = spec.loader
            spec.loader = self
            return spec

        def create_module(self, spec):
            return self.real.create_module(spec)

        def exec_module(self, module):
            started.set()  # PIL.Image is in sys.modules now, not executed yet
            release.wait()
            self.real.exec_module(module)

    engine = Engine(sys.argv[1], classes="a,b", backend="onnxruntime")
    assert "PIL.Image" not in sys.modules
    sys.meta_path.insert(0, Held())
    importer = threading.Thread(target=lambda: __import__("PIL.Image"))
    importer.start()
    started.wait()
    try:
        labels = engine(np.zeros((48, 64, 3), np.uint8)).labels  # 7f842ed: AttributeError (partially initialized)
    finally:
        release.set()
        importer.join()
    from PIL import Image

    photo = Image.fromarray(np.full((48, 64, 3), 200, np.uint8))
    print("ok", labels.shape, engine(photo).labels.shape)  # a PIL image is still taken as one
    """
)


@pytest.mark.time_bound(300)
def test_the_engine_runs_while_another_thread_imports_pillow(tmp_path, tiny_bundle):
    """With ``PIL.Image`` half imported by another thread, the Engine segments an array (it does not read the
    half-made module), and a PIL image afterwards is still recognised as one."""
    script = tmp_path / "race.py"
    script.write_text(_RACE)
    done = subprocess.run(
        [sys.executable, str(script), tiny_bundle], capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok", "(48,", "64)", "(48,", "64)"], done.stdout


@pytest.mark.time_bound(300)
def test_camera_takes_a_video_file_and_an_image_folder(tmp_path, tiny_bundle, capsys):
    """``zsseg camera clip.avi photos/ -o out_{source}.mp4``: exit 0, one video per source with its frames (5 of
    the clip's, the folder's 3 images)."""
    from zsseg_rt import cli

    clip = write_band_clip(tmp_path / "clip.avi", frames=8, fps=10.0, size=(64, 48))
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        cv2.imwrite(str(photos / f"p{index}.jpg"), np.full((48, 64, 3), 60 * index, np.uint8))
    out = tmp_path / "out_{source}.mp4"
    argv = ["camera", clip, str(photos), "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(out)]
    code = cli.main([*argv, "--max-frames", "5", "--no-progress", "--backend", "onnxruntime"])
    assert code == 0, capsys.readouterr().err
    assert count_frames(tmp_path / "out_clip.mp4") == 5
    assert count_frames(tmp_path / "out_photos.mp4") == 3
    assert sorted(os.listdir(tmp_path)) == ["clip.avi", "out_clip.mp4", "out_photos.mp4", "photos"]  # no partial
