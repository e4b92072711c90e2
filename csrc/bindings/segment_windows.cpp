// Python binding of segment_windows: validation (shapes, window placement and coverage) then CPU or CUDA.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "registry.h"
#include "resize_args.h"
#include "window_args.h"
#include "zsseg/segment_windows.h"

#ifdef ZSSEG_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/segment_windows_testing.cuh"  // after the runtime (as testing.cpp): the process-wide kernel
#endif

namespace zsseg_py {
namespace {

std::vector<std::uint8_t> parse_class_drop(const ArgParser& args, py::handle class_drop_obj, bool softmax,
                                           std::int64_t labels_count) {
  std::vector<std::uint8_t> class_drop;
  if (class_drop_obj.is_none()) return class_drop;
  if (!softmax) args.fail_value("class_drop applies with softmax=True only");
  if (!py::isinstance<py::sequence>(class_drop_obj) || py::isinstance<py::str>(class_drop_obj)) {
    args.fail_type("class_drop must be a sequence of C booleans, got " +
                   py::str(py::type::of(class_drop_obj).attr("__name__")).cast<std::string>());
  }
  const py::handle np_bool = numpy_bool_type();
  for (py::handle item : sequence_items(class_drop_obj)) {  // the tuple lives until the loop ends
    if (!py::isinstance<py::bool_>(item) && !py::isinstance<py::int_>(item) && !py::isinstance(item, np_bool)) {
      args.fail_type("class_drop[" + std::to_string(class_drop.size()) + "] must be a bool, got " +
                     py::str(py::type::of(item).attr("__name__")).cast<std::string>());
    }
    class_drop.push_back(item.cast<bool>() ? 1 : 0);
  }
  if (static_cast<std::int64_t>(class_drop.size()) != labels_count) {
    args.fail_value("class_drop has " + std::to_string(class_drop.size()) + " entries, there are " +
                    std::to_string(labels_count) + " classes");
  }
  return class_drop;
}

// A validated segment_windows call: its arrays (the owners kept by the parser), the windows and the kernel's params.
struct SegmentWindowsCall {
  ArrayArg logits;
  std::optional<ArrayArg> bias, class_of;
  Placement where;
  std::vector<zsseg::WindowPlacement> windows;
  std::vector<std::uint8_t> class_drop;
  Output labels, scores;
  Output scratch;  // the kernel's device scratch (ordered_prebound's bounds), when it needs one
  zsseg::SegmentWindowsParams p;
  // p's host pointers into this object's own vectors (again after a move)
  void bind() {
    p.windows = windows.data();
    p.class_drop = class_drop.empty() ? nullptr : class_drop.data();
  }
};

// Everything segment_windows checks before it runs (see zsseg_rt.ops.segment_windows), in its order.
SegmentWindowsCall parse_call(const ArgParser& args, py::handle logits_obj, py::handle windows_obj,
                              py::handle head_size, py::handle scaled_size, py::handle output_size,
                              py::handle class_bias_obj, bool apply_sigmoid, bool softmax, double logit_scale,
                              py::handle class_drop_obj, py::handle class_of_obj, py::handle out_obj,
                              BiasCheck bias_check) {
  SegmentWindowsCall c;
  c.logits = args.array("logits", logits_obj);  // [n, C, h, w]
  const ArrayArg& logits = c.logits;
  if (logits.ndim() != 4) args.fail_shape(logits, "[n_windows, C, h, w] (4 dimensions)");
  if (!class_of_obj.is_none() && !softmax) args.fail_value("class_of applies with softmax=True only");
  std::int64_t labels_count = 0;
  std::tie(c.class_of, labels_count) = parse_class_map(args, class_of_obj, logits);  // [N] name -> class
  c.bias = parse_class_bias(args, class_bias_obj, logits, c.class_of ? labels_count : std::int64_t{-1}, bias_check);
  const std::optional<ArrayArg>& bias = c.bias;
  const std::optional<ArrayArg>& class_of = c.class_of;
  c.where = args.placement({&logits, bias ? &*bias : nullptr, class_of ? &*class_of : nullptr});
  const Placement where = c.where;
  const auto [head, scaled, out] = parse_window_sizes(args, head_size, scaled_size, output_size, "output_size");
  c.windows = parse_windows(args, windows_obj, scaled, head);
  const std::vector<zsseg::WindowPlacement>& windows = c.windows;
  if (static_cast<std::int64_t>(windows.size()) != logits.dim(0)) {
    args.fail_value("logits has " + std::to_string(logits.dim(0)) + " windows but " + std::to_string(windows.size()) +
                    " window placements were given");
  }
  if (!windows_cover(windows, scaled[0], scaled[1])) {
    args.fail_value("the windows do not cover the whole rescaled image " + tuple_str(scaled));
  }
  if (softmax && apply_sigmoid) args.fail_value("softmax=True needs sigmoid=False (the activations are exclusive)");
  if (!std::isfinite(logit_scale) || std::fabs(logit_scale) > 3.0e38)
    args.fail_value("logit_scale must be a finite float32 number, got " + std::to_string(logit_scale));
  if (!softmax && logit_scale != 1.0) args.fail_value("logit_scale applies with softmax=True only");
  c.class_drop = parse_class_drop(args, class_drop_obj, softmax, labels_count);
  if (where.is_cuda()) {  // CUDA-only refusals before any output is allocated
    if (windows.size() > 64) {
      args.fail_value("the CUDA path takes at most 64 windows (an image more elongated than ~25:1), got " +
                      std::to_string(windows.size()) + "; run it on the CPU");
    }
    if (!c.class_drop.empty()) {
      args.fail_value("class_drop (the area filter) runs on the CPU only; pass CPU logits, or no class_drop");
    }
  }
  const std::vector<std::int64_t> out_shape{out[0], out[1]};
  args.output_numel("scratch", {logits.dim(1), scaled[1], 3});  // per-thread scratch of the CPU path
  const auto outs = args.out_pair(out_obj, "labels", "scores");
  const ArrayArg* bias_arg = bias ? &*bias : nullptr;
  const ArrayArg* map_arg = class_of ? &*class_of : nullptr;
  c.labels =
      args.output_or("labels", "out[0]", outs.first, out_shape, ElemType::Int32, where, {&logits, bias_arg, map_arg});
  c.scores = args.output_or("scores", "out[1]", outs.second, out_shape, ElemType::Float32, where,
                            {&logits, bias_arg, map_arg});
  args.require_disjoint(c.labels, "out[0]", c.scores, "out[1]");
  zsseg::SegmentWindowsParams& p = c.p;
  p.logits = logits.data;
  p.num_windows = logits.dim(0);
  p.classes = logits.dim(1);
  p.in_height = logits.dim(2);
  p.in_width = logits.dim(3);
  p.head_height = head[0], p.head_width = head[1];
  p.scaled_height = scaled[0], p.scaled_width = scaled[1];
  p.out_height = out[0], p.out_width = out[1];
  p.class_bias = bias ? bias->ptr<float>() : nullptr;
  p.apply_sigmoid = apply_sigmoid;
  p.softmax = softmax;
  p.logit_scale = static_cast<float>(logit_scale);
  p.class_of = class_of ? class_of->ptr<std::int32_t>() : nullptr;
  p.labels_count = labels_count;
  p.labels = c.labels.ptr<std::int32_t>();
  p.scores = c.scores.ptr<float>();
  if (where.is_cuda()) p.dtype = to_kernel_dtype(logits.type);
  c.bind();
  return c;
}

// The kernel an op call runs: the process-wide one (segment_windows_testing::set_variant), read once per call into
// SegmentWindowsParams::kernel (its scratch and its launch agree); -1 in a build without CUDA.
std::int32_t process_wide_kernel() {
#ifdef ZSSEG_WITH_CUDA
  return static_cast<std::int32_t>(zsseg::segment_windows_testing::variant());
#else
  return -1;
#endif
}

// Allocates on the call's device the scratch `kernel` needs for this call (ordered_prebound: 2 floats per logit),
// if any: an op call's per call, a plan's once (its launches reuse it; never while a stream is being captured).
void attach_scratch(const ArgParser& args, SegmentWindowsCall& c, std::int32_t kernel) {
  const std::int64_t floats = zsseg::segment_windows_scratch_floats(c.p, kernel);
  if (!c.where.is_cuda() || floats == 0) return;
  c.scratch = args.output("scratch", {floats}, ElemType::Float32, c.where);
  c.p.scratch = c.scratch.ptr<float>();
  c.p.scratch_floats = floats;
}

// Runs a parsed call: the CUDA launch (its status checked by `args` when given: an op call's completion event and
// owners; a plan checks the status itself) or the CPU kernel without the GIL.
zsseg::CudaStatus run_call(const SegmentWindowsCall& c, const ArgParser& args, zsseg::Stream stream) {
  if (c.where.is_cuda()) {
    CudaDeviceGuard guard(c.where);
    return zsseg::segment_windows_cuda(c.p, stream);
  }
  bool covered = true;
  {
    py::gil_scoped_release release;
    covered = zsseg::segment_windows_cpu(c.p);
  }
  if (!covered) args.fail_value("the windows do not cover the whole rescaled image");
  return 0;
}

py::tuple segment_windows(py::handle logits_obj, py::handle windows_obj, py::handle head_size, py::handle scaled_size,
                          py::handle output_size, py::handle class_bias_obj, bool apply_sigmoid, bool softmax,
                          double logit_scale, py::handle class_drop_obj, py::handle class_of_obj, py::handle out_obj,
                          std::int64_t stream) {
  ArgParser args("segment_windows", stream);
  SegmentWindowsCall c =
      parse_call(args, logits_obj, windows_obj, head_size, scaled_size, output_size, class_bias_obj, apply_sigmoid,
                 softmax, logit_scale, class_drop_obj, class_of_obj, out_obj, BiasCheck::Device);
  // the process-wide kernel read once: the scratch is allocated for the kernel this call launches, whatever
  // another thread sets in between
  c.p.kernel = process_wide_kernel();
  attach_scratch(args, c, c.p.kernel);
  const zsseg::CudaStatus status = run_call(c, args, args.stream());
  if (c.where.is_cuda()) {
    CudaDeviceGuard guard(c.where);
    args.check_launch(status);
  }
  return py::make_tuple(c.labels.array, c.scores.array);
}

// A prepared segment_windows launch (zsseg_rt.ops.SegmentWindowsPlan): the arguments validated once, the kernel's
// params kept, and launch() one call into the launcher: no parsing, no DLPack export, no device-side bias check, no
// completion event, no keep-alive list. Ordering is the caller's: every producer and consumer of the plan's arrays
// works on the launch stream (a pipeline's one stream), which is why DeviceArrays (ordered by their own events) are
// refused. The plan owns its arrays' references; when it goes, they are kept until its last launch has run (one
// pooled event, re-recorded after each launch: the stream may be gone by then).
// `kernel` (None or a name of zsseg::kSegmentWindowsKernels): the CUDA sigmoid path's kernel of every launch of
// this plan; None: the process-wide one at each launch (segment_windows_testing::set_variant).
class SegmentWindowsPlan {
 public:
  SegmentWindowsPlan(py::handle logits, py::handle windows, py::handle head_size, py::handle scaled_size,
                     py::handle output_size, py::handle class_bias, bool apply_sigmoid, py::handle out,
                     std::int64_t stream, bool bias_checked, py::handle kernel)
      : args_("SegmentWindowsPlan", stream), stream_(stream) {
    const std::int32_t kernel_index = parse_kernel(kernel);
    for (py::handle arg : {logits, class_bias}) refuse_device_array(arg);
    if (out.is_none()) args_.fail_value("argument 'out' must be given: a plan writes into (labels, scores) it keeps");
    if (py::isinstance<py::tuple>(out) || py::isinstance<py::list>(out)) {
      const py::tuple items = sequence_items(out);
      for (py::handle item : items) {
        if (item.is_none())
          args_.fail_value(
              "argument 'out' must hold both arrays (labels, scores): a plan allocates "
              "nothing");
        refuse_device_array(item);
      }
    }
    call_ = parse_call(args_, logits, windows, head_size, scaled_size, output_size, class_bias, apply_sigmoid, false,
                       1.0, py::none(), py::none(), out, bias_checked ? BiasCheck::Caller : BiasCheck::ReadBack);
    call_.p.kernel = kernel_index;
    // kernel None: the process-wide one at each launch, which may be ordered_prebound by then
    attach_scratch(args_, call_, kernel_index >= 0 ? kernel_index : zsseg::kSegmentWindowsPreboundKernel);
    owners_ = {call_.logits.keep_alive, call_.labels.array, call_.scores.array};
    if (call_.scratch.array) owners_.push_back(call_.scratch.array);
    if (call_.bias) owners_.push_back(call_.bias->keep_alive);
  }
  ~SegmentWindowsPlan() {
    if (marked_) keep_until_marker(std::move(owners_), marker_, last_stream_);
  }
  SegmentWindowsPlan(const SegmentWindowsPlan&) = delete;
  SegmentWindowsPlan& operator=(const SegmentWindowsPlan&) = delete;

