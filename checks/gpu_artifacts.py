"""The carried artefacts of the acceptance run: their manifest (written here by ``tools/gpu_artifacts.sh``) and its
check on the lent GPU machine (``tools/gpu_check.sh``, before every stage).

Usage (standard library only; binutils' readelf for the ELF facts, cuobjdump where found for the CUDA code):
    python -m checks gpu_artifacts size --root ROOT [--limit-mib 64] [PATH...]          # refuse early: too big
    python -m checks gpu_artifacts manifest --artifacts DIR --root ROOT --info FILE [--limit-mib 64] [--allow-dirty]
    python -m checks gpu_artifacts verify --artifacts DIR --root ROOT [--json FILE]     # on the GPU machine
    python -m checks gpu_artifacts clip --out DIR [--source VIDEO] [--frames 48]       # the probe's --live clip

The limit is the device tool's: the working tree that travels with a command (tracked files and untracked ones git
does not ignore) plus the carried folder, at most 64 MiB together. ``manifest`` refuses (exit 1, no manifest
written) when the artefacts and that tree exceed it, when a binary needs a shared library outside ``ALLOWED_NEEDED``
(the system libraries every Linux image with a C++ compiler has: the GPU image has no GoogleTest, no CUDA runtime
beside the driver's), or when the tree differs from its commit in a build input (unless ``--allow-dirty``: the
manifest then says so and gpu_record refuses to commit such a run).

``verify`` checks what a stage runs from: every file of the manifest with its SHA-256, the Python the wheel was built
for, the checkout's build inputs and tests against the ones the artefacts were built from (the device tool sends the
working tree without .git, so files are compared by content), and that the dynamic loader resolves every shared
library the binaries need (``ldd``: a glibc or libstdc++ older than the build machine's shows here, by name).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from . import gpu_stages

MIB = 1024 * 1024
LIMIT_MIB = 64  # the device tool: working tree + carried paths per command
MANIFEST = "manifest.json"
SCHEMA = "zsseg_rt.gpu_artifacts.v1"
# Build inputs: the artefacts are stale when one of these differs from what they were built from
BUILD_INPUTS = ("zsseg_rt", "csrc", "cpp_tests", "cmake", "CMakeLists.txt", "pyproject.toml")
# What the acceptance run runs from the checkout itself (the tests and the programs): recorded beside the commit
TEST_INPUTS = ("python_tests", "benchmarks", "checks", "tools")
SKIPPED_PARTS = ("__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache")
# Shared libraries any glibc Linux with a C++ runtime has (the GPU image: Ubuntu with gcc, for nvcc): nothing else
ALLOWED_NEEDED = {
    "libc.so.6",
    "libm.so.6",
    "libstdc++.so.6",
    "libgcc_s.so.1",
    "libgomp.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "ld-linux-x86-64.so.2",
}


class Refused(Exception):
    """The artefacts cannot be carried or trusted: the message says why and what to do."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=120).stdout


