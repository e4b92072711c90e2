"""The Engine's options come from one table (``zsseg_rt.options.ENGINE_OPTIONS``, issue 73): the Engine checks its
keywords there (a misspelt one is answered with the closest name, in one line), fills in the rows' defaults, hands the
pipeline one ``OptionValues`` and refuses, by a row's ``kinds``, an option of another bundle kind; a preset is one
object (``LIVE``) whose options the Engine takes; the options module imports no third-party package."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from zsseg_rt import Engine
from zsseg_rt.options import ENGINE_OPTIONS, LIVE, EngineOption, OptionValues, did_you_mean, preset_named

CLASSES = ["person", "bottle", "chair"]
OPTIONS_PACKAGE = Path(__file__).resolve().parents[2] / "zsseg_rt" / "options"  # a package since the split


def test_a_misspelt_keyword_is_answered_with_the_closest_name(tiny_bundle):
    with pytest.raises(TypeError) as caught:
        Engine(tiny_bundle, classes=CLASSES, precison="fp16")
    assert str(caught.value) == "Engine() got an unexpected keyword argument 'precison': did you mean 'precision'?"
    with pytest.raises(TypeError) as caught:  # nothing close: every option named, still one line
        Engine(tiny_bundle, classes=CLASSES, colour="red")
    message = str(caught.value)
    assert "\n" not in message and "'colour'" in message and "its options: backend, device" in message


def test_every_row_is_a_keyword_of_the_engine_and_reaches_the_pipeline(tiny_bundle):
    """Each row's default is what the Engine runs with when it is not given; a given value reaches the pipeline's
    ``options`` (max_batch: the pipeline's own default when None)."""
    engine = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", mode="fast", threads=1)
    values = engine.pipeline.options
    assert isinstance(values, OptionValues) and list(values) == ENGINE_OPTIONS.names()
    assert (values.backend, values.mode, values.threads, values.precision) == ("onnxruntime", "fast", 1, None)
    assert values.max_batch == type(engine.pipeline).default_max_batch and engine.pipeline.max_batch == values.max_batch
    given = {"mode", "threads", "backend", "max_batch"}
    assert all(values[row.name] == row.default for row in ENGINE_OPTIONS if row.name not in given)


@pytest.mark.host_only  # refusals of ONNX Runtime engines on the CPU (no CUDA provider on the GPU image)
def test_a_row_of_one_bundle_kind_is_refused_by_the_others(family_bundles):
    """inference / whole_fallback / test_scale are windowed-pipeline rows: a two-stage bundle refuses each, in one
    line naming the option, the value, both kinds and why (the row's refusal)."""
    bundle = family_bundles["zegformer"]
    for name, value in (("inference", "whole"), ("whole_fallback", "windows"), ("test_scale", "window")):
        with pytest.raises(ValueError) as caught:
            Engine(bundle, classes=CLASSES, backend="onnxruntime", **{name: value})
        message = str(caught.value)
        assert "\n" not in message and message.startswith(f"{name}={value!r}: an option of windowed bundles")
        assert "pipeline is two_stage" in message and ENGINE_OPTIONS[name].refusal in message


def test_the_live_preset_is_one_object_the_engine_takes(tiny_bundle):
    """``Engine(bundle, preset=LIVE)`` runs the preset's options (one window a frame); a keyword given wins; the
    preset's name works too, a misspelt one is answered with the closest."""
    engine = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", preset=LIVE)
    size = engine.meta.crop_size
    assert engine.preset is LIVE and engine.options.test_scale == "window"
    assert engine.pipeline.test_scale == [size, size]
    mine = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", preset="live", test_scale=(None, 2 * size))
    assert mine.preset is LIVE and mine.pipeline.test_scale == [None, 2 * size]
    with pytest.raises(ValueError, match=r"got 'lve': did you mean 'live'\?"):
        preset_named("lve")


def test_the_table_refuses_a_row_it_could_not_use():
    """A duplicate name or flag, a flag without '--', a kind-bound row without its refusal and a row workers do not
    take without the reason are refused when the row is made or added."""
    with pytest.raises(ValueError, match="has an option 'mode' already"):
        ENGINE_OPTIONS.add(EngineOption("mode", "x", "str", "help"))
    with pytest.raises(ValueError, match="has the flag --mode"):
        ENGINE_OPTIONS.add(EngineOption("mode2", "x", "str", "help", flag="--mode"))
    with pytest.raises(ValueError, match="starts with '--'"):
        EngineOption("toy", 0, "int", "help", flag="-t")
    with pytest.raises(ValueError, match="refusal"):
        EngineOption("toy", 0, "int", "help", kinds=("windowed",))
    with pytest.raises(ValueError, match="not_in_workers"):
        EngineOption("toy", 0, "int", "help", workers=False)
    assert "toy" not in ENGINE_OPTIONS and "mode2" not in ENGINE_OPTIONS
    assert did_you_mean("precison", ENGINE_OPTIONS.names()) == "did you mean 'precision'?"
    assert did_you_mean("zzz", ENGINE_OPTIONS.names()) == ""


def test_the_options_module_imports_no_third_party_package():
    """The foundation layer: by reading (every import statement of the package's files names a standard library
    module, a module of the package, the one resolver or the error classes) and by running (importing it loads no module outside the standard library and
    zsseg_rt)."""
    files = sorted(OPTIONS_PACKAGE.glob("*.py"))
    assert {path.name for path in files} >= {"__init__.py", "table.py", "engine_rows.py", "registry.py"}
    tree = ast.Module(
        body=[node for path in files for node in ast.parse(path.read_text(encoding="utf-8")).body], type_ignores=[]
    )
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } - {"zsseg_rt"}
    own = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and "zsseg_rt" in str(node.module)
    }
    assert imported and imported <= set(sys.stdlib_module_names), imported
    own = {module for module in own if not module.startswith("zsseg_rt.options")}  # the package's own modules
    assert own <= {"zsseg_rt.aliases", "zsseg_rt.errors"}, own  # the one resolver, the error classes: stdlib only
    code = (
        "import sys; before = set(sys.modules); import zsseg_rt.options; "
        "print('\\n'.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    )
    assert loaded - set(sys.stdlib_module_names) == {"zsseg_rt"}, loaded
