"""Values from the rows, at both ends (issue 80 item 3): every ``Engine(...)`` option's value is checked by its row of
``zsseg_rt.options.ENGINE_OPTIONS`` before anything is opened, in one line naming the option, what it takes and what
was given, and the command line refuses a flag's value in the same words; a GPU asked for where none is usable is
refused with the reason (never a silent CPU run); a backend reads the Engine's options by name (a new row a backend
reads is the row and its reader, nothing between them); one ``"module:attr"`` resolver; a plugin's precisions are
``--precision``'s choices.

Controls (each test fails on the code before this change, b235fde..dd593f8): ``Engine(b, threads="x")`` said "invalid
literal for int() with base 10: 'x'" after the bundle was read (a missing bundle said so first), ``verify="no"`` ran;
``--mode slow`` said argparse's "invalid choice"; ``device="cuda:9"`` ran ONNX Runtime on the CPU; ``OpenRequest`` had
no ``values`` (the toy row never reached the runner); four resolvers; ``precision_names()`` read the built-in rows
only, so ``--precision q4`` of a plugin row was refused though its help listed it."""

import logging

import pytest

from zsseg_rt.options import ENGINE_OPTIONS, EngineOption
from zsseg_rt.runtime.backends.base import runner_factory

# (keyword, value, the Python refusal after "NAME: "): a value of each kind of check
REFUSED = [
    ("threads", "x", "expected a whole number in [0, 1024], got 'x'"),
    ("threads", -1, "expected a whole number in [0, 1024], got -1"),
    ("threads", True, "expected a whole number in [0, 1024], got True"),
    ("verify", "no", "expected True or False, got 'no'"),
    ("mode", "slow", "expected one of 'exact', 'fast', got 'slow'"),
    ("device", "gpu", "expected one of 'auto', 'cpu', 'cuda', 'cuda:N', got 'gpu'"),
    # a malformed cuda:N, whole (the audit of 7f842ed, N13: re.match took these, and ONNX Runtime refused them only
    # after the bundle was read)
    ("device", "cuda:1x", "expected one of 'auto', 'cpu', 'cuda', 'cuda:N', got 'cuda:1x'"),
    ("device", "cuda:0,1", "expected one of 'auto', 'cpu', 'cuda', 'cuda:N', got 'cuda:0,1'"),
    ("device", "cuda:2 ", "expected one of 'auto', 'cpu', 'cuda', 'cuda:N', got 'cuda:2 '"),
    ("max_batch", 0, "expected a whole number >= 1 or None, got 0"),
    ("max_windows", "5", "expected a whole number >= 1 or None, got '5'"),
    ("max_pixels", -1, "expected a whole number >= 0 or None, got -1"),
    ("inference", "tiles", "expected one of 'auto', 'whole', 'windows', got 'tiles'"),
    ("whole_fallback", "crop", "expected one of None, 'windows', got 'crop'"),
    ("device_pipeline", "yes", "expected one of 'auto', True, False, got 'yes'"),
    ("prepare", "later", "expected one of 'auto', None, 'now', 'background', got 'later'"),
    ("unknown_below", 2, "expected a number in [0, 1] or None, got 2"),
    ("unknown_below", float("nan"), "expected a number in [0, 1] or None, got nan"),
    ("expected_digest", 5, "expected a string or None, got 5"),
]


@pytest.mark.parametrize("name, value, words", REFUSED, ids=[f"{n}={v!r}" for n, v, _ in REFUSED])
def test_every_value_is_checked_by_its_row_before_anything_is_opened(tmp_path, name, value, words):
    """The bundle does not exist: the value's refusal comes first (the rows are read before anything is opened)."""
    from zsseg_rt import Engine

    with pytest.raises(ValueError) as caught:
        Engine(tmp_path / "no-bundle", **{name: value})
    assert str(caught.value) == f"{name}: {words}"


