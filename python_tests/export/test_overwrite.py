"""`zsseg export OUT --overwrite` replaces only a bundle of ours, never a source, never anything else (issue 16.1).

Every refusal is checked to leave the destination byte-for-byte as it was; the one accepted case (a real bundle)
is checked to be replaced by a complete, verified bundle with no temporary directory left beside it."""

import json
import os
import shutil

import pytest

from zsseg_rt import cli
from zsseg_rt.export.overwrite import OverwriteRefused, check_export_destination, replace_directory


def _snapshot(root):
    """{relative path: bytes or link target} of everything under ``root`` (links not followed)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                found[rel] = "link:" + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    found[rel] = handle.read()
            else:
                found[rel] = "dir"
    return found


@pytest.fixture(scope="module")
def native_dir(tiny_bundle):
    """The tiny bundle's native checkpoint directory (written next to it by the fixture)."""
    return os.path.join(os.path.dirname(tiny_bundle), "native")


def _export(out, native, capsys, *extra, outputs=None):
    code = cli.main(["export", str(out), "--native", str(native), "--max-classes", "4", "--verify-images", *extra])
    captured = capsys.readouterr()
    if outputs is not None:
        outputs.append(captured.out)
    return code, captured.err


def test_directory_with_other_files_is_refused(tmp_path, native_dir, capsys):
    out = tmp_path / "p"
    (out / "sub").mkdir(parents=True)
    (out / "thesis.txt").write_text("x")
    before = _snapshot(out)
    code, err = _export(out, native_dir, capsys, "--overwrite")
    assert code != 0
    assert err.count("\n") == 1 and "not a zsseg_rt bundle" in err, err
    assert _snapshot(out) == before


def test_directory_holding_the_source_checkpoint_is_refused(tmp_path, native_dir, capsys):
    out = tmp_path / "p"
    source = out / "ckpt"
    shutil.copytree(native_dir, source)
    before = _snapshot(out)
    for target in (out, source):  # the folder that holds the checkpoint, and the checkpoint folder itself
        code, err = _export(target, source, capsys, "--overwrite")
        assert code != 0 and "contains the source" in err and err.count("\n") == 1, err
    assert _snapshot(out) == before


def test_file_at_destination_is_refused(tmp_path, native_dir, capsys):
    out = tmp_path / "bundle"
    out.write_text("not a bundle")
    code, err = _export(out, native_dir, capsys, "--overwrite")
    assert code != 0 and "is a file" in err, err
    assert out.read_text() == "not a bundle"


def test_symlink_at_destination_is_refused(tmp_path, tiny_bundle, native_dir, capsys):
    target = tmp_path / "real"
    shutil.copytree(tiny_bundle, target)
    before = _snapshot(target)
    link = tmp_path / "link"
    link.symlink_to(target)
    code, err = _export(link, native_dir, capsys, "--overwrite")
    assert code != 0 and "symbolic link" in err, err
    assert os.path.islink(link) and _snapshot(target) == before


def test_bundle_with_a_foreign_file_is_refused(tmp_path, tiny_bundle, native_dir, capsys):
    out = tmp_path / "b"
    shutil.copytree(tiny_bundle, out)
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    code, err = _export(out, native_dir, capsys, "--overwrite")
    assert code != 0 and "notes.txt" in err, err
    assert _snapshot(out) == before


def test_existing_path_without_overwrite_is_refused(tmp_path, tiny_bundle, native_dir, capsys):
    out = tmp_path / "b"
    shutil.copytree(tiny_bundle, out)
    before = _snapshot(out)
    code, err = _export(out, native_dir, capsys)
    assert code != 0 and "--overwrite" in err, err
    assert _snapshot(out) == before


@pytest.mark.slow  # a real export of the tiny model (~10 s alone, more on a loaded machine)
def test_real_bundle_is_replaced_atomically(tmp_path, tiny_bundle, native_dir, capsys):
    from zsseg_rt.bundle import load_meta, verify_files

    out = tmp_path / "b"
    shutil.copytree(tiny_bundle, out)
    _fake_engine_cache(out)  # the TensorRT cache is part of a bundle
    old_meta = json.loads((out / "meta.json").read_text())
    printed: list = []
    code, err = _export(out, native_dir, capsys, "--overwrite", outputs=printed)
    assert code == 0, err
    meta = load_meta(str(out))
    verify_files(meta)
    # the digest a deployment pins is printed, and it is the new bundle's (Engine(expected_digest=...) takes it)
    assert f"digest {meta.digest}\n" in printed[0] and meta.digest.startswith("sha256:"), printed
    assert meta.max_classes == 4 != old_meta["max_classes"]  # the new bundle, not the old one
    assert not (out / "engines").exists()  # stale engines went with the old bundle
    assert sorted(os.listdir(tmp_path)) == ["b"]  # no temporary or old directory left beside it
    assert os.path.isfile(os.path.join(native_dir, "model.safetensors"))  # the source is untouched