  // Enqueue the kernel on `stream` (-1: the plan's own), or run it on the CPU. Captured like any launch when the
  // stream is being captured into a CUDA graph.
  void launch(std::int64_t stream) {
    if (stream < -1) args_.fail_value("stream must be a cudaStream_t as an int, or -1 for the plan's own stream");
    if (stream == -1) stream = stream_;
    if (!call_.where.is_cuda() && stream != 0) args_.fail_value("stream must be 0 for a plan on the CPU");
    const bool cuda = call_.where.is_cuda();
    const bool captured = cuda && stream_is_capturing(stream);  // then the graph's owner keeps what it reads
    zsseg::CudaStatus status =
        run_call(call_, args_, reinterpret_cast<zsseg::Stream>(static_cast<std::uintptr_t>(stream)));
    if (cuda && !captured) {  // the marker the plan's arrays are kept until, when it goes (one pooled event)
      if (!marker_) marker_ = launch_marker();
      CudaDeviceGuard guard(call_.where);
      const int recorded = record_launch_marker(marker_, stream, call_.where.device_id);
      if (status == 0) status = recorded;
      marked_ = true;
      last_stream_ = stream;
    }
    if (status != 0) {
      throw std::runtime_error("SegmentWindowsPlan.launch: CUDA error " + std::to_string(status) + " (" +
                               zsseg::cuda_error_string(status) + ")");
    }
  }
  py::tuple out() const { return py::make_tuple(call_.labels.array, call_.scores.array); }
  std::int64_t stream() const { return stream_; }
  py::object kernel() const {
    if (call_.p.kernel < 0) return py::none();
    return py::str(zsseg::kSegmentWindowsKernels[call_.p.kernel]);
  }

