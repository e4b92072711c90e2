"""``--cache-dir`` and read-only bundles (issue 79, F12): ``--cache-dir /nonexistent/x`` or ``--cache-dir clip.avi``
was accepted silently and the exact fp32 path ran, as if nothing had been prepared; on a read-only bundle
``build-engine --dry-run`` planned records in its ``engines/``, the run failed with "Read-only file system:
'.../engines'" without a word of ``--cache-dir``, and the Engine's note named ``zsseg build-engine BUNDLE`` there.
Now each is one line that says where the records can go. The read-only file system is a stand-in (``os.access``
saying no for the bundle): root on a real read-only mount sees the same."""

from __future__ import annotations

import logging
import os
import shutil

import pytest
from support import VOCAB10

from zsseg_rt import cli
from zsseg_rt.runtime import Engine, upgrade

# absolute: the runtime-only venv's session runs from another folder than the checkout
PHOTO = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "zsseg_rt", "assets",
                     "samples", "JPEGImages", "2011_000006.jpg")  # fmt: skip


def test_a_cache_dir_that_is_a_file_or_missing_for_auto_is_refused(tiny_bundle, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"Engine\(\.\.\., cache_dir='.*2011_000006.jpg'\) is a file: give the folder"):
        Engine(tiny_bundle, classes="a,b", cache_dir=PHOTO, prepare=None)
    missing = str(tmp_path / "nowhere" / "records")
    with pytest.raises(ValueError, match=r"cache_dir='.*records'\) does not exist: with backend auto it holds"):
        Engine(tiny_bundle, classes="a,b", cache_dir=missing, prepare=None)
    # a named backend may write its first record there (it makes the folder): not refused
    Engine(tiny_bundle, classes="a,b", cache_dir=missing, backend="onnxruntime", prepare=None).close()
    Engine(tiny_bundle, classes="a,b", cache_dir=str(tmp_path), prepare=None).close()  # an existing folder
    out = str(tmp_path / "out")
    code = cli.main(["segment", PHOTO, "--bundle", tiny_bundle, "--classes", "a,b", "-o", out, "--cache-dir", missing])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and err[-1].startswith(f"zsseg segment: error: --cache-dir {missing} does not exist: "), err


@pytest.fixture
def read_only_bundle(tiny_bundle, tmp_path, monkeypatch):
    """A copy of the tiny bundle without records, on a "read-only file system" (os.access: no for it and below)."""
    bundle = shutil.copytree(tiny_bundle, str(tmp_path / "bundle"), ignore=shutil.ignore_patterns("engines"))
    real = os.access

    def access(path, mode, *args, **kwargs):
        if os.path.abspath(str(path)).startswith(bundle) and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    return bundle


def test_build_engine_on_a_read_only_bundle_says_cache_dir_before_it_starts(read_only_bundle, tmp_path, capsys):
    said = (
        f"zsseg build-engine: error: the bundle's engines folder ({read_only_bundle}/engines) cannot be written "
        f"({read_only_bundle!r} is read-only or not writable): give --cache-dir DIR (a writable folder; then "
        "--cache-dir DIR on segment, camera, batch, serve runs them)"
    )
    for dry in (["--dry-run"], []):
        code = cli.main(["build-engine", read_only_bundle, "--backend", "auto", *dry])
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and err == [said], err
    assert not os.path.exists(os.path.join(read_only_bundle, "engines"))
    code = cli.main(["build-engine", read_only_bundle, "--backend", "auto", "--dry-run", "--cache-dir", PHOTO])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        f"zsseg build-engine: error: --cache-dir {PHOTO}: is a file, not a folder for the records"
    ]
    code = cli.main(
        ["build-engine", read_only_bundle, "--backend", "auto", "--dry-run", "--cache-dir", str(tmp_path / "c")]
    )
    assert code == 0, capsys.readouterr().err  # a writable folder elsewhere: planned there


def test_the_engines_note_on_a_read_only_bundle_names_cache_dir(read_only_bundle, monkeypatch, caplog):
    monkeypatch.delenv(upgrade.PREPARE_ENV, raising=False)
    monkeypatch.setattr(upgrade, "_said", set())
    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        Engine(read_only_bundle, classes=VOCAB10, device="cpu", prepare="auto").close()
    notes = [r.getMessage() for r in caplog.records if "not prepared yet" in r.getMessage()]
    if not notes:
        pytest.skip("this CPU has no faster path to prepare for the tiny bundle: no note to read")
    assert (
        f"`zsseg build-engine {read_only_bundle} --backend auto --cache-dir DIR` prepares them into a writable DIR"
        in (notes[0])
    ), notes
    assert f"`zsseg build-engine {read_only_bundle} --backend auto` prepares" not in notes[0]
