"""The official exact multi-window post-processing as one native op (no [C, H, W] buffer of any size)."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from ._arrays import as_native_array, resolve_stream
from ._loader import native_module


def segment_windows(
    logits: Any,
    windows: Sequence[Sequence[int]],
    head_size: Sequence[int],
    scaled_size: Sequence[int],
    output_size: Sequence[int],
    class_bias: Any = None,
    sigmoid: Optional[bool] = None,
    stream: Optional[int] = None,
    out: Optional[Sequence[Any]] = None,
    softmax: bool = False,
    logit_scale: float = 1.0,
    class_drop: Any = None,
    class_of: Any = None,
) -> Tuple[Any, Any]:
    """Sliding-window scores -> labels, in the official order, fused.

    For window ``k`` at ``(y1, y2, x1, x2)`` of the rescaled image: its logits are resized bilinearly
    (``align_corners=False``) to ``head_size``, calibrated (``sigmoid`` -> minus ``class_bias``) and cut to the
    window's extent (the window's graph input was zero-padded to the head size); overlapping windows are
    averaged; the average is resized bilinearly to ``output_size``; the argmax over classes follows
    ``torch.argmax`` (lowest index on ties, the first NaN class wins with score NaN). This is exactly
    ``pipeline.calibrated_window_scores`` -> ``pipeline.merge_windows`` -> ``pipeline.finalize_scores`` (the CPU
    path uses the same per-element arithmetic, so labels and scores are the unfused path's), with memory
    O(classes x scaled width) per thread instead of O(classes x scaled height x scaled width).

    Args:
        logits: ``[n, C, h, w]`` per-window mask logits, float32 (CPU) or float32/float16 (CUDA), C-contiguous.
        windows: ``n`` placements ``(y1, y2, x1, x2)`` (``pipeline.sliding_windows``); together they must cover
            the rescaled image; each at most ``head_size``.
        head_size: ``(S, S)`` the size every window's logits are resized to (the model's image size).
        scaled_size: ``(H', W')`` the rescaled image the windows tile.
        output_size: ``(H, W)`` the original image size.
        class_bias: ``[C]`` float32 on the logits' device, finite, or None.
            On CUDA the check runs on the device without a host wait and the ValueError comes once the launch
            has finished: from ``numpy()`` of an output, from the next op call, or from
            ``native_module().check_pending_errors()``.
        sigmoid: calibrate with the logistic function (ZegCLIP family; the default unless ``softmax``); False
            averages raw values.
        stream: the CUDA stream of the launch (:mod:`zsseg_rt.ops`, "stream"); 0/None for CPU inputs.
        out: optional preallocated ``(labels, scores)``: ``[H, W]`` int32 and float32 (:mod:`zsseg_rt.ops`, "out").
        softmax: the training-free family's order instead (SCLIP/MaskCLIP slide inference +
            ``pipeline.softmax_segment``): raw window logits averaged, ``* logit_scale``, resized to
            ``output_size``, softmax over classes per pixel, the probability of each ``class_drop`` class set to
            0 (SCLIP's area filter; CPU only), minus ``class_bias``, argmax. Scores are that winning value
            (probability minus bias). A pixel with a NaN logit or an infinite max gets label 0 and score NaN (the
            softmax is all NaN there; torch's argmax of all-NaN is 0). No ``[C, H, W]`` buffer either.
        logit_scale: softmax only: multiplies the averaged logits before the resize.
        class_drop: softmax only: one boolean per class, True = probability 0 (CPU only).
        class_of: softmax only: synonyms. ``[N]`` int32 on the logits' device: the class of each of the logits'
            ``N`` rows, which are then names; names grouped by class in class order (``class_of[0] = 0``, each next
            entry equal to the previous or one more). The softmax runs over the names, a class's probability is the
            max over its names' probabilities (the training-free methods' official rule), and ``class_drop``,
            ``class_bias``, labels and scores are per class. Still no ``[C, H, W]`` buffer. A CUDA map is read back
            to be checked (one synchronisation of ``N`` ints).
    Returns:
        ``(labels [H, W] int32, scores [H, W] float32)``: NumPy arrays, or ``DeviceArray`` for CUDA inputs.
    """
    if isinstance(out, (tuple, list)):
        for i, item in enumerate(out):
            as_native_array(item, "segment_windows", f"out[{i}]")
    return native_module().segment_windows(
        as_native_array(logits, "segment_windows", "logits"),
        windows.tolist() if hasattr(windows, "tolist") else windows,
        head_size,
        scaled_size,
        output_size,
        class_bias=as_native_array(class_bias, "segment_windows", "class_bias"),
        sigmoid=(not softmax) if sigmoid is None else bool(sigmoid),
        softmax=bool(softmax),
        logit_scale=float(logit_scale),
        class_drop=_plain_flags(class_drop),
        class_of=as_native_array(class_of, "segment_windows", "class_of"),
        out=out,
        stream=resolve_stream(stream, "segment_windows", logits, class_bias, out),
    )


class SegmentWindowsPlan:
    """A prepared :func:`segment_windows` launch (the sigmoid family's post-processing), for a caller that runs it
    with the same arrays frame after frame (the device pipeline): every argument is validated once, here, and
    :meth:`launch` is one call into the kernel's launcher: no argument parsing, no DLPack export, no device-side
    ``class_bias`` check, no completion event, nothing kept alive per call.

    The ordering is the caller's: every producer and consumer of the plan's arrays must work on the launch stream
    (or be ordered with it by the caller), as in a pipeline that enqueues everything on one stream. So
    ``DeviceArray`` arguments, which carry their own events, are refused (use :func:`segment_windows`). The plan
    holds references to its arrays; when it goes, a launched plan keeps them until its last stream has run what was
    enqueued (one event then). A launch while the stream is being captured is captured into the graph like any
    other; the arrays must then outlive the graph (their owner's job).

    Args:
        logits, windows, head_size, scaled_size, output_size, class_bias, sigmoid: as :func:`segment_windows`.
        out: ``(labels [H, W] int32, scores [H, W] float32)`` on the logits' device: required (a plan never
            allocates).
        stream: the launch stream of :meth:`launch` (:mod:`zsseg_rt.ops`, "stream"; None: torch's current stream for
            torch CUDA tensors, else 0).
        bias_checked: the caller checked ``class_bias`` on the host (finite; where it made it): a CUDA bias is then
            not checked here. False: a CUDA bias is read back and checked once, now (one synchronisation).
        kernel: the CUDA sigmoid path's kernel of every launch, one of :func:`segment_windows_kernels` (the device
            pipeline's choice: ``Engine(postprocess_kernel=...)``); None (default): the process-wide one at each
            launch (``_C._testing.segment_windows_variant``, the first name unless a test set another). Every kernel
            gives the op's results up to fp32 rounding; ignored on the CPU (one kernel there).
    Raises:
        TypeError / ValueError: as :func:`segment_windows` would for these arguments, plus a missing ``out`` or a
            ``DeviceArray`` argument.
    """

    def __init__(
        self,
        logits: Any,
        windows: Sequence[Sequence[int]],
        head_size: Sequence[int],
        scaled_size: Sequence[int],
        output_size: Sequence[int],
        out: Sequence[Any],
        class_bias: Any = None,
        sigmoid: bool = True,
        stream: Optional[int] = None,
        bias_checked: bool = False,
        kernel: Optional[str] = None,
    ):
        op = "SegmentWindowsPlan"
        if not isinstance(out, (tuple, list)):
            raise TypeError(
                f"{op}: argument 'out' must be a tuple (labels, scores) of two arrays, got {type(out).__name__}"
            )
        outs = tuple(as_native_array(item, op, f"out[{i}]") for i, item in enumerate(out))
        self._plan = native_module().SegmentWindowsPlan(
            as_native_array(logits, op, "logits"),
            windows.tolist() if hasattr(windows, "tolist") else windows,
            head_size,
            scaled_size,
            output_size,
            class_bias=as_native_array(class_bias, op, "class_bias"),
            sigmoid=bool(sigmoid),
            out=outs,
            stream=resolve_stream(stream, op, logits, class_bias, out),
            bias_checked=bool(bias_checked),
            kernel=kernel,
        )
        #: ``launch(stream=-1)``: enqueue the kernel (or run it on the CPU); -1 = the plan's stream.
        self.launch = self._plan.launch
        self.out = tuple(out)
        self.stream = self._plan.stream
        #: the kernel it names (None: the process-wide one at each launch)
        self.kernel: Optional[str] = self._plan.kernel


def segment_windows_kernels() -> List[str]:
    """The CUDA sigmoid path's kernel candidates of :func:`segment_windows` by name, the default first: what
    ``SegmentWindowsPlan(kernel=...)`` takes and the device pipeline chooses among (``Engine(postprocess_kernel=
    ...)``; docs/gpu.md, "Post-processing candidates")."""
    return [str(name) for name in native_module().segment_windows_kernels()]


def _plain_flags(flags: Any) -> Any:
    """``class_drop`` as Python objects for the binding (a NumPy array, or a sequence holding NumPy scalars such as
    ``np.bool_``, becomes a list of Python bools/ints); anything else is passed on for the binding to refuse."""
    if flags is None or isinstance(flags, (str, bytes)):
        return flags
    if hasattr(flags, "tolist"):
        return flags.tolist()
    try:
        return [item.item() if hasattr(item, "item") and hasattr(item, "dtype") else item for item in flags]
    except TypeError:
        return flags