def test_values_the_rows_take_pass():
    for name, value in [("device", "cuda:1"), ("threads", 4), ("max_pixels", 0), ("cache_dir", __file__)]:
        ENGINE_OPTIONS[name].check_value(value)
    import pathlib

    ENGINE_OPTIONS["cache_dir"].check_value(pathlib.Path("/records"))  # a folder as a path
    ENGINE_OPTIONS["backend"].check_value(object())  # "str or a Backend": an object is its user's to check
    ENGINE_OPTIONS["unknown_below"].check_value(1)  # an int where a number is asked for
    # both ends of every range are in it (the audit of 7f842ed, N12: `low <` instead of `low <=` was killed only by
    # crashes of tests that happened to pass 0), and just outside each is refused
    ranged = [row for row in ENGINE_OPTIONS if row.bounds is not None or row.minimum is not None]
    assert {"object_min_area", "unknown_below", "threads", "max_pixels"} <= {row.name for row in ranged}
    for row in ranged:
        low, high = row.bounds if row.bounds is not None else (row.minimum, getattr(row, "maximum", None))
        for value in (low, high) if high is not None else (low,):
            row.check_value(value)
        whole = isinstance(low, int) and row.type.startswith("int")
        with pytest.raises(ValueError):
            row.check_value(low - (1 if whole else 1e-9))
        if row.flag:  # the command line takes the lower end too
            from zsseg_rt import cli

            argv = [*SEGMENT, row.flag, f"{low:g}"]
            assert getattr(cli.build_parser().parse_args(argv), row.name) == low, row.name


def test_a_preset_value_is_checked_too():
    from zsseg_rt.options import Preset

    bad = Preset("bad", engine=(("threads", "many"),), video=(), summary="a test's")
    with pytest.raises(ValueError, match=r"^threads: expected a whole number in \[0, 1024\], got 'many'$"):
        ENGINE_OPTIONS.resolve({}, preset=bad)


SEGMENT = ["segment", "p.png", "--bundle", "b", "--classes", "a"]


def _parse_error(capsys, argv):
    from zsseg_rt import cli

    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "name, text",
    [
        ("mode", "slow"),
        ("inference", "tiles"),
        ("device", "gpu"),
        ("device", "cuda:0,1"),
        ("device", "cuda:1x"),
        ("postprocess_kernel", "fastest"),
        ("backend", "x"),
    ],
)
def test_the_command_line_refuses_a_value_in_the_pythons_words(capsys, name, text):
    """``argument --FLAG: <the words of Engine(NAME=...)'s refusal>``, not argparse's "invalid choice"."""
    row = ENGINE_OPTIONS[name]
    line = _parse_error(capsys, [*SEGMENT, row.flag, text])
    with pytest.raises(ValueError) as python:
        row.check_value(text)
    assert line.endswith(f"error: argument {row.flag}: " + str(python.value).split(": ", 1)[1]), line


def test_a_number_flag_says_what_it_takes(capsys):
    assert _parse_error(capsys, [*SEGMENT, "--max-pixels", "-1"]).endswith(
        "argument --max-pixels: expected a whole number >= 0, got '-1'"
    )
    assert _parse_error(capsys, [*SEGMENT, "--unknown-below", "2"]).endswith(
        "argument --unknown-below: expected a number in [0, 1], got '2'"
    )
    assert _parse_error(capsys, [*SEGMENT, "--prepare", "later"]).endswith(
        "argument --prepare: expected one of 'auto', 'none', 'now', 'background', got 'later'"
    )
    from zsseg_rt import cli
    from zsseg_rt.console.arguments import engine_kwargs

    args = cli.build_parser().parse_args([*SEGMENT, "--device", "cuda:1", "--prepare", "none"])
    assert engine_kwargs(args, "segment")["device"] == "cuda:1" and engine_kwargs(args, "segment")["prepare"] is None


def test_the_consumers_read_the_rows_values():
    """The tuples the pipelines, the preparation and the video filter check against are the rows' values."""
    from zsseg_rt.bundle import WholeImage
    from zsseg_rt.pipeline.postprocessor import MODES
    from zsseg_rt.runtime.pipelines.windowed import INFERENCE, WHOLE_FALLBACKS
    from zsseg_rt.runtime.upgrade import PREPARE_MODES
    from zsseg_rt.stream.video_filter.video import DEVICE_SETTINGS

    assert MODES == tuple(ENGINE_OPTIONS["mode"].values())
    assert INFERENCE == tuple(ENGINE_OPTIONS["inference"].values()) == ("auto",) + WholeImage.INFERENCE
    assert WHOLE_FALLBACKS == tuple(ENGINE_OPTIONS["whole_fallback"].values())
    assert PREPARE_MODES == tuple(ENGINE_OPTIONS["prepare"].values())
    assert DEVICE_SETTINGS == tuple(ENGINE_OPTIONS["device_pipeline"].values())