def travelling_files(root: Path) -> List[str]:
    """The files the device tool sends with every command: tracked, and untracked but not ignored."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "-c", "-o", "--exclude-standard"], cwd=root, capture_output=True, check=True
    ).stdout
    return sorted({name for name in out.decode().split("\0") if name and (root / name).is_file()})


def _size(paths: Iterable[Path]) -> int:
    total = 0
    for path in paths:
        if path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        elif path.is_file():
            total += path.stat().st_size
    return total


def size_report(root: Path, carried: List[Path], limit_mib: float) -> Tuple[int, int, List[str]]:
    """(tree bytes, carried bytes, lines); raises Refused when the two exceed the limit."""
    tree = sum((root / name).stat().st_size for name in travelling_files(root))
    load = _size(carried)
    lines = [
        f"working tree that travels: {tree / MIB:.1f} MiB (tracked + untracked-not-ignored files)",
        f"carried artefacts: {load / MIB:.1f} MiB",
        f"together: {(tree + load) / MIB:.1f} MiB of the device tool's {limit_mib:g} MiB",
    ]
    if tree + load > limit_mib * MIB:
        biggest = sorted(((p.stat().st_size, p) for c in carried for p in _files(c)), reverse=True)[:5]
        raise Refused(
            f"the artefacts ({load / MIB:.1f} MiB) and the working tree ({tree / MIB:.1f} MiB) exceed the device "
            f"tool's {limit_mib:g} MiB per command; largest artefacts: "
            + ", ".join(f"{p.name} {s / MIB:.1f} MiB" for s, p in biggest)
            + " (fewer CUDA architectures: --archs, or carry the Python wheels in another command)"
        )
    return tree, load, lines


def _files(path: Path) -> List[Path]:
    if path.is_dir():
        return [p for p in path.rglob("*") if p.is_file()]
    return [path] if path.is_file() else []


def input_hashes(root: Path, names: Iterable[str], roots: Tuple[str, ...]) -> Dict[str, str]:
    return {
        name: sha256(root / name)
        for name in names
        if any(name == r or name.startswith(r + "/") for r in roots)
        and not any(part in SKIPPED_PARTS for part in Path(name).parts)
    }


def walk_inputs(root: Path, roots: Tuple[str, ...]) -> Dict[str, str]:
    """The same as input_hashes on a tree without .git (the GPU machine's copy): every file under the roots."""
    found: Dict[str, str] = {}
    for top in roots:
        path = root / top
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        for file in files:
            rel = file.relative_to(root).as_posix()
            if not any(part in SKIPPED_PARTS for part in Path(rel).parts) and not rel.endswith(".pyc"):
                found[rel] = sha256(file)
    return found


def differing(expected: Dict[str, str], found: Dict[str, str]) -> List[str]:
    lines = [f"changed: {n}" for n in sorted(expected) if n in found and found[n] != expected[n]]
    lines += [f"missing: {n}" for n in sorted(expected) if n not in found]
    lines += [f"extra: {n}" for n in sorted(found) if n not in expected]
    return lines


# ---- what each stage covers ---------------------------------------------------------------------------------------
NOT_SENT = (
    "gpu_artifacts",
    "out",
    ".git",
)  # top-level folders of a tree without .git that the device tool did not send


def tree_files(root: Path) -> List[str]:
    """The tree's files as the device tool sends them: git's tracked and untracked-not-ignored files where there is
    a .git (here), else every file (the GPU machine's copy, which holds only those) less the carried folder, the
    work folder and caches."""
    if (root / ".git").exists():
        return travelling_files(root)
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.parts[0] in NOT_SENT or path.suffix == ".pyc":
            continue
        if not any(part in SKIPPED_PARTS for part in rel.parts):
            found.append(rel.as_posix())
    return found


def coverage(root: Path, names: Optional[Iterable[str]] = None) -> Dict[str, dict]:
    """Each stage's coverage hash over the tree at ``root`` (gpu_stages.coverage): what a pass of it proved. A pass
    counts at a later tree only while this hash is the same (checks/gpu_record.py)."""
    files = tree_files(root)
    hashes: Dict[str, str] = {}

    def sha(path: str) -> str:
        if path not in hashes:
            hashes[path] = sha256(root / path)
        return hashes[path]

    def read(path: str) -> bytes:
        return (root / path).read_bytes()

    wanted = list(names) if names is not None else [s.name for s in gpu_stages.STAGES]
    return {name: gpu_stages.coverage(gpu_stages.stage(name), files, read, sha) for name in wanted}


# ---- ELF facts ---------------------------------------------------------------------------------------------------
def elf_facts(path: Path) -> dict:
    """NEEDED libraries and the newest GLIBC_/GLIBCXX_/CXXABI_ versions a binary asks for (readelf)."""
    if shutil.which("readelf") is None:
        raise Refused("readelf not found (binutils): the binaries' library needs cannot be checked")
    dynamic = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    versions = subprocess.run(["readelf", "-V", str(path)], capture_output=True, text=True, check=True).stdout
    newest: Dict[str, str] = {}
    for family, number in re.findall(r"Name: (GLIBC|GLIBCXX|CXXABI|GCC|GOMP)_([0-9.]+)", versions):
        key = tuple(int(x) for x in number.split("."))
        if family not in newest or key > tuple(int(x) for x in newest[family].split(".")):
            newest[family] = number
    return {"needed": needed, "newest_versions": {k: f"{k}_{v}" for k, v in sorted(newest.items())}}


def cuda_code(path: Path) -> dict:
    """The CUDA architectures a binary holds machine code (sm_XX) and PTX (compute_XX) for; cuobjdump where found."""
    try:
        from . import sass  # finds cuobjdump (PATH, the PyPI wheel nvidia-cuda-cuobjdump, next to nvcc)

        tool = sass.find_cuobjdump()
    except Exception as exc:  # cuobjdump absent: the CMake list is recorded instead (tools/gpu_artifacts.sh)
        return {"listed_by": f"not listed ({type(exc).__name__}: cuobjdump unavailable)"}
    elf = subprocess.run([tool, "--list-elf", str(path)], capture_output=True, text=True).stdout
    ptx = subprocess.run([tool, "--list-ptx", str(path)], capture_output=True, text=True).stdout
    return {
        "listed_by": "cuobjdump",
        "sass": sorted(set(re.findall(r"\.(sm_\d+a?)\.cubin", elf)), key=lambda s: int(re.sub(r"\D", "", s))),
        "ptx": sorted(set(re.findall(r"\.(sm_\d+a?)\.ptx", ptx)), key=lambda s: int(re.sub(r"\D", "", s))),
    }


def binary_facts(artifacts: Path, name: str) -> Tuple[dict, List[str]]:
    """ELF and CUDA facts of a carried binary (a wheel's native modules are read from inside it)."""
    path = artifacts / name
    problems: List[str] = []
    facts: Dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if name.endswith(".whl"):
            with zipfile.ZipFile(path) as wheel:
                members = [m for m in wheel.namelist() if m.endswith(".so")]
                targets = [(m, Path(wheel.extract(m, tmp))) for m in members]
        else:
            targets = [(name, path)]
        for member, file in targets:
            elf = elf_facts(file)
            elf["cuda"] = cuda_code(file)
            facts[member] = elf
            outside = [lib for lib in elf["needed"] if lib not in ALLOWED_NEEDED]
            if outside and "/_C_emulated" not in member:
                problems.append(
                    f"{name}:{member} needs {', '.join(outside)}, which the GPU image may lack (allowed: the system "
                    "libraries; GoogleTest and the CUDA runtime must be linked statically)"
                )
    return facts, problems


# ---- the manifest ------------------------------------------------------------------------------------------------
def write_manifest(artifacts: Path, root: Path, info: dict, limit_mib: float, allow_dirty: bool) -> dict:
    names = travelling_files(root)
    commit = _git(root, "rev-parse", "HEAD").strip()
    dirty = [line[3:] for line in _git(root, "status", "--porcelain", "--", *BUILD_INPUTS).splitlines()]
    if dirty and not allow_dirty:
        raise Refused(
            f"the build inputs differ from commit {commit[:12]} ({', '.join(dirty[:5])}"
            + (", ..." if len(dirty) > 5 else "")
            + "): commit them first, so that the record names the code it ran (or --allow-dirty for a trial)"
        )
    files = sorted(p for p in artifacts.rglob("*") if p.is_file() and p.name != MANIFEST)
    binaries: Dict[str, dict] = {}
    problems: List[str] = []
    for path in files:
        rel = path.relative_to(artifacts).as_posix()
        if rel.startswith("wheels/zsseg_rt-") or rel.startswith("cpp/"):
            binaries[rel], found = binary_facts(artifacts, rel)
            problems += found
    if problems:
        raise Refused("; ".join(problems))
    tree, load, _ = size_report(root, [artifacts], limit_mib)
    manifest = {
        "schema": SCHEMA,
        "commit": commit,
        "dirty": dirty,
        "built": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        **info,
        "files": {p.relative_to(artifacts).as_posix(): {"sha256": sha256(p), "bytes": p.stat().st_size} for p in files},
        "binaries": binaries,
        "bytes": load,
        "tree_bytes": tree,
        "limit_mib": limit_mib,
        "build_inputs": input_hashes(root, names, BUILD_INPUTS),
        "test_inputs": input_hashes(root, names, TEST_INPUTS),
        "coverage": coverage(root),
    }
    (artifacts / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def manifest_summary(manifest: dict, manifest_sha: str) -> dict:
    """What a run record keeps of the artefacts it ran from."""
    keys = ("commit", "dirty", "built", "nvcc", "wheel_archs", "test_archs", "python_tag", "cuda", "prebuilt")
    summary = {"manifest_sha256": manifest_sha, **{k: manifest.get(k) for k in keys}, "bytes": manifest.get("bytes")}
    summary["coverage"] = {name: entry.get("sha256") for name, entry in (manifest.get("coverage") or {}).items()}
    return summary


# ---- on the GPU machine ------------------------------------------------------------------------------------------
def _python_tag() -> str:
    return f"cp{sys.version_info[0]}{sys.version_info[1]}"


def verify(artifacts: Path, root: Path) -> Tuple[List[str], dict]:
    """(missing prerequisites, facts for the record): what a stage must not run without, one line each."""
    path = artifacts / MANIFEST
    if not path.is_file():
        return [
            f"artefacts: no {MANIFEST} in {artifacts}: build them on the development machine (bash "
            'tools/gpu_artifacts.sh) and carry the folder (device tool: carry ["gpu_artifacts"])'
        ], {}
    raw = path.read_bytes()
    manifest = json.loads(raw)
    facts = {"artifacts": manifest_summary(manifest, hashlib.sha256(raw).hexdigest())}
    missing: List[str] = []
    if manifest.get("schema") != SCHEMA:
        missing.append(f"artefacts: {path} is not a {SCHEMA} manifest: rebuild them with tools/gpu_artifacts.sh")
        return missing, facts
    for name, entry in manifest["files"].items():
        file = artifacts / name
        if not file.is_file():
            missing.append(f"artefacts: {name} is missing from {artifacts} (a carry cut short?): carry it again")
        elif file.stat().st_size != entry["bytes"] or sha256(file) != entry["sha256"]:
            missing.append(f"artefacts: {name} differs from its manifest entry (changed after the build?): rebuild")
    tag = manifest.get("python_tag")
    if tag and tag != _python_tag():
        missing.append(
            f"artefacts: the wheel is for {tag}, this Python ({sys.executable}) is {_python_tag()}: build them for "
            f"it (tools/gpu_artifacts.sh --python python{sys.version_info[0]}.{sys.version_info[1]})"
        )
    stale = differing(manifest["build_inputs"], walk_inputs(root, BUILD_INPUTS))
    if stale:
        missing.append(
            f"artefacts: built from commit {manifest['commit'][:12]}, but this checkout's build inputs differ ("
            + "; ".join(stale[:4])
            + (f"; {len(stale) - 4} more" if len(stale) > 4 else "")
            + "): rebuild them (bash tools/gpu_artifacts.sh) so that the run tests this code"
        )
    tests = differing(manifest["test_inputs"], walk_inputs(root, TEST_INPUTS))
    facts["tree"] = {"build_inputs_match": not stale, "tests_match": not tests, "tests_differing": tests[:20]}
    missing += unresolved_libraries(artifacts, manifest)
    return missing, facts


def unresolved_libraries(artifacts: Path, manifest: dict) -> List[str]:
    """Each library (or symbol version) the dynamic loader cannot resolve here for a carried binary (ldd)."""
    if shutil.which("ldd") is None:
        return []
    lines: List[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in manifest.get("binaries", {}):
            path = artifacts / name
            if not path.is_file():
                continue
            if name.endswith(".whl"):
                with zipfile.ZipFile(path) as wheel:
                    targets = [Path(wheel.extract(m, tmp)) for m in wheel.namelist() if m.endswith(".so")]
            else:
                targets = [path]
            for target in targets:
                out = subprocess.run(["ldd", str(target)], capture_output=True, text=True)
                for line in (out.stdout + out.stderr).splitlines():
                    if "not found" in line:
                        lines.append(f"artefacts: {name}: the loader here cannot resolve {line.strip()}")
    return lines


# ---- the probe's clip ----------------------------------------------------------------------------------------------
# The GPU image has no video to run `zsseg camera --live` on (the probe's P9): the artefacts carry the first frames of
# OpenCV's sample (vtest.avi: people walking, 768x576, 10 fps; about 3.5 MiB for 48 frames as MJPG), or a synthetic
# clip where the sample is not installed
CLIP = "clips/live.avi"
CLIP_SOURCES = ("/usr/share/doc/opencv-doc/examples/data/vtest.avi", "/usr/share/opencv4/samples/data/vtest.avi")


def write_clip(out: Path, source: Optional[str] = None, frames: int = 0) -> dict:
    """``out/live.avi`` (MJPG) and ``out/live.json`` (what it is): ``frames`` frames of ``source`` (default: the first
    of CLIP_SOURCES there is), else a synthetic clip (checks/_gpu_probe_video.py)."""
    from ._gpu_probe_video import CLIP_FRAMES, write_synthetic_clip

    frames = frames or CLIP_FRAMES
    try:
        import cv2
    except ImportError as exc:
        raise Refused(f"OpenCV (cv2) writes the probe's clip and is not importable here ({exc}): use the venv") from exc
    out.mkdir(parents=True, exist_ok=True)
    target = out / Path(CLIP).name
    found = source or next((c for c in CLIP_SOURCES if Path(c).is_file()), None)
    if found is None:
        write_synthetic_clip(target, frames)
        info = {"source": "synthetic (checks/_gpu_probe_video.py: a panning texture, two moving squares)"}
    else:
        capture = cv2.VideoCapture(str(found))
        fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
        writer, written = None, 0
        while written < frames:
            ok, frame = capture.read()
            if not ok:
                break
            if writer is None:
                size = (frame.shape[1], frame.shape[0])
                writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
            writer.write(frame)
            written += 1
        capture.release()
        if writer is not None:
            writer.release()
        if written == 0:
            raise Refused(f"{found}: no frame could be read (a video OpenCV decodes is needed)")
        info = {"source": f"the first {written} frames of {Path(found).name}"}
    check = cv2.VideoCapture(str(target))
    info.update(frames=int(check.get(cv2.CAP_PROP_FRAME_COUNT)), width=int(check.get(cv2.CAP_PROP_FRAME_WIDTH)),
                height=int(check.get(cv2.CAP_PROP_FRAME_HEIGHT)), bytes=target.stat().st_size)  # fmt: skip
    check.release()
    if info["frames"] < 1:
        raise Refused(f"{target}: OpenCV reads no frame back from the clip it wrote")
    (out / "live.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


# ---- the command line --------------------------------------------------------------------------------------------
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    size = sub.add_parser("size", help="refuse early when what is there already exceeds the limit")
    size.add_argument("--root", required=True)
    size.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    size.add_argument("paths", nargs="*")
    man = sub.add_parser("manifest", help="write DIR/manifest.json (refuses: too big, foreign libraries, dirty)")
    man.add_argument("--artifacts", required=True)
    man.add_argument("--root", required=True)
    man.add_argument("--info", required=True, help="a JSON file of build facts (nvcc, archs, python tag, seconds)")
    man.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    man.add_argument("--allow-dirty", action="store_true")
    ver = sub.add_parser("verify", help="on the GPU machine: the artefacts as built, for this checkout and Python")
    ver.add_argument("--artifacts", required=True)
    ver.add_argument("--root", required=True)
    ver.add_argument("--json", help="write the facts for the run record here")
    clip = sub.add_parser("clip", help="the probe's clip for --live (OpenCV's vtest.avi, else synthetic)")
    clip.add_argument("--out", required=True, help="the folder (the artefacts' clips/)")
    clip.add_argument("--source", help="a video to take the first frames of (default: OpenCV's vtest.avi if there)")
    clip.add_argument("--frames", type=int, default=0, help="how many frames (default 48)")
    cov = sub.add_parser("coverage", help="each stage's coverage hash over the tree at --root (JSON)")
    cov.add_argument("--root", required=True)
    cov.add_argument("--json", help="write it here (else print it)")
    args = parser.parse_args(argv)
    root = Path(getattr(args, "root", ".")).resolve()
    try:
        if args.command == "clip":
            info = write_clip(Path(args.out), args.source, args.frames)
            print(f"clip: {Path(args.out) / Path(CLIP).name}: {info['source']}, {info['frames']} frames "
                  f"{info['width']}x{info['height']}, {info['bytes'] / MIB:.2f} MiB")  # fmt: skip
        elif args.command == "coverage":
            text = json.dumps(coverage(root), indent=1, sort_keys=True)
            if args.json:
                Path(args.json).write_text(text + "\n")
            else:
                print(text)
        elif args.command == "size":
            for line in size_report(root, [Path(p) for p in args.paths], args.limit_mib)[2]:
                print(line)
        elif args.command == "manifest":
            info = json.loads(Path(args.info).read_text())
            manifest = write_manifest(Path(args.artifacts), root, info, args.limit_mib, args.allow_dirty)
            for name, entry in manifest["files"].items():
                print(f"{entry['bytes'] / MIB:8.2f} MiB  {name}")
            for line in size_report(root, [Path(args.artifacts)], args.limit_mib)[2]:
                print(line)
        else:
            missing, facts = verify(Path(args.artifacts), root)
            if args.json:
                Path(args.json).write_text(json.dumps(facts, indent=1))
            for line in missing:
                print(f"MISSING {line}")
            tree = facts.get("tree", {})
            if tree and not tree["tests_match"]:
                print(f"note: the tests differ from the artefacts' commit: {'; '.join(tree['tests_differing'][:5])}")
            if not missing:
                summary = facts["artifacts"]
                print(f"artefacts: as built at {summary['commit'][:12]} ({summary['manifest_sha256'][:12]}), verified")
            return 1 if missing else 0
    except Refused as exc:
        print(f"gpu_artifacts: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
