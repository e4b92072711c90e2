// Python binding of segment: validation through array_args.h, then the CPU or CUDA launcher.
#include <optional>

#include "registry.h"
#include "resize_args.h"
#include "zsseg/segment.h"

namespace zsseg_py {
namespace {

py::tuple segment(py::handle logits_obj, py::handle size, py::handle class_bias_obj, bool apply_sigmoid,
                  py::handle crop, py::handle out_obj, std::int64_t stream) {
  ArgParser args("segment", stream);
  const ResizeInputs in = parse_resize_inputs(args, logits_obj, class_bias_obj, size, crop);
  const ArrayArg& logits = in.logits;    // [B, C, h, w]
  const ArrayArg* bias = in.bias_arg();  // [C] or nullptr
  const Placement& where = in.where;
  const zsseg::ResizeGeometry& g = in.geometry;
  const std::vector<std::int64_t> out_shape{g.batch, g.out_height, g.out_width};
  const auto outs = args.out_pair(out_obj, "labels", "scores");
  Output labels = args.output_or("labels", "out[0]", outs.first, out_shape, ElemType::Int32, where, {&logits, bias});
  Output scores = args.output_or("scores", "out[1]", outs.second, out_shape, ElemType::Float32, where, {&logits, bias});
  args.require_disjoint(labels, "out[0]", scores, "out[1]");
  zsseg::SegmentParams params;
  params.logits = logits.data;
  params.class_bias = bias != nullptr ? bias->ptr<float>() : nullptr;
  params.apply_sigmoid = apply_sigmoid;
  params.labels = labels.ptr<std::int32_t>();
  params.scores = scores.ptr<float>();
  params.geometry = g;
  if (where.is_cuda()) params.dtype = to_kernel_dtype(logits.type);
  run_on_placement(args, where, params, &zsseg::segment_cuda, &zsseg::segment_cpu);
  return py::make_tuple(labels.array, scores.array);
}

}  // namespace

void register_segment(py::module_& m) {
  m.def("segment", &segment, py::arg("logits"), py::arg("size"), py::arg("class_bias") = py::none(),
        py::arg("sigmoid") = true, py::arg("crop") = py::none(), py::arg("out") = py::none(), py::arg("stream") = 0,
        "Fused upsample + sigmoid + class bias + argmax: (labels [B, H, W] int32, scores [B, H, W] float32); "
        "see zsseg_rt.ops.segment.");
}

}  // namespace zsseg_py
