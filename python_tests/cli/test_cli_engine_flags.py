"""The Engine's flags come from one table (``zsseg_rt.options.ENGINE_OPTIONS``, issue 73): every command that opens an
Engine shows the same flags with the same help (``zsseg_rt.console.arguments.ENGINE_COMMANDS``; eval and profile take the rows
``PARTIAL_ENGINE_COMMANDS`` names, for the reason written there), every one of them reaches the Engine the command
opens (or every Ray worker's), a misspelt flag is answered with the closest one, and an option added as one row is on
every command, in the Engine's check of its keywords, in a Ray worker's check and in the error advice.

``test_every_engine_flag_reaches_every_commands_engine`` is the test that ``python_tests/cli/test_cli_options.py``'s
COVERAGE names for every command's Engine flag (it passes them through the table: ``ENGINE_FLAG_TEST``)."""

import argparse
import importlib.util
import json
import signal

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from support import record_made  # noqa: E402

from zsseg_rt import cli  # noqa: E402
from zsseg_rt.console.arguments import ENGINE_COMMANDS, PARTIAL_ENGINE_COMMANDS, engine_kwargs, engine_rows  # noqa: E402
from zsseg_rt.console.errors import command_line_advice  # noqa: E402
from zsseg_rt.options import ENGINE_OPTIONS, EngineOption  # noqa: E402

# Each flagged row's example (``row.example``: its flag's words and the Engine's value, a value a real run on the tiny
# bundle on this CPU accepts); on a command whose own default it is (``cli_defaults``: --mode fast on camera), the
# row's default instead, so that every flag is given a value that is no default of the command that runs.


def _value(row, command):
    """(the flag's words, the Engine's value) this test gives ``row``'s flag on ``command``."""
    assert row.example is not None, f"the new row {row.name!r} needs an example (its row's example=)"
    words, value = row.example
    if value == dict(row.cli_defaults).get(command, row.default):
        words, value = (row.flag_default(),), row.default
    return list(words), value


def _subcommands(parser=None):
    parser = parser or cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def _engine_flags(subparser):
    """{flag: help} of the Engine's flags a command's parser holds (its flags that are some row's)."""
    flags = {row.flag for row in ENGINE_OPTIONS.flagged()}
    return {
        a.option_strings[0]: a.help for a in subparser._actions if a.option_strings and a.option_strings[0] in flags
    }


def _argv(command, rows, digest):
    words = []
    for row in rows:  # (the digest: the tiny bundle's, which the run checks)
        words += [row.flag, digest] if row.name == "expected_digest" else [row.flag, *_value(row, command)[0]]
    return words


def _head(command, bundle):
    """A command line of ``command`` that parses (its positional arguments and required flags)."""
    head = {"segment": ["segment", "p.png"], "camera": ["camera", "0"], "batch": ["batch", "in", "out"]}
    return head.get(command, [command]) + ["--bundle", str(bundle), "--classes", "a"]


def _expected(command, rows, digest):
    wanted = {row.name: _value(row, command)[1] for row in rows}
    return dict(wanted, expected_digest=digest)


def test_every_command_that_opens_an_engine_shows_the_same_engine_flags():
    """segment, camera, batch and serve hold every flagged row (batch and serve, whose Ray workers run one path, all
    but those a worker does not take, each row saying why), each with its row's help, so the same text on every
    command; eval and profile the rows PARTIAL_ENGINE_COMMANDS names, with the same help, and a reason for the
    others. Control: a flag's help changed on one command is caught."""
    commands = _subcommands()
    seen = {}
    for command in ENGINE_COMMANDS + tuple(PARTIAL_ENGINE_COMMANDS):
        rows = engine_rows(command)
        flags = {row.flag: row.flag_help() for row in rows}
        assert {flag: text for flag, text in _engine_flags(commands[command]).items() if flag in flags} == flags
        for flag, text in flags.items():
            assert seen.setdefault(flag, text) == text, (command, flag)
    every = {row.flag for row in ENGINE_OPTIONS.flagged()}
    for command in ENGINE_COMMANDS:
        missing = every - set(_engine_flags(commands[command]))
        assert all(not ENGINE_OPTIONS[r.name].workers for r in ENGINE_OPTIONS.flagged() if r.flag in missing), missing
    assert all(reason for _, reason in PARTIAL_ENGINE_COMMANDS.values())
    kept_from_workers = {"prepare", "track_max_missed"}  # (tracks: no worker sees a stream of frames)
    assert {row.name for row in ENGINE_OPTIONS.flagged() if not row.workers} == kept_from_workers
    (precision,) = [a for a in commands["serve"]._actions if "--precision" in a.option_strings]
    precision.help += " (serve's own)"
    assert _engine_flags(commands["serve"])["--precision"] != seen["--precision"]  # the control


