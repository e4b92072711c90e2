// Binding of zsseg::warp_{cpu,cuda}: validation here, once (see array_args.h), then the CPU or CUDA launcher.
#include <string>

#include "array_args.h"
#include "registry.h"
#include "zsseg/warp.h"

namespace zsseg_py {
namespace {

void require_float32(const ArgParser& args, const ArrayArg& arg) {
  if (arg.type != ElemType::Float32) {
    args.fail_type("argument '" + arg.name + "' must be float32, got " + arg.type_name);
  }
}

py::object warp(py::handle values_obj, py::handle flow_obj, bool nearest, py::handle out_obj, std::int64_t stream) {
  ArgParser args("warp", stream);
  const ArrayArg values = args.array("values", values_obj);  // [B, C, H, W]
  if (values.ndim() != 4) args.fail_shape(values, "[B, C, H, W] (4 dimensions)");
  const ArrayArg flow = args.array("flow", flow_obj);  // [B, H, W, 2]
  if (flow.ndim() != 4 || flow.dim(0) != values.dim(0) || flow.dim(1) != values.dim(2) ||
      flow.dim(2) != values.dim(3) || flow.dim(3) != 2) {
    args.fail_shape(flow,
                    "[B, H, W, 2] with B, H, W of 'values' " + values.shape_str() + " (one (dx, dy) per output pixel)");
  }
  require_float32(args, values);
  require_float32(args, flow);
  const Placement where = args.placement({&values, &flow});

  zsseg::WarpParams p;
  p.values = values.ptr<float>();
  p.flow = flow.ptr<float>();
  p.batch = values.dim(0);
  p.channels = values.dim(1);
  p.height = values.dim(2);
  p.width = values.dim(3);
  p.nearest = nearest;
  Output out = args.output_or("output", "out", out_obj, {p.batch, p.channels, p.height, p.width}, ElemType::Float32,
                              where, {&values, &flow});
  p.output = out.ptr<float>();
  run_on_placement(args, where, p, &zsseg::warp_cuda, &zsseg::warp_cpu);
  return out.array;
}

}  // namespace

void register_warp(py::module_& m) {
  m.def("warp", &warp, py::arg("values"), py::arg("flow"), py::arg("nearest") = false, py::arg("out") = py::none(),
        py::arg("stream") = 0,
        "values [B, C, H, W] sampled at x + flow [B, H, W, 2] (bilinear or nearest, border replicated); see "
        "zsseg_rt.ops.warp.");
}

}  // namespace zsseg_py
