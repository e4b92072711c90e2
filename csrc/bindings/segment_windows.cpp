// Python binding of segment_windows: validation (shapes, window placement and coverage) then CPU or CUDA.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "registry.h"
#include "resize_args.h"
#include "zsseg/segment_windows.h"

namespace zsseg_py {
namespace {

constexpr std::int64_t kMaxSide = 1 << 20;

// True when the windows cover every pixel of the height x width image (sweep over the row bands).
bool windows_cover(const std::vector<zsseg::WindowPlacement>& windows, std::int64_t height, std::int64_t width) {
  std::vector<std::int64_t> cuts{0, height};
  for (const auto& w : windows) cuts.push_back(w.y1), cuts.push_back(w.y2);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  for (std::size_t b = 0; b + 1 < cuts.size(); ++b) {
    const std::int64_t y = cuts[b];
    if (y >= height) break;
    std::vector<std::pair<std::int64_t, std::int64_t>> spans;
    for (const auto& w : windows) {
      if (w.y1 <= y && y < w.y2) spans.emplace_back(w.x1, w.x2);
    }
    std::sort(spans.begin(), spans.end());
    std::int64_t reach = 0;
    for (const auto& s : spans) {
      if (s.first > reach) return false;
      reach = std::max(reach, s.second);
    }
    if (reach < width) return false;
  }
  return true;
}

std::int64_t positive(const ArgParser& args, std::int64_t v, const std::string& what) {
  if (v < 1 || v > kMaxSide)
    args.fail_value(what + " must be in 1.." + std::to_string(kMaxSide) + ", got " + std::to_string(v));
  return v;
}

py::tuple segment_windows(py::handle logits_obj, py::handle windows_obj, py::handle head_size, py::handle scaled_size,
                          py::handle output_size, py::handle class_bias_obj, bool apply_sigmoid, bool softmax,
                          double logit_scale, py::handle class_drop_obj, py::handle class_of_obj, py::handle out_obj,
                          std::int64_t stream) {
  ArgParser args("segment_windows", stream);
  const ArrayArg logits = args.array("logits", logits_obj);  // [n, C, h, w]
  if (logits.ndim() != 4) args.fail_shape(logits, "[n_windows, C, h, w] (4 dimensions)");
  if (!class_of_obj.is_none() && !softmax) args.fail_value("class_of applies with softmax=True only");
  const auto [class_of, labels_count] = parse_class_map(args, class_of_obj, logits);  // [N] name -> class
  const std::optional<ArrayArg> bias =
      parse_class_bias(args, class_bias_obj, logits, class_of ? labels_count : std::int64_t{-1});
  const Placement where = args.placement({&logits, bias ? &*bias : nullptr, class_of ? &*class_of : nullptr});
  const auto head = parse_int_tuple(args, head_size, "head_size", 2, "(height, width)");
  const auto scaled = parse_int_tuple(args, scaled_size, "scaled_size", 2, "(height, width)");
  const auto out = parse_int_tuple(args, output_size, "output_size", 2, "(height, width)");
  for (int i = 0; i < 2; ++i) {
    positive(args, head[i], "head_size");
    positive(args, scaled[i], "scaled_size");
    positive(args, out[i], "output_size");
  }
  if (!py::isinstance<py::sequence>(windows_obj) || py::isinstance<py::str>(windows_obj)) {
    args.fail_type("windows must be a sequence of (y1, y2, x1, x2), got " +
                   py::str(py::type::of(windows_obj).attr("__name__")).cast<std::string>());
  }
  std::vector<zsseg::WindowPlacement> windows;
  for (py::handle item : sequence_items(windows_obj)) {  // the tuple lives until the loop ends
    const std::string name = "windows[" + std::to_string(windows.size()) + "]";
    const auto w = parse_int_tuple(args, item, name.c_str(), 4, "(y1, y2, x1, x2)");
    if (w[0] < 0 || w[1] > scaled[0] || w[0] >= w[1] || w[2] < 0 || w[3] > scaled[1] || w[2] >= w[3] ||
        w[1] - w[0] > head[0] || w[3] - w[2] > head[1]) {
      args.fail_value(name + " = " + tuple_str(w) + " must lie inside the rescaled image " + tuple_str(scaled) +
                      " and be at most the head size " + tuple_str(head));
    }
    windows.push_back({static_cast<std::int32_t>(w[0]), static_cast<std::int32_t>(w[1]),
                       static_cast<std::int32_t>(w[2]), static_cast<std::int32_t>(w[3])});
  }
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
  std::vector<std::uint8_t> class_drop;
  if (!class_drop_obj.is_none()) {
    if (!softmax) args.fail_value("class_drop applies with softmax=True only");
    if (!py::isinstance<py::sequence>(class_drop_obj) || py::isinstance<py::str>(class_drop_obj)) {
      args.fail_type("class_drop must be a sequence of C booleans, got " +
                     py::str(py::type::of(class_drop_obj).attr("__name__")).cast<std::string>());
    }
    const py::object np_bool = py::module_::import("numpy").attr("bool_");
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
  }
  if (where.is_cuda()) {  // CUDA-only refusals before any output is allocated
    if (windows.size() > 64) {
      args.fail_value("the CUDA path takes at most 64 windows (an image more elongated than ~25:1), got " +
                      std::to_string(windows.size()) + "; run it on the CPU");
    }
    if (!class_drop.empty()) {
      args.fail_value("class_drop (the area filter) runs on the CPU only; pass CPU logits, or no class_drop");
    }
  }
  const std::vector<std::int64_t> out_shape{out[0], out[1]};
  args.output_numel("scratch", {logits.dim(1), scaled[1], 3});  // per-thread scratch of the CPU path
  const auto outs = args.out_pair(out_obj, "labels", "scores");
  const ArrayArg* bias_arg = bias ? &*bias : nullptr;
  const ArrayArg* map_arg = class_of ? &*class_of : nullptr;
  Output labels =
      args.output_or("labels", "out[0]", outs.first, out_shape, ElemType::Int32, where, {&logits, bias_arg, map_arg});
  Output scores = args.output_or("scores", "out[1]", outs.second, out_shape, ElemType::Float32, where,
                                 {&logits, bias_arg, map_arg});
  args.require_disjoint(labels, "out[0]", scores, "out[1]");
  zsseg::SegmentWindowsParams p;
  p.logits = logits.data;
  p.num_windows = logits.dim(0);
  p.classes = logits.dim(1);
  p.in_height = logits.dim(2);
  p.in_width = logits.dim(3);
  p.windows = windows.data();
  p.head_height = head[0], p.head_width = head[1];
  p.scaled_height = scaled[0], p.scaled_width = scaled[1];
  p.out_height = out[0], p.out_width = out[1];
  p.class_bias = bias ? bias->ptr<float>() : nullptr;
  p.apply_sigmoid = apply_sigmoid;
  p.softmax = softmax;
  p.logit_scale = static_cast<float>(logit_scale);
  p.class_drop = class_drop.empty() ? nullptr : class_drop.data();
  p.class_of = class_of ? class_of->ptr<std::int32_t>() : nullptr;
  p.labels_count = labels_count;
  p.labels = labels.ptr<std::int32_t>();
  p.scores = scores.ptr<float>();
  if (where.is_cuda()) {
    p.dtype = to_kernel_dtype(logits.type);
    CudaDeviceGuard guard(where);
    args.check_launch(zsseg::segment_windows_cuda(p, args.stream()));
  } else {
    bool covered = true;
    {
      py::gil_scoped_release release;
      covered = zsseg::segment_windows_cpu(p);
    }
    if (!covered) args.fail_value("the windows do not cover the whole rescaled image");
  }
  return py::make_tuple(labels.array, scores.array);
}

}  // namespace

void register_segment_windows(py::module_& m) {
  m.def("segment_windows", &segment_windows, py::arg("logits"), py::arg("windows"), py::arg("head_size"),
        py::arg("scaled_size"), py::arg("output_size"), py::arg("class_bias") = py::none(), py::arg("sigmoid") = true,
        py::arg("softmax") = false, py::arg("logit_scale") = 1.0, py::arg("class_drop") = py::none(),
        py::arg("class_of") = py::none(), py::arg("out") = py::none(), py::arg("stream") = 0,
        "The official exact multi-window post-processing fused: (labels [H, W] int32, scores [H, W] float32); "
        "see zsseg_rt.ops.segment_windows.");
}

}  // namespace zsseg_py
