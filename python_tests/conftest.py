"""Shared pytest fixtures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import warnings

import collection_bytecode
import cpu_times
import pytest
import stage_order
import time_bound
from support import GOLDEN, REPO, build_once, export_tiny_bundle

# The checkout's benchmarks/ and checks/ packages for the tests that import them, appended LAST: an installed
# zsseg_rt (tools/gpu_check.sh runs pytest from another folder with PYTHONSAFEPATH=1 and the wheel on PYTHONPATH)
# stays the one imported, never the source tree before it. (CI runs from the checkout: it is there already.)
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))
from test_doc_snippets import set_up_root  # noqa: F401 - a session fixture: the demo set-up, exported once

# cuBLAS's deterministic workspace for every test on a GPU (read when cuBLAS starts, so before any test runs; the
# resume test's rule on CUDA, python_tests/train/test_training.py, relies on it); nothing changes without a GPU
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

# Engine(bundle)'s default on a CPU (prepare="auto") starts a niced background preparation of the faster gated paths
# (quantise + gate, minutes for a real bundle) and switches to one when ready: a test's labels would then depend on
# when it finished. Every test and every command a test starts runs what is recorded; the tests of the default
# itself (runtime/test_cpu_auto.py) set or remove the variable.
os.environ["ZSSEG_AUTO_PREPARE"] = "none"

# A bundle exported elsewhere (tools/runtime_only_tests.sh exports it with torch, then runs the runtime tests in a
# venv without torch): the tiny_bundle fixture copies it instead of exporting.
PREBUILT_BUNDLE_ENV = "ZSSEG_TEST_TINY_BUNDLE"
# Where the reports that failed a test on the emulated CUDA runtime are appended (JSON lines: test, kind, message),
# when set: python_tests/test_emulator_mutations.py reads which kinds of report caught a mutation.
REPORT_LOG_ENV = "ZS_EMU_REPORT_LOG"


def pytest_addoption(parser):
    cpu_times.addoption(parser)  # --cpu-durations=N: where the run's CPU went, per test
    parser.addoption(
        "--fake-cuda",
        action="store_true",
        help="the device-placement guard: run the tests under python_tests/{train,models,eval} (not those marked `cuda`) "
        "with a fake CUDA device that computes on the CPU and refuses mixed devices as CUDA does "
        "(python_tests/fake_cuda.py); other tests are deselected",
    )


def _xdist_groups_in_test_ids(config, items) -> None:
    """``--dist loadgroup``: the ``xdist_group`` of a test in its id (``...::test@group``), which is what
    pytest-xdist's scheduler reads. pytest-xdist 3.8's worker writes it into ``item._nodeid``, which pytest 9.2 no
    longer reads (a node's id is ``item._id``), so its groups were lost: the scale tests (python_tests/scale/conftest.py)
    ran on both workers, each starting a Ray cluster and a server of its own. Done here, after every other hook (the
    scale tests' conftest marks them in its own), for a worker whose ids lack the group; a no-op where xdist did it
    (pytest < 9.2). Imports nothing of pytest's private modules (``_pytest.nodeid`` is new in 9.2: the GPU image's
    pytest 9.1.1 has none, and an import of it here stopped every xdist worker there)."""
    # (xdist sets option.loadgroup for --dist loadgroup; a child pytest that inherited PYTEST_XDIST_WORKER from a
    # worker has no such option: test_emulator_mutations.py's runs)
    if not (os.environ.get("PYTEST_XDIST_WORKER") and getattr(config.option, "loadgroup", False)):
        return
    lost = []
    for item in items:
        groups = sorted(
            {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
        )
        suffix = "@" + "_".join(groups)
        if groups and not item.nodeid.endswith(suffix):
            _set_node_id(item, item.nodeid + suffix)
            if not item.nodeid.endswith(suffix):
                lost.append(item.nodeid)
    if lost:  # a pytest that keeps its ids some third way: said, not fatal (the groups only save work)
        warnings.warn(
            pytest.PytestWarning(
                f"conftest: pytest {pytest.__version__} kept no xdist group in {len(lost)} test ids (e.g. {lost[0]}): "
                "--dist loadgroup runs those groups' tests on any worker"
            )
        )


def _set_node_id(item, nodeid: str) -> None:
    """``item``'s id made ``nodeid`` on either kind of pytest, computed without ``_pytest.*``: pytest >= 9.2 keeps it
    structured in ``item._id`` (its class parses the string form: ``NodeId.parse``, which is all
    ``_pytest.nodeid.coerce_node_id`` does with a string), earlier versions as the string ``item._nodeid``."""
    current = getattr(item, "_id", None)
    if current is None or isinstance(current, str):
        item._nodeid = nodeid
        return
    parse = getattr(type(current), "parse", None)
    if parse is not None:
        item._id = parse(nodeid)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    _xdist_groups_in_test_ids(config, items)
    stage_order.longest_first(items)
    if not config.getoption("--fake-cuda"):
        return
    from fake_cuda import GUARDED_DIRS

    root = config.rootpath / "python_tests"
    kept, dropped = [], []
    for item in items:
        parts = item.path.relative_to(root).parts if item.path.is_relative_to(root) else ()
        guarded = bool(parts) and parts[0] in GUARDED_DIRS and item.get_closest_marker("cuda") is None
        (kept if guarded else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


# Session fixtures that cost CPU while idle, finished once this process has run the last test of the folder that
# defines them (its tests are contiguous: one xdist group, one rank of LONGEST_FIRST) instead of at the session's end:
# the scale tests' Ray cluster (python_tests/scale/conftest.py), whose daemons polled for the remaining half hour of a
# CI run (85 s CPU, counted when they were reaped at the session's end). A later test that asks for one again gets
# a new one (the fixture's cached value is cleared), so this only moves the clean-up. Whether the folder's last test
# asks for the fixture does not matter (test_serve_vocabularies.py's, the folder's last, runs the replica without
# Ray: the cluster stayed up for the rest of the session, 54.7 CPU-s reaped in the worker's last test in CI).
FINISHED_WHEN_LEFT = ("ray_cluster",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    if nextitem is None:  # the session's end finishes every fixture anyway
        return
    for name in FINISHED_WHEN_LEFT:
        for fixturedef in item.session._fixturemanager.getfixturedefs(name, item) or ():
            folder = fixturedef.baseid
            if folder and fixturedef.cached_result is not None and not nextitem.nodeid.startswith(folder + "/"):
                fixturedef.finish(item._request)


@pytest.fixture(scope="session", autouse=True)
def _fake_cuda_device(request):
    """``--fake-cuda``: the whole session (its session fixtures too) runs on the fake CUDA device."""
    if not request.config.getoption("--fake-cuda"):
        yield
        return
    from fake_cuda import fake_cuda

    with fake_cuda():
        yield


def _sigint_as_at_a_terminal() -> None:
    """The session handles SIGINT as a command typed at a terminal does, also where pytest started with it ignored
    (nohup, or `&` in a script: tools/run_tests.sh runs two of its suites so). An ignored signal passes to every
    child at exec, and a command started so rightly keeps ignoring SIGINT: the tests that stop a command with Ctrl-C's
    signal (test_signals.py, the phase sweeps, the stream and camera tests) then waited out their timeouts and failed.
    A handled signal is reset to its default action at exec, so the children start as from a terminal. The tests of
    a command started with SIGINT ignored set that up themselves (test_signal_phases.py, test_progress.py)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config):
    _sigint_as_at_a_terminal()
    time_bound.register(config)  # every test phase bounded in time: a hang is a named failure
    stage_order.register(config)  # a stage's must-runs first, its deadline, the not_sanitized mark
    cpu_times.register(config)  # every test's CPU time (printed with --cpu-durations)
    if not config.pluginmanager.has_plugin("zsseg_collection_bytecode"):  # collection writes its bytecode: CI's CPU
        config.pluginmanager.register(collection_bytecode, "zsseg_collection_bytecode")
    config.addinivalue_line(
        "markers", "slow: full-size models (minutes); run by tools/run_tests.sh, deselect with -m 'not slow'"
    )
    config.addinivalue_line(
        "markers",
        "single_torch_thread: one torch intra-op thread, as for the tests under eval/ and train/ (training and "
        "evaluation loops of tiny models)",
    )
    config.addinivalue_line(
        "markers",
        "cuda: runs the CUDA path of the native module; skips without a usable device. CI runs them on the emulated "
        "CUDA runtime: ZSSEG_CUDA_EMULATION=1 python -m pytest python_tests -m cuda (tools/build_emulated.sh)",
    )


