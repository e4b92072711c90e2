"""docs/usage.md's reader of a killed run's ``out.partial.mcap`` (issue 79, F10: the doc said "the MCAP project's
sequential reader reads it up to its last complete chunk" and named no call; its own ``read_ros2_messages`` raises
on such a file and ``NonSeekingReader.iter_decoded_messages()`` with its default order yields nothing). The doc's
block, as written, runs here on the file a writer killed with SIGKILL leaves, and on that file cut inside a record."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import subprocess_env

REPO = Path(__file__).resolve().parents[2]
FRAMES = 30

# A run killed mid-stream: McapSink writes FRAMES frames (a chunk a message) and the process is killed (no close).
_KILLED_WRITER = f"""
import os, signal, sys
from types import SimpleNamespace
import numpy as np
from zsseg_rt.outputs import mcap_sink
from zsseg_rt.stream import McapSink
mcap_sink.CHUNK_BYTES = 1
sink = McapSink(sys.argv[1], overlay=False)
for k in range({FRAMES}):
    labels = np.full((6, 8), k % 3, np.int32)
    result = SimpleNamespace(labels=labels, class_names=["a", "b", "c"], overlay=None)
    sink.write_result(np.zeros((6, 8, 3), np.uint8), result, stamp=float(k))
os.kill(os.getpid(), signal.SIGKILL)
"""


def _doc_block() -> str:
    text = (REPO / "docs" / "usage.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "NonSeekingReader" in b]
    assert len(blocks) == 1, "docs/usage.md: one block that reads a killed run's out.partial.mcap"
    return blocks[0]


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    pytest.importorskip("mcap_ros2.decoder")
    folder = tmp_path_factory.mktemp("killed")
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(folder / "out.mcap")], env=subprocess_env(), capture_output=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    partial = folder / "out.partial.mcap"
    assert partial.is_file() and not (folder / "out.mcap").exists()
    return partial


def _run_doc_block(path: Path):
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(path.parent)  # the block opens "out.partial.mcap", as a user in the run's folder does
    try:
        exec(compile(_doc_block(), "docs/usage.md", "exec"), namespace)  # noqa: S102 - the doc's own code
    finally:
        os.chdir(cwd)
    return namespace["messages"]


def _labels(messages):
    out = []
    for topic, _stamp, image in messages:
        if topic == "/camera/labels":
            out.append(np.frombuffer(bytes(image.data), np.uint16).reshape(image.height, image.width))
    return out


def test_the_docs_reader_reads_a_killed_runs_file(killed_run, capsys):
    messages = _run_doc_block(killed_run)
    assert "read up to the cut: EndOfFile" in capsys.readouterr().out
    labels = _labels(messages)
    assert 1 <= len(labels) <= FRAMES
    assert all(np.array_equal(m, np.full((6, 8), k % 3)) for k, m in enumerate(labels))
    # why the doc names this call: the reader its other examples use raises on the same file
    reader = pytest.importorskip("mcap_ros2.reader")
    with pytest.raises(Exception):  # noqa: B017 - whatever it raises (the probe: a missing summary / footer)
        list(reader.read_ros2_messages(str(killed_run)))


def test_the_docs_reader_reads_up_to_a_cut_inside_a_record(killed_run, tmp_path):
    data = killed_run.read_bytes()
    whole = len(_labels(_run_doc_block(killed_run)))
    for cut in (len(data) - 3, len(data) * 2 // 3, len(data) // 2 + 1):
        partial = tmp_path / str(cut) / "out.partial.mcap"
        partial.parent.mkdir()
        partial.write_bytes(data[:cut])
        labels = _labels(_run_doc_block(partial))
        assert 1 <= len(labels) <= whole, (cut, len(labels), whole)
        assert all(np.array_equal(m, np.full((6, 8), k % 3)) for k, m in enumerate(labels))
