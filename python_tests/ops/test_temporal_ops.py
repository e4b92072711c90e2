"""The video filter's ops (``ops.temporal_blend``, ``temporal_hold``, ``temporal_propagate``, ``class_state``): the CPU
kernels give the NumPy code the filter ran before (``ops.reference_temporal``) bit for bit, the fill maps give what
the filter's OpenCV fill gave, the CUDA kernels (a GPU, or the emulated CUDA runtime in CI: ``-m cuda``) give the CPU
kernels' values, and bad arguments are one clear error."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import device, requires_cuda, to_host
from hypothesis import given, settings
from hypothesis import strategies as st

from zsseg_rt import ops
from zsseg_rt.ops import reference_temporal as ref

cv2 = pytest.importorskip("cv2")

C, H, W = 5, 18, 24  # the state
FH, FW = 72, 96  # the frame (4x the state)


def blend_case(seed: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    current = rng.uniform(0, 1, (C, H, W)).astype(np.float32)
    previous = (current + rng.normal(0, 0.05, (C, H, W))).astype(np.float32)
    if ties:  # exact ties: NumPy's argmax rules (the first maximum) decide the two best classes
        current[1] = current[0]
        current[3, :4] = current[2, :4]
    jitter = np.where(rng.uniform(size=(H, W)) < 0.7, rng.uniform(0, 0.01, (H, W)), 0).astype(np.float32)
    doubt = np.clip(rng.uniform(-0.3, 1.3, (H, W)), 0, 1).astype(np.float32)
    valid = (rng.uniform(size=(H, W)) < 0.8).astype(np.uint8)
    return current, previous, jitter, doubt, valid


@pytest.mark.parametrize("seed, ties, blend", [(0, False, 0.2), (1, True, 0.2), (2, False, 0.5), (3, False, 1.0)])
def test_blend_is_the_numpy_filter_bit_for_bit(seed, ties, blend):
    args = blend_case(seed, ties)
    got = ops.temporal_blend(*args, blend=blend, hold_doubt=0.5)
    want = ref.temporal_blend(*args, blend, 0.5)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert got[3][0] == 1
    current, previous, jitter, doubt, valid = args
    assert ops.temporal_blend(current, previous, np.zeros_like(jitter), doubt, valid, blend, 0.5)[3][0] == 0


def test_blend_fused_order_matters():
    """Control: the same arithmetic with a fused multiply-add (what a compiler may contract ``P + w (S - P)`` to)
    differs from the NumPy values somewhere, so the bit-for-bit test above can fail."""
    current, previous, jitter, doubt, valid = blend_case(4)
    weight = (0.2 + 0.8 * doubt).astype(np.float32)
    fused = (previous.astype(np.float64) + weight.astype(np.float64) * (current - previous)).astype(np.float32)
    numpy = previous + weight * (current - previous)
    assert (fused != numpy).any()


def hold_case(seed: int):
    rng = np.random.default_rng(seed)
    state = rng.uniform(0, 1, (C, H, W)).astype(np.float32)
    labels, scores = (a[0] for a in ops.segment(state[None], (FH, FW), None, sigmoid=False))
    anchor = np.where(rng.uniform(size=(FH, FW)) < 0.5, labels, rng.integers(0, C + 2, (FH, FW))).astype(np.int32)
    flow = rng.uniform(-3, 3, (FH, FW, 2)).astype(np.float32)
    flow[::5] = np.round(flow[::5] * 2) / 2  # half pixels: the nearest rule's rounding
    valid = (rng.uniform(size=(FH, FW)) < 0.9).astype(np.uint8)
    noise = rng.uniform(0, 0.4, (H, W)).astype(np.float32)
    return labels, scores, state, noise, anchor, flow, valid


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hold_is_the_numpy_filter_bit_for_bit(seed):
    labels, scores, state, noise, anchor, flow, valid = hold_case(seed)
    want = ref.temporal_hold(labels, scores, state, noise, anchor, flow, valid, 1.5)
    ops.temporal_hold(labels, scores, state, noise, anchor, flow, valid, 1.5)
    np.testing.assert_array_equal(labels, want[0])
    np.testing.assert_array_equal(scores, want[1])
    assert (labels != hold_case(seed)[0]).mean() > 0.05  # the hysteresis did hold labels (not a no-op)


def test_hold_does_nothing_when_nothing_was_measured():
    labels, scores, state, noise, anchor, flow, valid = hold_case(5)
    before = labels.copy()
    ops.temporal_hold(labels, scores, state, noise, anchor, flow, valid, 1.5, measured=np.zeros(1, np.int32))
    np.testing.assert_array_equal(labels, before)
    ops.temporal_hold(labels, scores, state, noise, anchor, flow, valid, 1.5, measured=np.ones(1, np.int32))
    assert (labels != before).any()  # the control: measured, it holds


def _fill_with_opencv(labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The filter's fill before the op (temporal._fill_invalid up to issue 65), the specification of the maps."""
    height, width = valid.shape
    small = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    _, nearest = cv2.distanceTransformWithLabels((~valid).astype(np.uint8), cv2.DIST_L2, 5,
                                                 labelType=cv2.DIST_LABEL_PIXEL)  # fmt: skip
    filled = small.reshape(-1)[np.flatnonzero(valid)[nearest.reshape(-1) - 1]].reshape(height, width)
    size = (labels.shape[1], labels.shape[0])
    invalid = cv2.resize((~valid).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    out = labels.copy()
    out[invalid] = cv2.resize(filled, size, interpolation=cv2.INTER_NEAREST)[invalid]
    return out


@pytest.mark.parametrize("frame, flow_size", [((72, 96), (36, 48)), ((75, 101), (38, 51)), ((40, 40), (40, 40))])
def test_propagate_is_the_filters_warp_and_fill(frame, flow_size):
    from zsseg_rt.stream.video_filter.temporal import _fill_maps, warp

    rng = np.random.default_rng(sum(frame))
    anchor = rng.integers(0, 7, frame).astype(np.int32)
    scores = rng.uniform(0, 1, frame).astype(np.float32)
    flow = rng.uniform(-4, 4, frame + (2,)).astype(np.float32)
    valid = np.ones(flow_size, bool)
    valid[5:15, 8:30] = False
    valid[-3:, :6] = False
    maps = _fill_maps(valid, frame)
    assert maps is not None
    fill = tuple(maps[k] for k in ("fill", "rows_down", "cols_down", "rows_up", "cols_up"))
    labels, moved = ops.temporal_propagate(anchor, scores, flow, fill)
    warped = warp(anchor.astype(np.uint16), flow, nearest=True)
    np.testing.assert_array_equal(labels, _fill_with_opencv(warped, valid))
    np.testing.assert_array_equal(moved, warp(scores, flow))
    np.testing.assert_array_equal(labels, ref.temporal_propagate(anchor, scores, flow, fill)[0])
    assert (labels != warped).any()  # the fill changed something


@pytest.mark.parametrize("out", [(90, 140), (480, 640)], ids=["smaller", "larger"])
def test_class_state_is_the_host_paths_scores(out):
    """``class_state`` against the float64 reference and against the host path's own class scores
    (``window_class_scores``: the window average, then OpenCV's INTER_AREA), for overlapping padded windows; the
    state smaller than the rescaled image (an area average), and larger (a 480x640 frame at stride 4 on a 64-px
    bundle, as the H200 probe met it: OpenCV's linear coefficients)."""
    from zsseg_rt.pipeline.class_scores import window_class_scores
    from zsseg_rt.pipeline.postprocessor import Postprocessor
    from zsseg_rt.pipeline.preprocess import Window

    rng = np.random.default_rng(3)
    head, scaled = (64, 64), (64, 100)
    size = (-(-out[0] // 4), -(-out[1] // 4))  # pipeline.class_scores.state_size at stride 4
    windows = [(0, 64, 0, 64), (0, 64, 36, 100)]
    logits = rng.normal(0, 2, (2, 4, 16, 16)).astype(np.float32)
    bias = np.array([0.1, 0.0, 0.1, 0.0], np.float32)
    state = ops.class_state(logits, windows, head, scaled, size, class_bias=bias)
    np.testing.assert_allclose(state, ref.class_state(logits, windows, head, scaled, size, bias), atol=2e-6)
    post = Postprocessor(head_size=head, activation="sigmoid", window_logits="padded")
    host = window_class_scores(post, logits, [Window(*w) for w in windows], scaled, out, 4, bias)
    assert host.scores.shape == state.shape
    np.testing.assert_allclose(state, host.scores, atol=2e-6)


def _resize_case(scaled, state):
    """One window covering the whole rescaled image, the logits already at its size (the bilinear step is the
    identity) and no sigmoid, no bias: ``class_state`` is then the resize alone, which the host path does with
    ``cv2.resize(INTER_AREA)`` (``pipeline.class_scores._area_resize``)."""
    from zsseg_rt.pipeline.class_scores import _area_resize

    rng = np.random.default_rng(scaled[0] * 1000 + scaled[1] * 10 + state[0] + state[1])
    logits = rng.normal(0, 2, (1, 3) + tuple(scaled)).astype(np.float32)
    windows = [(0, scaled[0], 0, scaled[1])]
    got = ops.class_state(logits, windows, scaled, scaled, state, sigmoid=False)
    return logits, windows, got, _area_resize(logits[0], state)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(h=st.integers(1, 40), w=st.integers(1, 40), sh=st.integers(1, 90), sw=st.integers(1, 90))
def test_class_state_resizes_as_opencv_inter_area(h, w, sh, sw):
    """Every state size, smaller or larger than the rescaled image along either axis (cv::resize's area average
    where neither axis enlarges, its linear coefficients on both axes otherwise): the CPU kernel gives
    ``cv2.resize(INTER_AREA)`` bit for bit where it enlarges (its float products and sums, in its order), within
    float rounding where it averages (the kernel's summation order is not OpenCV's), and the float64 reference
    within float rounding."""
    logits, windows, got, host = _resize_case((h, w), (sh, sw))
    if sh > h or sw > w:
        np.testing.assert_array_equal(got, host)
    else:
        np.testing.assert_allclose(got, host, rtol=1e-5, atol=2e-6)
    want = ref.class_state(logits, windows, (h, w), (h, w), (sh, sw), sigmoid=False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("scaled, state, other_rule", [((64, 85), (120, 160), False), ((5, 7), (13, 7), False),
                                                       ((64, 85), (60, 90), False), ((8, 8), (9, 2), True),
                                                       ((7, 1), (3, 4), True)])  # fmt: skip
def test_class_state_enlarges_as_the_host_path(scaled, state, other_rule):
    """The geometry the H200 probe (P9, b235fde) met: the tiny bundle's 480x640 frame rescaled to 64x85, its state at
    stride 4 120x160, which the binding refused while the host path enlarges; and the mixed cases (one axis
    enlarges, the other reduces: OpenCV's linear coefficients on both), bit for bit. Control: where a reducing axis
    of a mixed case takes more than two source pixels a destination (8 -> 2, 7 -> 3), the area average (the
    kernel's rule for a smaller state) is another result altogether; elsewhere the area overlaps are OpenCV's
    linear coefficients up to float rounding (an enlarging axis, or 64 -> 60)."""
    logits, windows, got, host = _resize_case(scaled, state)
    np.testing.assert_array_equal(got, host)
    area = np.einsum("iy,cyx,jx->cij", ref._area_matrix(scaled[0], state[0]), logits[0].astype(np.float64),
                     ref._area_matrix(scaled[1], state[1]))  # fmt: skip
    assert (np.abs(area - host).max() > 1e-3) == other_rule


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda a: ops.temporal_blend(a[0][:2], *a[1:], 0.2, 0.5), r"temporal_blend: argument 'previous' must have"),
        (lambda a: ops.temporal_blend(*a[:4], a[4].astype(np.float32), 0.2, 0.5), r"'valid'.*uint8"),
        (lambda a: ops.temporal_blend(*a, 0.0, 0.5), r"temporal_blend: blend must be in \(0, 1\], got 0"),
        (lambda a: ops.class_state(np.zeros((1, 2, 4, 4), np.float32), [(0, 8, 0, 8)], (8, 8), (8, 8), (9, 0)),
         r"class_state: .*state_size"),
    ],
)  # fmt: skip
def test_bad_arguments_are_one_clear_error(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call(blend_case(0))


@pytest.mark.cuda
@requires_cuda
def test_cuda_matches_cpu():
    """Each op on CUDA (a GPU; the emulated runtime in CI) against the CPU kernel: blend, hold and propagate
    exactly (products and sums rounded one by one on the device too), class_state within float rounding (the
    device's expf)."""
    args = blend_case(6, ties=True)
    host = ops.temporal_blend(*args, blend=0.2, hold_doubt=0.5)
    gpu = ops.temporal_blend(*(device(a) for a in args), blend=0.2, hold_doubt=0.5)
    for g, h in zip(gpu, host):
        np.testing.assert_array_equal(to_host(g), h)
    labels, scores, state, noise, anchor, flow, valid = hold_case(7)
    d_labels, d_scores = device(labels), device(scores)
    ops.temporal_hold(d_labels, d_scores, device(state), device(noise), device(anchor), device(flow), device(valid),
                      1.5, measured=device(np.ones(1, np.int32)))  # fmt: skip
    ops.temporal_hold(labels, scores, state, noise, anchor, flow, valid, 1.5)
    np.testing.assert_array_equal(to_host(d_labels), labels)
    np.testing.assert_array_equal(to_host(d_scores), scores)
    from zsseg_rt.stream.video_filter.temporal import _fill_maps

    valid_small = np.ones((36, 48), bool)
    valid_small[4:20, 10:30] = False
    maps = _fill_maps(valid_small, (FH, FW))
    fill = tuple(maps[k] for k in ("fill", "rows_down", "cols_down", "rows_up", "cols_up"))
    host_out = ops.temporal_propagate(anchor, scores, flow, fill)
    gpu_out = ops.temporal_propagate(device(anchor), device(scores), device(flow), tuple(device(m) for m in fill))
    for g, h in zip(gpu_out, host_out):
        np.testing.assert_array_equal(to_host(g), h)
    rng = np.random.default_rng(8)
    logits = rng.normal(0, 2, (2, 4, 16, 16)).astype(np.float32)
    windows, bias = [(0, 64, 0, 64), (0, 64, 36, 100)], np.array([0.1, 0, 0.1, 0], np.float32)
    state_cpu = ops.class_state(logits, windows, (64, 64), (64, 100), (23, 35), class_bias=bias)
    state_gpu = ops.class_state(device(logits), windows, (64, 64), (64, 100), (23, 35), class_bias=device(bias))
    np.testing.assert_allclose(to_host(state_gpu), state_cpu, atol=1e-6)
    # a state larger than the rescaled image (the tiny bundle's 480x640 frame at stride 4: P9 on the H200), and one
    # axis larger: OpenCV's linear coefficients on the device too
    for size in ((120, 160), (40, 120)):
        state_cpu = ops.class_state(logits, windows, (64, 64), (64, 100), size, class_bias=bias)
        state_gpu = ops.class_state(device(logits), windows, (64, 64), (64, 100), size, class_bias=device(bias))
        np.testing.assert_allclose(to_host(state_gpu), state_cpu, atol=1e-6)


def test_blend_writes_into_out_and_returns_it():
    args = blend_case(9)
    expected = ops.temporal_blend(*args, 0.2, 0.5)
    plane = lambda: np.full((H, W), np.nan, np.float32)  # noqa: E731
    out = (np.full((C, H, W), np.nan, np.float32), plane(), plane(), np.full(1, -7, np.int32))
    got = ops.temporal_blend(*args, 0.2, 0.5, out=out)
    assert all(g is o for g, o in zip(got, out))
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)
    with pytest.raises(ValueError, match="temporal_blend: argument 'out\\[1\\]' must"):
        ops.temporal_blend(*args, 0.2, 0.5, out=(out[0], np.empty((H + 1, W), np.float32), out[2], out[3]))
