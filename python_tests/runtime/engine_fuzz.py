"""Hypothesis fuzz of ``Engine`` inputs (run by ``test_engine_fuzz.py`` in a subprocess under a memory ceiling).

Usage: ``python engine_fuzz.py BUNDLE MAX_EXAMPLES HEADROOM_BYTES``: once the Engine is made, RLIMIT_AS is set to the
address space the process then holds plus HEADROOM_BYTES (the ceiling is on what the calls add). Random images (sizes and aspect ratios up to past the
limits, 2-D / 1 / 3 / 4 channels and wrong ones, uint8 and refused dtypes, non-contiguous views), random
vocabularies (unicode names, templates with and without ``{}``, class biases) and colour orders. Every call
must either succeed with a well-formed result or raise one of the package's documented exception types
(TypeError, ValueError, of which InputLimitError is one); anything else, a crash or a hang fails the run.
Prints one JSON line with the counts, the peak RSS and the address-space limit.
"""

from __future__ import annotations

import collections
import json
import resource
import sys

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DOCUMENTED = (TypeError, ValueError)


def _mostly(valid, wild, valid_share: int = 7):
    """``valid`` in ``valid_share`` of 10 draws, else ``wild`` (so most calls get past the vocabulary checks)."""
    return st.integers(0, 9).flatmap(lambda k: valid if k < valid_share else wild)


VALID_NAMES = st.lists(
    st.sampled_from(["cat", "dog", "sky", "floor", "person", "tree", "road", "a car", "Water", "grass"]),
    min_size=1,
    max_size=8,
    unique_by=str.lower,
)
names_strategy = _mostly(
    VALID_NAMES,
    st.one_of(
        st.lists(st.text(min_size=0, max_size=12), min_size=0, max_size=6),
        st.text(max_size=30),  # a comma-separated string
        st.lists(st.sampled_from(["cat", "Cat", "dog ", "t-shirt", "t - shirt", "&amp;", "&", " "]), max_size=5),
        st.lists(st.one_of(st.integers(), st.none(), st.text(max_size=4)), min_size=1, max_size=3),
    ),
)
templates_strategy = _mostly(
    st.one_of(
        st.none(),
        st.just("a photo of a {}."),
        st.lists(st.text(max_size=10).map(lambda t: t + " {}"), min_size=1, max_size=2),
    ),
    st.one_of(
        st.sampled_from(["{}", "a {0}", "{x}", "{} {}", "no field", "{", "a {{}} {}", "{:>3}"]),
        st.lists(st.text(max_size=8), max_size=2),
    ),
)
bias_strategy = _mostly(
    st.none(),
    st.one_of(
        st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=6),
        st.lists(st.integers(-3, 3), max_size=6),
        st.just(["0.1", "x"]),
    ),
)
DTYPES = [np.uint8] * 12 + [np.float32, np.uint16, np.int8, np.bool_, np.float64]


@st.composite
def images(draw):
    kind = draw(st.sampled_from(["square", "wide", "tall", "elongated", "huge"]))
    if kind == "elongated":
        height, width = draw(st.integers(1, 3)), draw(st.integers(100, 3000))
        if draw(st.booleans()):
            height, width = width, height
    elif kind == "huge":  # past max_pixels: must be refused before any work
        height, width = draw(st.integers(900, 1200)), draw(st.integers(900, 1200))
    else:
        height, width = draw(st.integers(1, 200)), draw(st.integers(1, 200))
    channels = draw(st.sampled_from([None, 1, 3, 3, 3, 3, 3, 4, 2, 5]))
    dtype = draw(st.sampled_from(DTYPES))
    shape = (height, width) if channels is None else (height, width, channels)
    seed = draw(st.integers(0, 2**16))
    data = np.random.default_rng(seed).integers(0, 256, shape).astype(dtype)
    if draw(st.booleans()) and width > 1:
        data = data[:, ::2]  # non-contiguous view
    if draw(st.integers(0, 9)) == 0:
        data = np.asfortranarray(data)
    return data


def _peak_rss_kib() -> int:
    """This process's own peak RSS: ``VmHWM`` (per address space, so not inherited from the parent across exec
    like ``ru_maxrss``), or ``ru_maxrss`` where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _address_space_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmSize:"))


def main(bundle: str, max_examples: int, headroom: int) -> None:
    import numpy.random  # noqa: F401 - hypothesis seeds it at the first example: mapped before the ceiling

    from zsseg_rt import Engine

    engine = Engine(
        bundle,
        classes=["cat", "dog", "sky"],
        backend="onnxruntime",
        device="cpu",
        max_pixels=1 << 19,
        max_windows=256,
        max_memory_mb=512,
    )
    at_limit = _address_space_kib() << 10
    resource.setrlimit(resource.RLIMIT_AS, (at_limit + headroom, at_limit + headroom))
    outcomes: collections.Counter = collections.Counter()

    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        image=images(),
        names=names_strategy,
        templates=templates_strategy,
        bias=bias_strategy,
        color_order=st.sampled_from(["bgr", "rgb", "bgr", "RGB"]),
        as_list=st.booleans(),
    )
    def one_call(image, names, templates, bias, color_order, as_list):
        try:
            engine.set_classes(names, templates=templates, class_bias=bias)
            outcomes["vocabulary ok"] += 1
        except DOCUMENTED as exc:
            outcomes[f"vocabulary {type(exc).__name__}"] += 1
        classes = len(engine.class_names)
        try:
            result = engine([image], color_order)[0] if as_list else engine(image, color_order)
        except DOCUMENTED as exc:
            outcomes[f"image {type(exc).__name__}"] += 1
            return
        outcomes["image ok"] += 1
        assert result.labels.shape == image.shape[:2] and result.labels.dtype == np.int32
        assert result.scores.shape == image.shape[:2] and result.scores.dtype == np.float32
        assert result.labels.min() >= 0 and result.labels.max() < classes
        assert np.isfinite(result.scores).all()

    one_call()
    peak_mib = _peak_rss_kib() / 1024
    report = {"outcomes": dict(sorted(outcomes.items())), "peak_rss_mib": round(peak_mib, 1)}
    report["address_space_at_limit_mib"] = at_limit >> 20
    report["address_space_limit_mib"] = resource.getrlimit(resource.RLIMIT_AS)[0] >> 20
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