def test_a_misspelt_flag_is_answered_with_the_closest_one(capsys, tmp_path):
    """An unknown flag: argparse's usage error (exit 2) naming it and the closest flag of the command run."""
    with pytest.raises(SystemExit) as stop:
        cli.main(["segment", str(tmp_path / "a.jpg"), "--bundle", "b", "--classes", "c", "--precison", "fp16"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2
    assert (
        err == "zsseg segment: error: unrecognized arguments: --precison fp16 (--precison: did you mean '--precision'?)"
    )
    with pytest.raises(SystemExit):
        cli.main(["camera", "0", "--bundle", "b", "--bundle-digst=sha256:0"])
    assert "--bundle-digst: did you mean '--bundle-digest'?" in capsys.readouterr().err


def test_every_engine_flag_reaches_every_commands_engine(tiny_bundle, tmp_path, capsys, monkeypatch):
    """Every Engine flag of segment, camera, batch and serve, each given a value that is no default, reaches the
    Engine the command opens (segment, camera: the Engine recorded as it runs) or every Ray worker's (batch: the
    checked job's worker options; serve: the deployment's options, Ray's start and the deployment behind
    recorders). The flags and values come from the table (each row's example)."""
    from zsseg_rt.bundle import bundle_digest

    digest = bundle_digest(tiny_bundle)
    parser = cli.build_parser()
    for command in ENGINE_COMMANDS:  # the parse: each flag into its Engine keyword
        rows = engine_rows(command)
        args = parser.parse_args(_head(command, tiny_bundle) + _argv(command, rows, digest))
        assert engine_kwargs(args, command) == _expected(command, rows, digest), command
    import zsseg_rt.runtime as runtime

    made = record_made(monkeypatch, runtime, "Engine", keep=lambda engine, kwargs: kwargs)
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.full((40, 40, 3), 90, np.uint8))
    rows = engine_rows("segment")
    argv = ["segment", photo, "--bundle", tiny_bundle, "--classes", "a,b", "-o", tmp_path / "seg.png", "--track"]
    assert cli.main([str(a) for a in argv + _argv("segment", rows, digest)]) == 0
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "f0.png"), np.full((40, 40, 3), 90, np.uint8))
    rows = engine_rows("camera")
    argv = ["camera", folder, "--bundle", tiny_bundle, "--classes", "a,b", "-o", tmp_path / "cam", "--no-progress"]
    argv.append("--track")  # (--track-max-missed applies only with it)
    assert cli.main([str(a) for a in argv + _argv("camera", rows, digest)]) == 0
    for kwargs, command in zip(made, ("segment", "camera")):
        expected = _expected(command, engine_rows(command), digest)
        assert {name: kwargs[name] for name in expected} == expected, command
    _batch_and_serve(tiny_bundle, tmp_path, monkeypatch, digest)