def test_a_none_default_names_where_its_value_lives():
    """The help of a row whose default is None shows the holder's value, read from the holder (never a copy)."""
    from zsseg_rt.image_io import DEFAULT_MAX_PIXELS
    from zsseg_rt.pipeline.limits import InputLimits
    from zsseg_rt.runtime.engine import LIMIT_OPTIONS
    from zsseg_rt.runtime.pipelines.two_stage import TwoStagePipeline
    from zsseg_rt.runtime.pipelines.windowed import WindowedPipeline

    assert f"$ZSSEG_MAX_PIXELS or {DEFAULT_MAX_PIXELS}," in ENGINE_OPTIONS["max_pixels"].flag_help()
    assert InputLimits().max_windows == 4096 and "InputLimits``' (4096)" in ENGINE_OPTIONS["max_windows"].docstring()
    wanted = f"({WindowedPipeline.default_max_batch} windows; {TwoStagePipeline.default_max_batch} crops)"
    assert wanted in " ".join(ENGINE_OPTIONS["max_batch"].docstring().split())
    assert LIMIT_OPTIONS == ("max_rescaled_pixels", "max_windows", "max_memory_mb")
    for row in ENGINE_OPTIONS:
        assert not row.default_from or row.default is None, row.name
        for value in row.default_values():
            assert str(value) in " ".join((row.flag_help() + " " + row.docstring()).split()), row.name
    with pytest.raises(ValueError, match="shows its values in help or doc"):
        EngineOption("toy", None, "int or None", "None: the holder's", default_from=("zsseg_rt.image_io:X",))


# ---- a GPU asked for ---------------------------------------------------------------------------------------------
def _no_cuda_provider():
    onnxruntime = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA execution provider")


@pytest.mark.parametrize(
    "options", [{"device": "cuda:9"}, {"device": "cuda"}, {"backend": "onnxruntime", "device": "cuda:1"}]
)
def test_a_gpu_where_none_is_usable_is_refused_with_the_reason(tiny_bundle, options):
    _no_cuda_provider()
    from zsseg_rt import Engine

    with pytest.raises(
        RuntimeError, match=rf"^device={options['device']!r} was requested but this onnxruntime has no "
    ):
        Engine(tiny_bundle, classes=["a", "b"], **options)


def test_auto_may_run_on_the_cpu_and_says_so(tiny_bundle, caplog):
    _no_cuda_provider()
    from zsseg_rt import Engine

    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        engine = Engine(tiny_bundle, classes=["a", "b"], device="auto")
    assert engine.backend.runs_on_gpu is False and engine.backend.runner.providers == ["CPUExecutionProvider"]
    assert any("on this CPU" in record.getMessage() for record in caplog.records)


class _FakeSession:
    def __init__(self, path, options, providers):
        self.asked = providers

    def get_providers(self):
        return ["CPUExecutionProvider"]  # ONNX Runtime's own fallback: its CUDA provider did not start

    def get_inputs(self):
        return []

    def get_outputs(self):
        return []


class _FakeOrt:
    InferenceSession = _FakeSession

    @staticmethod
    def get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_a_cuda_provider_that_does_not_start_is_refused_not_run_on_the_cpu(monkeypatch, tmp_path):
    from zsseg_rt.runtime.backends.onnxruntime import runner

    monkeypatch.setattr(runner, "_ort", lambda: _FakeOrt)

    class Meta:
        io: dict = {}

        @staticmethod
        def file(name):
            return str(tmp_path / name)

    providers = runner.ort_providers("cuda:1")
    assert providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match=r"^device='cuda:1' was requested but ONNX Runtime's CUDA execution "):
        runner.open_ort_session(Meta, "image", "image.onnx", None, providers, device="cuda:1")
    session = runner.open_ort_session(Meta, "image", "image.onnx", None, runner.ort_providers("auto"), device="auto")
    assert session.asked == ["CUDAExecutionProvider", "CPUExecutionProvider"]  # auto: whichever starts


# ---- backends read the options by name -------------------------------------------------------------------------
SEEN = {}


@runner_factory
def open_reader(request):  # the toy backend's factory: it reads the toy row by name
    from zsseg_rt.runtime.backends.onnxruntime import OrtRunner

    SEEN["toy_level"] = request.values.toy_level
    SEEN["threads"] = request.threads
    return OrtRunner(request.meta, request.roles, "cpu", request.threads, "fp32")