def _emulation():
    """``zsseg_rt._C._emulation`` when the emulated CUDA build is loaded (ZSSEG_CUDA_EMULATION=1), else None."""
    if os.environ.get("ZSSEG_CUDA_EMULATION") != "1":
        return None
    from zsseg_rt import ops

    return getattr(ops.native_module(), "_emulation", None)


def pytest_report_header(config):
    emu = _emulation()
    if emu is None:
        return None
    return (
        f"emulated CUDA runtime: seed {emu.seed()} (ZS_EMU_SEED={emu.seed()} replays its orderings), delays up to "
        f"{emu.max_delay_us()} us, mutations {emu.mutations() or 'none'}"
    )


@pytest.fixture(autouse=True)
def _emulated_runtime_reports(request):
    """On the emulated CUDA runtime every test fails when the runtime reported a race (two accesses to one
    allocation, at least one a write, with no ordering between them), a use of freed pool memory or a misuse of a
    handle during it: what a GPU gets wrong silently (csrc/emu/cuda_emu_runtime.h). A test that provokes one on purpose
    takes it with ``cuda_emulation().take_reports()`` and checks it."""
    emu = _emulation()
    if emu is None:
        yield
        return
    emu.take_reports()
    yield
    reports = emu.take_reports()
    if reports:
        if emu.device_error():  # a kernel faulted: the next test starts on a reset device, as after cudaDeviceReset
            emu.reset_device_error()
        log = os.environ.get(REPORT_LOG_ENV)
        if log:  # the mutation harness reads which kinds of report failed the run
            with open(log, "a", encoding="utf-8") as handle:
                for kind, message in reports:
                    handle.write(json.dumps({"test": request.node.nodeid, "kind": kind, "message": message}) + "\n")
        lines = "\n".join(f"  {kind}: {message}" for kind, message in reports)
        pytest.fail(f"the emulated CUDA runtime reported {len(reports)} problem(s) during the test:\n{lines}")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A bundle exported once per test session (shared by the pytest-xdist workers) from the golden tiny ZegCLIP
    model (64 px input, 4x4 patch grid, max 32 classes). Its native checkpoint is saved next to the export and
    recorded in meta.json, so the torch backend can load it too. Returns this process's copy of the bundle
    directory (tests may write into their bundle). Needs torch (skips without it), unless $ZSSEG_TEST_TINY_BUNDLE
    names such a bundle exported beforehand: then that is copied, with the native checkpoint beside it when there is
    one (``export_tiny_bundle``'s ``native`` folder: tools/run_tests.sh exports the bundle once for all its suites)."""
    root = tmp_path_factory.mktemp("tiny_bundle")
    prebuilt = os.environ.get(PREBUILT_BUNDLE_ENV)
    if prebuilt:
        if not os.path.isfile(os.path.join(prebuilt, "meta.json")):
            raise FileNotFoundError(f"${PREBUILT_BUNDLE_ENV}={prebuilt!r} is not a bundle (no meta.json in it)")
        native = os.path.join(os.path.dirname(os.path.abspath(prebuilt)), "native")
        if os.path.isdir(native):
            shutil.copytree(native, os.path.join(root, "native"))
        return shutil.copytree(prebuilt, os.path.join(root, "bundle"))
    pytest.importorskip("torch", reason="exporting the tiny test bundle needs torch")
    # exported once per session, shared by the pytest-xdist workers; each process gets its own copy (bundle and
    # native checkpoint beside it, where tests look for it), as it had its own export before; the copied meta.json
    # still records the shared native checkpoint as its source (signed: not rewritten), which no test writes into
    golden = GOLDEN / "zegclip_tiny" / "official_tiny.safetensors"
    shared = build_once(tmp_path_factory, "tiny_bundle", [golden], export_tiny_bundle)
    for name in ("native", "bundle"):
        shutil.copytree(shared / name, root / name)
    return str(root / "bundle")


@pytest.fixture(scope="session")
def family_bundles(tiny_bundle, tmp_path_factory):
    """Every registered family's tiny bundle (ZegCLIP: this process's copy of ``tiny_bundle``) and the family members
    with graphs of their own (``family_bundles.VARIANTS``: SC-CLIP), name -> bundle directory. Exported once per test
    session (``build_once``: shared by the pytest-xdist workers, the costliest set-up of the suite when each module
    exported its own). Shared, so read-only: a test that writes into a bundle (a change, or OpenVINO's compiled-model
    cache in its engines/ folder) copies it first."""
    pytest.importorskip("torch", reason="exporting the families' tiny bundles needs torch")
    from family_bundles import TINY_CONFIGS, VARIANTS, export_family_bundle, export_variant_bundle

    def build(target) -> None:
        paths = {family: export_family_bundle(family, str(target)) for family in TINY_CONFIGS}
        for name in VARIANTS:
            paths[name] = export_variant_bundle(name, str(target))
        (target / "paths.json").write_text(json.dumps(paths), encoding="utf-8")

    root = build_once(tmp_path_factory, "family_bundles", [*TINY_CONFIGS.items(), *VARIANTS.items()], build)
    return {"zegclip": tiny_bundle, **json.loads((root / "paths.json").read_text(encoding="utf-8"))}


@pytest.fixture(scope="session")
def random_bundle(tiny_bundle, tmp_path_factory):
    """A copy of the tiny bundle whose meta.json says what it is, random weights (``weights.random``; re-signed with
    ``write_meta`` as a deliberate edit): every output of it must carry the random-weights banner."""
    from zsseg_rt.bundle import weights_record, write_meta

    path = shutil.copytree(tiny_bundle, os.path.join(tmp_path_factory.mktemp("random_bundle"), "bundle"))
    with open(os.path.join(path, "meta.json"), encoding="utf-8") as handle:
        raw = json.load(handle)
    raw["weights"] = weights_record(None, "none")
    write_meta(os.path.join(path, "meta.json"), raw)
    return path


@pytest.fixture(autouse=True)
def _private_zsseg_cache(tmp_path_factory, monkeypatch):
    """zsseg_rt's cache directory (verified-file hashes) is a per-session temporary one, never the user's."""
    monkeypatch.setenv("ZSSEG_RT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "zsseg_rt_cache"))


@pytest.fixture(autouse=True)
def _hub_offline_switch_restored():
    """The offline rule of `zsseg export` / the demo (contract.common.weights.go_offline) switches a whole process
    to the local Hugging Face cache, as it should in a CLI process; in the test process that would leak into later
    tests, so the switch (environment variable and huggingface_hub's constant) is put back after each test."""
    import sys

    before = os.environ.get("HF_HUB_OFFLINE")
    constants = sys.modules.get("huggingface_hub.constants")
    constant = getattr(constants, "HF_HUB_OFFLINE", None)
    yield
    if before is None:
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = before
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported during the test: the value it reads from the environment restored above
        offline = (before or "").strip().lower() in ("1", "true", "yes", "on")
        constants.HF_HUB_OFFLINE = constant if constant is not None else offline


# Test directories whose tiny CPU models run fastest with one torch intra-op thread (training/evaluation loops
# of many tiny steps, where thread hand-off costs more than it saves); a family's training and evaluation tests,
# in its folder python_tests/models/<family>/, say so with ``pytestmark = pytest.mark.single_torch_thread``.
SINGLE_TORCH_THREAD_DIRS = ("eval", "train")


@pytest.fixture(autouse=True)
def _single_torch_thread(request):
    """One torch intra-op thread for the tests under ``SINGLE_TORCH_THREAD_DIRS`` or marked ``single_torch_thread``;
    the old count is restored."""
    marked = request.node.get_closest_marker("single_torch_thread") is not None
    if request.node.path.parent.name not in SINGLE_TORCH_THREAD_DIRS and not marked:
        yield
        return
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---- a real browser for the web pages (zsseg serve's page, the camera preview) ----
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium driven by Selenium (the web page tests); skips without it, fails under
    ZSSEG_REQUIRE_BROWSER=1 (tools/run_tests.sh where tools/setup_env.sh installs it)."""
    missing = None
    try:
        from selenium import webdriver
    except ImportError:
        missing = "the page test needs selenium (requirements.txt)"
    if not missing and not (CHROMIUM and CHROMEDRIVER):
        missing = "the page test needs Debian's chromium and chromium-driver (tools/setup_env.sh installs them)"
    if missing:
        if os.environ.get("ZSSEG_REQUIRE_BROWSER") == "1":  # tools/run_tests.sh (CI) where setup_env.sh installs them
            pytest.fail(missing + "; ZSSEG_REQUIRE_BROWSER=1 makes this a failure, not a skip")
        pytest.skip(missing)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--force-device-scale-factor=1",  # one screenshot pixel per canvas pixel
        "--force-color-profile=srgb",  # no colour management between the canvas and the screenshot
        "--window-size=1200,900",
        "--use-fake-device-for-media-stream",  # getUserMedia gets Chromium's test-pattern camera
        "--use-fake-ui-for-media-stream",  # and the permission prompt answers yes
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)  # never Selenium Manager (no downloads)
    driver = webdriver.Chrome(service=service, options=options)
    yield driver
    driver.quit()