 private:
  std::int32_t parse_kernel(py::handle kernel) const {
    if (kernel.is_none()) return -1;
    std::string names;
    for (int k = 0; k < zsseg::kSegmentWindowsKernelCount; ++k) {
      names += (k ? ", " : "") + std::string(zsseg::kSegmentWindowsKernels[k]);
    }
    if (!py::isinstance<py::str>(kernel)) {
      args_.fail_type("kernel must be None or one of " + names + ", got " +
                      py::str(py::type::of(kernel).attr("__name__")).cast<std::string>());
    }
    const std::string wanted = kernel.cast<std::string>();
    for (int k = 0; k < zsseg::kSegmentWindowsKernelCount; ++k) {
      if (wanted == zsseg::kSegmentWindowsKernels[k]) return k;
    }
    args_.fail_value("kernel must be None or one of " + names + ", got '" + wanted + "'");
    return -1;
  }
  void refuse_device_array(py::handle arg) const {
    if (!arg.is_none() && py::isinstance<DeviceArray>(arg)) {
      args_.fail_type(
          "a plan takes arrays its caller orders on the launch stream (torch tensors, CUDA buffers, NumPy "
          "arrays), not a DeviceArray (ordered by its own events): pass it to zsseg_rt.ops.segment_windows");
    }
  }
  ArgParser args_;
  std::int64_t stream_;
  SegmentWindowsCall call_;
  std::vector<py::object> owners_;
  std::shared_ptr<void> marker_;  // stream_order::ReadyEvent, recorded after each launch outside a capture
  bool marked_ = false;
  std::int64_t last_stream_ = 0;
};

}  // namespace

void register_segment_windows(py::module_& m) {
  py::class_<SegmentWindowsPlan>(m, "SegmentWindowsPlan",
                                 "A prepared segment_windows launch (sigmoid family); see "
                                 "zsseg_rt.ops.SegmentWindowsPlan.")
      .def(py::init<py::handle, py::handle, py::handle, py::handle, py::handle, py::handle, bool, py::handle,
                    std::int64_t, bool, py::handle>(),
           py::arg("logits"), py::arg("windows"), py::arg("head_size"), py::arg("scaled_size"), py::arg("output_size"),
           py::arg("class_bias") = py::none(), py::arg("sigmoid") = true, py::arg("out") = py::none(),
           py::arg("stream") = 0, py::arg("bias_checked") = false, py::arg("kernel") = py::none())
      .def("launch", &SegmentWindowsPlan::launch, py::arg("stream") = -1)
      .def_property_readonly("out", &SegmentWindowsPlan::out)
      .def_property_readonly("stream", &SegmentWindowsPlan::stream)
      .def_property_readonly("kernel", &SegmentWindowsPlan::kernel);
  m.def(
      "segment_windows_kernels",
      [] {
        py::list names;
        for (const char* name : zsseg::kSegmentWindowsKernels) names.append(name);
        return names;
      },
      "The CUDA sigmoid path's kernel candidates of segment_windows by name (the first is the default): what "
      "SegmentWindowsPlan(kernel=...) takes.");
  m.def("segment_windows", &segment_windows, py::arg("logits"), py::arg("windows"), py::arg("head_size"),
        py::arg("scaled_size"), py::arg("output_size"), py::arg("class_bias") = py::none(), py::arg("sigmoid") = true,
        py::arg("softmax") = false, py::arg("logit_scale") = 1.0, py::arg("class_drop") = py::none(),
        py::arg("class_of") = py::none(), py::arg("out") = py::none(), py::arg("stream") = 0,
        "The official exact multi-window post-processing fused: (labels [H, W] int32, scores [H, W] float32); "
        "see zsseg_rt.ops.segment_windows.");
}

}  // namespace zsseg_py