def test_an_option_a_backend_reads_is_its_row_and_its_reader(tiny_bundle):
    """The toy option of ``test_cli_engine_flags.test_a_toy_option_is_one_row``, read by a backend: one row (here
    ``ENGINE_OPTIONS.adding``) and the runner that reads it (``request.values.toy_level``); the pipelines, the
    backend selection and the request carry every option by name, so nothing between them changes. Its value is
    checked by its row before anything opens."""
    from zsseg_rt import Engine
    from zsseg_rt.runtime.backends import BackendSpec, table

    row = BackendSpec(
        name="toy-reader",
        factory=f"{__name__}:open_reader",
        devices=("cpu",),
        precisions=("fp32",),
        default_precision="fp32",
        roles=("image", "head", "text"),
        summary="reads the toy option (a test's)",
    )
    toy = EngineOption("toy_level", 0, "int", "how much toy there is (a test's row)", flag="--toy-level", minimum=0)
    with table.BACKENDS.adding(row), ENGINE_OPTIONS.adding(toy):
        engine = Engine(tiny_bundle, classes=["a", "b"], backend="toy-reader", toy_level=3, threads=2)
        assert SEEN == {"toy_level": 3, "threads": 2} and engine.backend.name == "onnxruntime"
        Engine(tiny_bundle, classes=["a", "b"], backend="toy-reader")
        assert SEEN["toy_level"] == 0  # its row's default
        with pytest.raises(ValueError, match=r"^toy_level: expected a whole number >= 0, got -1$"):
            Engine(tiny_bundle, backend="toy-reader", toy_level=-1)


# ---- one resolver; plugin precisions ---------------------------------------------------------------------------
def test_one_module_attr_resolver():
    from zsseg_rt.aliases import resolve_reference
    from zsseg_rt.contract.family import resolve_ref
    from zsseg_rt.runtime.backends.table import load_reference

    assert load_reference is resolve_reference and resolve_ref is resolve_reference
    assert resolve_reference("zsseg_rt.pipeline.limits:InputLimits.max_windows") == 4096
    with pytest.raises(ValueError, match=r"^a reference reads 'module:attribute', got 'zsseg_rt.options'$"):
        resolve_reference("zsseg_rt.options")
    import inspect

    from zsseg_rt import options
    from zsseg_rt.runtime import precision_records

    for module in (options, precision_records):  # no resolver of their own: they call the one
        assert "import_module" not in inspect.getsource(module), module.__name__


def test_a_plugin_precision_is_one_of_the_precision_flags_choices(capsys):
    from zsseg_rt import cli
    from zsseg_rt.runtime.backends import BackendSpec, table

    row = BackendSpec(
        name="quarter",
        factory=f"{__name__}:open_reader",
        devices=("cpu",),
        precisions=("fp32", "q4"),
        default_precision="fp32",
        roles=("image", "head", "text"),
        summary="a plugin with its own precision (a test's)",
    )
    with table.BACKENDS.adding(row):
        assert "q4" in table.precision_names() and "quarter: fp32 (default), q4" in table.precision_help()
        args = cli.build_parser().parse_args([*SEGMENT, "--backend", "quarter", "--precision", "q4"])
        assert args.precision == "q4"
        ENGINE_OPTIONS["precision"].check_value("q4")
    assert "q4" not in table.precision_names()


def test_tensorrt_refuses_a_gpu_it_would_not_run_on():
    """The TensorRT runner opens CUDA device 0: ``cuda:1`` is refused with the way to that GPU (it would have run on
    GPU 0); checked before TensorRT is imported, so on any machine."""
    from zsseg_rt.runtime.backends.base import OpenRequest
    from zsseg_rt.runtime.backends.tensorrt.runner import open_tensorrt

    request = OpenRequest(None, ("image",), ENGINE_OPTIONS.defaults().replace(device="cuda:1"))
    with pytest.raises(ValueError, match=r"^the tensorrt backend runs on CUDA device 0: device='cuda:1' is not taken"):
        open_tensorrt.from_request(request)


def test_a_ray_workers_options_are_checked_by_the_rows_before_any_worker():
    from zsseg_rt.scale.engine import checked_engine_options

    assert checked_engine_options({"threads": 2}, "build_app()") == {"threads": 2}
    with pytest.raises(ValueError, match=r"^threads: expected a whole number in \[0, 1024\], got 'x'$"):
        checked_engine_options({"threads": "x"}, "build_app()")


def test_no_module_attr_resolver_but_the_one():
    """No function of the package splits a ``"module:attr"`` and imports the module itself, but
    ``aliases.resolve_reference`` (control: the four copies of b235fde, options / backends.table / precision_records /
    contract.family, and models' and cli's, each did)."""
    import ast
    from pathlib import Path

    import zsseg_rt

    root = Path(zsseg_rt.__file__).parent
    # imports an entry point's module only (to register its families), no attribute resolved
    allowed = {"aliases.py:resolve_reference", "contract/registry.py:_import_entry"}
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            text = ast.unparse(node)
            splits = any(f"{how}(':')" in text for how in ("partition", "rpartition", "split"))
            if splits and "import_module(" in text:
                found.append(f"{path.relative_to(root).as_posix()}:{node.name}")
    assert set(found) <= allowed, sorted(set(found) - allowed)
