"""tools/setup_jetson.sh --check reads the device: L4T/JetPack, GPU (and its CUDA arch), CUDA, TensorRT, Python.
Run against a fake /etc and /proc (ZSSEG_SYSROOT) and a fake nvcc (CUDA_HOME): there is no Jetson here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "setup_jetson.sh"


def _check(
    tmp_path: Path, release: str | None, model: str = "NVIDIA Jetson AGX Orin Developer Kit", wheel: Path | None = None
):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "proc" / "device-tree").mkdir(parents=True)
    if release is not None:
        (root / "etc" / "nv_tegra_release").write_text(release)
    (root / "proc" / "device-tree" / "model").write_bytes(model.encode() + b"\0")
    cuda = tmp_path / "cuda" / "bin"
    cuda.mkdir(parents=True)
    (cuda / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.6, V12.6.68'\n")
    (cuda / "nvcc").chmod(0o755)
    env = dict(os.environ, ZSSEG_SYSROOT=str(root), CUDA_HOME=str(cuda.parent), PYTHON=sys.executable)
    env.pop("CMAKE_CUDA_ARCHITECTURES", None)
    env.pop("ZSSEG_JETSON_WHEEL", None)
    if wheel is not None:
        env["ZSSEG_JETSON_WHEEL"] = str(wheel)
    return subprocess.run(["bash", str(SCRIPT), "--check"], capture_output=True, text=True, env=env, timeout=120)


def test_reports_jetpack6_orin(tmp_path):
    out = _check(tmp_path, "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64\n")
    assert out.returncode == 0, out.stderr
    assert "L4T R36.3.0 | JetPack 6.0 or earlier, TensorRT 8.6" in out.stdout
    assert "GPU: NVIDIA Jetson AGX Orin Developer Kit (building for sm_87)" in out.stdout
    assert "CUDA: 12.6" in out.stdout
    assert f"Python: {sys.executable} {sys.version_info[0]}.{sys.version_info[1]}" in out.stdout
    assert "TensorRT:" in out.stdout


def test_jetpack61(tmp_path):
    out = _check(tmp_path, "# R36 (release), REVISION: 4.3, GCID: 1\n", model="NVIDIA Jetson Orin Nano Developer Kit")
    assert out.returncode == 0, out.stderr
    assert "L4T R36.4.3 | JetPack 6.1 or newer" in out.stdout and "(building for sm_87)" in out.stdout


def test_xavier_builds_for_sm72(tmp_path):
    out = _check(tmp_path, "# R35 (release), REVISION: 4.1, GCID: 1\n", model="NVIDIA Jetson AGX Xavier")
    assert out.returncode == 0, out.stderr
    assert "JetPack 5.1.x" in out.stdout and "(building for sm_72)" in out.stdout


def test_refuses_a_machine_that_is_not_a_jetson(tmp_path):
    out = _check(tmp_path, None)
    assert out.returncode != 0
    assert "this is not a Jetson" in out.stderr and "setup_env.sh" in out.stderr


def test_refuses_a_wheel_that_is_not_there(tmp_path):
    """ZSSEG_JETSON_WHEEL (a wheel built elsewhere, installed instead of building on the device) is checked with the
    rest of the device, before any venv is made: a missing file or another file is refused in one line."""
    release = "# R36 (release), REVISION: 4.3, GCID: 1\n"
    missing = tmp_path / "zsseg_rt-0.1.0-cp310-cp310-linux_aarch64.whl"
    out = _check(tmp_path, release, wheel=missing)
    assert out.returncode == 1, out.stdout
    assert f"ZSSEG_JETSON_WHEEL={missing}: no such file" in out.stderr
    other = tmp_path / "numpy-1.26.4-cp310-cp310-linux_aarch64.whl"
    other.write_bytes(b"PK")
    out = _check(tmp_path / "again", release, wheel=other)
    assert out.returncode == 1 and f"ZSSEG_JETSON_WHEEL={other} is not a zsseg_rt wheel" in out.stderr, out.stderr
    missing.write_bytes(b"PK")  # control: a zsseg_rt wheel that is there passes the check
    out = _check(tmp_path / "control", release, wheel=missing)
    assert out.returncode == 0, out.stderr
    assert f"installing the wheel {missing} instead of building here" in out.stdout
