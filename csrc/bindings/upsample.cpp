// Python binding of upsample: validation through array_args.h, then the CPU or CUDA launcher.
#include <optional>

#include "registry.h"
#include "resize_args.h"
#include "zsseg/upsample.h"

namespace zsseg_py {
namespace {

py::object upsample(py::handle logits_obj, py::handle size, py::handle crop, bool apply_sigmoid,
                    py::handle class_bias_obj, py::handle out_obj, std::int64_t stream) {
  ArgParser args("upsample", stream);
  const ResizeInputs in = parse_resize_inputs(args, logits_obj, class_bias_obj, size, crop);
  const ArrayArg& logits = in.logits;    // [B, C, h, w]
  const ArrayArg* bias = in.bias_arg();  // [C] or nullptr
  const Placement& where = in.where;
  const zsseg::ResizeGeometry& g = in.geometry;
  Output out = args.output_or("output", "out", out_obj, {g.batch, g.channels, g.out_height, g.out_width}, logits.type,
                              where, {&logits, bias});
  zsseg::UpsampleParams params;
  params.input = logits.data;
  params.output = out.data;
  params.dtype = zsseg::DType::Float32;
  params.geometry = g;
  params.apply_sigmoid = apply_sigmoid;
  params.class_bias = bias != nullptr ? bias->ptr<float>() : nullptr;
  if (where.is_cuda()) params.dtype = to_kernel_dtype(logits.type);
  run_on_placement(args, where, params, &zsseg::upsample_cuda, &zsseg::upsample_cpu);
  return out.array;
}

}  // namespace

void register_upsample(py::module_& m) {
  m.def("upsample", &upsample, py::arg("logits"), py::arg("size"), py::arg("crop") = py::none(),
        py::arg("sigmoid") = false, py::arg("class_bias") = py::none(), py::arg("out") = py::none(),
        py::arg("stream") = 0,
        "Bilinear resize (torch align_corners=False) of [B, C, h, w] to [B, C, H, W], optionally followed by "
        "sigmoid and minus a per-class bias in the same pass; see zsseg_rt.ops.upsample.");
}

}  // namespace zsseg_py