def _batch_and_serve(tiny_bundle, tmp_path, monkeypatch, digest):
    """batch and serve: what every worker's Engine gets, Ray's start and the run behind recorders."""
    # installed? (not imported: importorskip would import Ray before import_ray sets its loopback mode, and the
    # scale tests' cluster, on this worker later, would come up off 127.0.0.1)
    if importlib.util.find_spec("ray") is None:
        pytest.skip("zsseg batch/serve need the scale extra (ray[data,serve])")
    from zsseg_rt.scale import import_ray

    ray = import_ray(loopback=True)
    import zsseg_rt.scale as scale
    import zsseg_rt.scale.batch as batch
    import zsseg_rt.scale.serve as serving
    from zsseg_rt.console.errors import Terminated

    seen = {}
    monkeypatch.setattr(scale, "init_ray", lambda address=None, num_cpus=None: seen.update(ray=address))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 64.0, "GPU": 0.0})

    def summarize(job, progress=True):
        seen.update(job=job)
        return {"ok": 0, "skipped": 0, "error": 0, "manifest": "m", "worker_peak_rss_bytes": None, "errors": []}

    def run_server(bundle, classes, **kwargs):
        seen.update(serve=kwargs)
        raise Terminated(signal.SIGTERM)

    monkeypatch.setattr(batch, "summarize_batch", summarize)
    monkeypatch.setattr(serving, "run_server", run_server)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((20, 30, 3), 70, np.uint8))
    argv = ["batch", folder, tmp_path / "out", "--bundle", tiny_bundle, "--classes", "a,b", "--no-progress"]
    assert cli.main([str(a) for a in argv + _argv("batch", engine_rows("batch"), digest)]) == 0
    expected = _expected("batch", engine_rows("batch"), digest)
    assert {name: seen["job"].worker_options[name] for name in expected} == expected
    import socket

    with socket.socket() as probe:  # a free port (serve checks it can listen there before Ray starts)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["serve", "--bundle", tiny_bundle, "--classes", "a,b", "--port", port]
    code = cli.main([str(a) for a in argv + _argv("serve", engine_rows("serve"), digest)])
    expected = _expected("serve", engine_rows("serve"), digest)
    assert code == 143 and {name: seen["serve"][name] for name in expected} == expected


