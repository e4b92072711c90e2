"""A successful Ray run is quiet (issue 30, item 6): Ray's own log lines (a token notice, "Started a local Ray
instance", Ray Data's execution plan and line-by-line progress, an error-looking C++ line that Ray Data causes,
ray-project/ray#57733) stay off the terminal unless ZSSEG_RAY_LOGS=1 or `--debug` asks for them."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

import zsseg_rt.scale as scale


class _FakeRay:
    def __init__(self):
        self.calls = []

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.calls.append(kwargs)

    def nodes(self):
        return [{"NodeManagerAddress": "127.0.0.1"}]


@pytest.mark.parametrize("wanted", ["", "1"])
def test_init_ray_quiet_unless_asked(monkeypatch, wanted):
    fake = _FakeRay()
    monkeypatch.setattr(scale, "import_ray", lambda loopback=False: fake)
    # no watchdog for a cluster that never starts: it looked for one in /proc twice a second until the session's end
    monkeypatch.setattr(scale, "_start_cluster_reaper", lambda: None)
    for name in ("RAY_BACKEND_LOG_LEVEL", "RAY_DATA_LOGGING_CONFIG", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(scale.RAY_LOGS_ENV, wanted)
    scale.init_ray(num_cpus=1)
    (call,) = fake.calls
    assert call["log_to_driver"] is False
    if wanted:
        assert call["logging_level"] == logging.INFO and "RAY_BACKEND_LOG_LEVEL" not in os.environ
        assert "RAY_DATA_LOGGING_CONFIG" not in os.environ
    else:
        assert call["logging_level"] == logging.ERROR and os.environ["RAY_BACKEND_LOG_LEVEL"] == "fatal"
        assert os.path.isfile(os.environ["RAY_DATA_LOGGING_CONFIG"])


def test_settings_the_user_made_are_kept(monkeypatch):
    fake = _FakeRay()
    monkeypatch.setattr(scale, "import_ray", lambda loopback=False: fake)
    monkeypatch.delenv(scale.RAY_LOGS_ENV, raising=False)
    monkeypatch.setenv("RAY_BACKEND_LOG_LEVEL", "debug")
    monkeypatch.setenv("RAY_DATA_LOGGING_CONFIG", "/my/config.yaml")
    scale.init_ray(address="auto")
    assert os.environ["RAY_BACKEND_LOG_LEVEL"] == "debug" and os.environ["RAY_DATA_LOGGING_CONFIG"] == "/my/config.yaml"


def test_debug_flag_asks_for_ray_logs(monkeypatch):
    import zsseg_rt.console.errors as cli_errors
    from zsseg_rt import cli

    seen = []
    monkeypatch.setattr(cli_errors, "run_command", lambda func, args: seen.append(scale.ray_logs_wanted()) or 0)
    monkeypatch.setenv(scale.RAY_LOGS_ENV, "0")  # restored after the test
    argv = ["batch", "in", "out", "--bundle", "b", "--classes", "a"]
    assert cli.main(argv) == 0 and cli.main([*argv, "--debug"]) == 0
    assert seen == [False, True]


def test_ray_data_console_shows_warnings_only():
    """The packaged logging file is one Ray Data loads (a wrong class name would break `import ray.data`)."""
    pytest.importorskip("ray", reason="needs the 'scale' extra")
    code = (
        "import logging, ray.data\n"
        "handlers = logging.getLogger('ray.data').handlers\n"
        "print(sorted((type(h).__name__, logging.getLevelName(h.level)) for h in handlers))\n"
    )
    env = dict(
        os.environ, RAY_DATA_LOGGING_CONFIG=os.path.join(os.path.dirname(scale.__file__), "ray_data_logging.yaml")
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[('PlainRayHandler', 'WARNING'), ('SessionFileHandler', 'NOTSET')]"


def test_successful_batch_prints_no_ray_lines(tmp_path, tiny_bundle):
    """`zsseg batch` on two photos with a new local cluster: stdout is the summary, stderr at most the one line
    Ray's C++ logger prints when it reads RAY_BACKEND_LOG_LEVEL (16 lines before, one of them an error)."""
    pytest.importorskip("ray", reason="needs the 'scale' extra")
    import shutil

    from zsseg_rt.assets import sample_images

    images = tmp_path / "images"
    images.mkdir()
    for path in list(sample_images())[:2]:
        shutil.copy(path, images)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "ZSSEG_RAY"))}
    argv = ["batch", str(images), str(tmp_path / "out"), "--bundle", tiny_bundle, "--classes", "cat,dog"]
    # 2 CPUs: one for the actor, one for the read tasks (an actor holding the only CPU stalls the reads on main)
    argv += ["--workers", "1", "--num-cpus", "2", "--backend", "onnxruntime", "--no-progress"]
    out = subprocess.run(
        [sys.executable, "-m", "zsseg_rt.cli", *argv], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "2 segmented" in out.stdout
    noise = [
        line for line in out.stderr.splitlines() if line.strip() and "Set ray log level from environment" not in line
    ]
    assert noise == [], out.stderr
