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
  const ArrayArg logits = args.array("logits", logits_obj);  // [B, C, h, w]
  if (logits.ndim() != 4) args.fail_shape(logits, "[B, C, h, w] (4 dimensions)");
  const std::optional<ArrayArg> bias = parse_class_bias(args, class_bias_obj, logits);  // [C]
  const Placement where = args.placement({&logits, bias ? &*bias : nullptr});
  const zsseg::ResizeGeometry g = parse_resize_geometry(args, logits, size, crop);
  const std::vector<std::int64_t> out_shape{g.batch, g.out_height, g.out_width};
  const auto outs = args.out_pair(out_obj, "labels", "scores");
  const ArrayArg* bias_arg = bias ? &*bias : nullptr;
  Output labels =
      args.output_or("labels", "out[0]", outs.first, out_shape, ElemType::Int32, where, {&logits, bias_arg});
  Output scores =
      args.output_or("scores", "out[1]", outs.second, out_shape, ElemType::Float32, where, {&logits, bias_arg});
  args.require_disjoint(labels, "out[0]", scores, "out[1]");
  zsseg::SegmentParams params;
  params.logits = logits.data;
  params.class_bias = bias ? bias->ptr<float>() : nullptr;
  params.apply_sigmoid = apply_sigmoid;
  params.labels = labels.ptr<std::int32_t>();
  params.scores = scores.ptr<float>();
  params.geometry = g;
  if (where.is_cuda()) {
    params.dtype = to_kernel_dtype(logits.type);
    CudaDeviceGuard guard(where);
    args.check_launch(zsseg::segment_cuda(params, args.stream()));
  } else {
    py::gil_scoped_release release;
    zsseg::segment_cpu(params);
  }
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