def test_a_toy_option_is_one_row(tiny_bundle, capsys, monkeypatch):
    """An option added as one row (a toy: ``toy_level``, flag ``--toy-level``) and nothing else is on every command
    that opens an Engine (its --help, with the row's help; parsed into the Engine's keyword), a keyword of the
    Engine (its value in the pipeline's options and in the backend's request, by name: a backend that reads it is
    the row and that reader, 2 files; misspelt: the closest name), of a Ray worker's check (misspelt: the closest
    name) and in the error advice (its flag). Control: without the row none of them knows it."""
    from zsseg_rt.runtime import Engine
    from zsseg_rt.runtime.backends.onnxruntime import runner as ort_runner
    from zsseg_rt.scale.engine import checked_engine_options

    toy = EngineOption("toy_level", 0, "int", "how much toy there is (a test's row)", flag="--toy-level", minimum=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'toy_level'"):
        checked_engine_options({"toy_level": 2}, "build_app()")  # the control
    assert "no command-line flag sets toy_level" in command_line_advice("raise it with Engine(..., toy_level=5)")
    with ENGINE_OPTIONS.adding(toy):
        commands = _subcommands()
        for command in ENGINE_COMMANDS:
            assert _engine_flags(commands[command]).get("--toy-level") == toy.help, command
            with pytest.raises(SystemExit):
                cli.main([command, "--help"])
            assert "--toy-level" in capsys.readouterr().out
            args = cli.build_parser().parse_args(_head(command, tiny_bundle) + ["--toy-level", "3"])
            assert engine_kwargs(args, command)["toy_level"] == 3
        build, read = ort_runner.open_onnxruntime.from_request, []  # the backend's reader of the row: by name
        monkeypatch.setattr(
            ort_runner.open_onnxruntime,
            "from_request",
            lambda request: read.append(request.values.toy_level) or build(request),
        )
        engine = Engine(tiny_bundle, classes=["a", "b"], backend="onnxruntime", toy_level=3)
        assert engine.options.toy_level == 3 and engine.pipeline.options.toy_level == 3 and read == [3]
        with pytest.raises(TypeError, match=r"unexpected keyword argument 'toy_levl': did you mean 'toy_level'\?"):
            Engine(tiny_bundle, classes=["a", "b"], toy_levl=3)
        assert checked_engine_options({"toy_level": 2}, "build_app()") == {"toy_level": 2}
        with pytest.raises(TypeError, match=r"build_app\(\) got an unexpected keyword argument 'toy_lvel': did you"):
            checked_engine_options({"toy_lvel": 2}, "build_app()")
        assert command_line_advice("raise it with Engine(..., toy_level=5)") == "raise it with --toy-level 5"
    assert "toy_level" not in ENGINE_OPTIONS and "--toy-level" not in _engine_flags(_subcommands()["segment"])


def test_the_error_advice_names_each_rows_flag():
    """``Engine(..., name=value)`` in a library message becomes the row's flag on the command line (a switch bare; a
    value whose flag text differs as that text), and a Python-only option says that no flag sets it."""
    assert command_line_advice("use Engine(..., max_pixels=N)") == "use --max-pixels N"
    assert command_line_advice("use Engine(..., allow_partial_images=True)") == "use --allow-partial-images"
    assert command_line_advice("use Engine(..., prepare=None)") == "use --prepare none"
    assert command_line_advice("use Engine(..., inference='windows')") == "use --inference windows"
    assert command_line_advice("use Engine(..., max_windows=N)") == (
        "use the Python argument Engine(..., max_windows=N) (no command-line flag sets max_windows)"
    )
    for row in ENGINE_OPTIONS.flagged():
        assert command_line_advice(f"Engine(..., {row.name}=x)").startswith(row.flag)


def test_the_live_preset_is_one_object_in_python_and_the_cli(tiny_bundle):
    """``--live`` is ``zsseg_rt.options.LIVE``: the Engine the camera opens takes it, the VideoSegmenter takes it from
    that Engine (one line in Python), and says what it trades; a preset the Engine was not opened with is refused."""
    from zsseg_rt.cli.camera_video import LIVE_HELP, engine_preset
    from zsseg_rt.options import LIVE
    from zsseg_rt.runtime import Engine
    from zsseg_rt.stream import VideoSegmenter

    args = _subcommands()["camera"].parse_args(["0", "--bundle", tiny_bundle, "--live"])
    assert engine_preset(args) is LIVE and LIVE.summary in LIVE_HELP
    video = VideoSegmenter(Engine(tiny_bundle, classes="a,b", backend="onnxruntime", preset=LIVE))
    size = video.engine.meta.crop_size
    assert (video.options.keyframe_every, video.options.flow_preset, video.options.flow_stride) == (4, "fast", 4)
    trades = video.trades()
    assert trades["window"] == [size, size] and trades["keyframe_every"] == 4 and trades["flow_preset"] == "fast"
    assert f"one window of {size}x{size}" in trades["line"] and "a keyframe every 4 frames" in trades["line"]
    assert json.loads(json.dumps(trades)) == trades
    plain = Engine(tiny_bundle, classes="a,b", backend="onnxruntime")
    with pytest.raises(ValueError, match=r"the Engine was opened without it .*Engine\(bundle, preset='live'\)"):
        VideoSegmenter(plain, preset=LIVE)
    assert VideoSegmenter(plain, keyframe_every=2).trades() is None


def test_the_docs_table_is_the_tables():
    """docs/usage.md's table of the Engine's options is ``ENGINE_OPTIONS.markdown_table()`` (written again after a
    row changes: docs/development.md, "Engine options")."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text(encoding="utf-8")
    shown = text.split("<!-- engine-options:begin -->\n", 1)[1].split("\n<!-- engine-options:end -->", 1)[0]
    assert shown == ENGINE_OPTIONS.markdown_table()