def _fake_engine_cache(bundle) -> None:
    """What `zsseg build-engine` leaves under engines/: a key folder with an engine and the engine.json recording its
    sha256, and a timing cache."""
    from zsseg_rt.bundle import sha256_file

    folder = bundle / "engines" / "0123456789abcdef01234567"
    folder.mkdir(parents=True)
    (folder / "image_encoder.engine").write_bytes(b"stale engine")
    record = {"engine_file": "image_encoder.engine", "engine_sha256": sha256_file(str(folder / "image_encoder.engine"))}
    (folder / "engine.json").write_text(json.dumps(record))
    (bundle / "engines" / "timing-trt10.3.0-orin-sm87.cache").write_bytes(b"timing")


def test_only_files_the_bundle_wrote_are_ever_deleted(tmp_path, tiny_bundle):
    """A meta.json that lists a user's file (hand-written, or edited: its meta_sha256 no longer matches), a listed
    file changed since the export, and user data under engines/ all make --overwrite refuse; nothing is deleted."""
    from zsseg_rt.bundle import write_meta

    def fresh(name):
        out = tmp_path / name
        # the export's files (another test of this process may have built engines into its copy of the bundle)
        shutil.copytree(tiny_bundle, out, ignore=shutil.ignore_patterns("engines"))
        _fake_engine_cache(out)
        check_export_destination(str(out), overwrite=True)  # the untouched bundle with its engine cache: accepted
        return out

    out = fresh("listed")  # meta.json lists thesis.txt (with a made-up hash), edited by hand
    (out / "thesis.txt").write_text("years of work")
    meta = json.loads((out / "meta.json").read_text())
    meta["files"]["thesis.txt"] = "0" * 64
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(OverwriteRefused, match="not a zsseg_rt bundle.*meta_sha256"):
        check_export_destination(str(out), overwrite=True)
    write_meta(str(out / "meta.json"), meta)  # ... even re-signed: the listed hash is not the file's
    with pytest.raises(OverwriteRefused, match="'thesis.txt', which meta.json lists but with another sha256"):
        check_export_destination(str(out), overwrite=True)

    out = fresh("edited")  # a graph changed since the export (e.g. a user's own fine-tuned file copied in)
    (out / "head.onnx").write_bytes(b"my own graph")
    with pytest.raises(OverwriteRefused, match="'head.onnx', which meta.json lists but with another sha256"):
        check_export_destination(str(out), overwrite=True)

    for extra, match in (
        ("engines/results.csv", "'engines/results.csv'"),
        ("engines/mine/model.engine", "'engines/mine'"),
        ("engines/0123456789abcdef01234567/notes.txt", "'engines/0123456789abcdef01234567/notes.txt'"),
    ):
        out = fresh(extra.replace("/", "_"))
        (out / extra).parent.mkdir(parents=True, exist_ok=True)
        (out / extra).write_text("user data")
        with pytest.raises(OverwriteRefused, match="engine cache .* holds " + match):
            check_export_destination(str(out), overwrite=True)
    out = fresh("engine_swapped")  # an engine that is not the one its engine.json records
    (out / "engines" / "0123456789abcdef01234567" / "image_encoder.engine").write_bytes(b"a user's engine")
    with pytest.raises(OverwriteRefused, match="image_encoder.engine"):
        check_export_destination(str(out), overwrite=True)


def test_failed_swap_puts_the_old_bundle_back(tmp_path, tiny_bundle, monkeypatch):
    out = str(tmp_path / "b")
    shutil.copytree(tiny_bundle, out)
    new = tmp_path / ".new"
    new.mkdir()
    (new / "meta.json").write_text("{}")
    before = _snapshot(out)
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # moving the new bundle in fails (e.g. the disk is gone)
            raise OSError("simulated failure")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        replace_directory(str(new), out, atomic_exchange=False)
    monkeypatch.undo()
    assert _snapshot(out) == before and new.is_dir()


@pytest.mark.parametrize("atomic_exchange", [True, False])
def test_replace_directory_swaps_contents(tmp_path, atomic_exchange):
    out, new = tmp_path / "b", tmp_path / ".new"
    out.mkdir()
    (out / "meta.json").write_text("old")
    new.mkdir()
    (new / "meta.json").write_text("new")
    replace_directory(str(new), str(out), atomic_exchange=atomic_exchange)
    assert (out / "meta.json").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["b"]


def test_empty_directory_may_be_written(tmp_path):
    (tmp_path / "empty").mkdir()
    check_export_destination(str(tmp_path / "empty"), overwrite=False)  # nothing there to lose


def test_library_refuses_the_same_cases(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.txt").write_text("x")
    with pytest.raises(OverwriteRefused, match="not a zsseg_rt bundle"):
        check_export_destination(str(tmp_path / "other"), overwrite=True)
    with pytest.raises(OverwriteRefused, match="contains the source"):
        check_export_destination(str(tmp_path), overwrite=True, sources=[str(tmp_path / "other" / "a.txt")])
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "meta.json").write_text(json.dumps({"files": {}}))  # no format marker
    with pytest.raises(OverwriteRefused, match="not a zsseg_rt bundle"):
        check_export_destination(str(tmp_path / "fake"), overwrite=True)
    check_export_destination(str(tmp_path / "new"), overwrite=False)  # a new path is fine
    assert isinstance(OverwriteRefused("x"), FileExistsError)
