"""The repository works on its own: no tracked file other than documentation names a path outside it."""

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared (the development machine's source folder), shared/data and absolute paths of the development machine
FORBIDDEN = re.compile(r"\.\./shared|shared/data|shared/golden|shared/reference|/work/|/root/|/home/\w+/")
DOC_SUFFIXES = {".md", ".txt", ".rst"}
# Run records of GPU machines (checks/gpu_record.py): the paths in them are that machine's, as its programs logged
# them; nothing reads them as paths
RECORDS = REPO / "docs" / "gpu_runs"


def _tracked_files():
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError) as exc:  # e.g. an sdist without .git
        pytest.skip(f"not a git checkout ({exc})")
    return [REPO / name for name in out.decode().split("\0") if name]


def test_no_tracked_file_reads_outside_the_repository():
    offenders = []
    for path in _tracked_files():
        if path.suffix in DOC_SUFFIXES or not path.is_file() or path.parent == RECORDS:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary data (images, weights)
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line) and path.name != Path(__file__).name:
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)


def test_the_checker_sees_a_forbidden_path():  # the check above can fail
    assert FORBIDDEN.search('SAMPLES = "/work/shared/data/voc_samples"')
    assert FORBIDDEN.search('os.path.join(REPO, "..", "shared", "x")') is None  # spelled in parts: see below
    assert FORBIDDEN.search("path = '../shared/golden'")


def test_no_tracked_file_joins_a_sibling_shared_folder():
    pattern = re.compile(r'["\']\.\.["\']\s*,\s*["\']shared["\']|parent\s*/\s*["\']shared["\']')
    offenders = []
    for path in _tracked_files():
        if path.suffix == ".py" and path.name != Path(__file__).name:
            text = path.read_text(encoding="utf-8")
            offenders += [
                f"{path.relative_to(REPO)}:{i}" for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)
            ]
    assert not offenders, offenders


def test_package_data_is_present():
    from zsseg_rt import assets

    assert len(assets.sample_images()) == 4
    assert all(assets.sample_label(p.name).is_file() for p in assets.sample_images())
    assert {p.name for p in assets.TEXT_EMBEDDINGS_DIR.glob("*.npy")} == {
        "voc12_single.npy",
        "coco_single.npy",
        "coco_multi.npy",
    }
