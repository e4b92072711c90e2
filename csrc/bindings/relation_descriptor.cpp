// Binding of zsseg::relation_descriptor_{cpu,cuda}: validation happens here, once (see array_args.h).
#include "zsseg/relation_descriptor.h"
#include "array_args.h"
#include "registry.h"

namespace zsseg_py {
namespace {

std::string from_text(const ArrayArg& text) {
  return " (from 'text' " + text.shape_str() + ")";
}

void check_shapes(const ArgParser& args, const ArrayArg& text, const ArrayArg& global,
                  const std::optional<ArrayArg>& weight, const std::optional<ArrayArg>& bias) {
  const std::int64_t dim = text.dim(1);
  if (global.ndim() != 2 || global.dim(1) != dim) {
    args.fail_shape(global, "[B, D] with D=" + std::to_string(dim) + from_text(text));
  }
  if (weight && (weight->ndim() != 2 || weight->dim(1) != 2 * dim)) {
    args.fail_shape(*weight, "[Dout, 2D] with 2D=" + std::to_string(2 * dim) + from_text(text));
  }
  if (bias && (bias->ndim() != 1 || bias->dim(0) != weight->dim(0))) {
    args.fail_shape(
        *bias, "[Dout] with Dout=" + std::to_string(weight->dim(0)) + " (from 'weight' " + weight->shape_str() + ")");
  }
}

py::object relation_descriptor(py::handle text_obj, py::handle global_obj, py::handle weight_obj, py::handle bias_obj,
                               py::handle out_obj, std::int64_t stream) {
  ArgParser args("relation_descriptor", stream);
  const ArrayArg text = args.array("text", text_obj);  // [C, D]
  if (text.ndim() != 2) args.fail_shape(text, "[C, D]");
  const ArrayArg global = args.array("image_global", global_obj);                    // [B, D]
  const std::optional<ArrayArg> weight = args.optional_array("weight", weight_obj);  // [Dout, 2D]
  if (!weight && !bias_obj.is_none()) {
    args.fail_value("argument 'bias' was given without 'weight'; bias needs weight [Dout, 2D]");
  }
  const std::optional<ArrayArg> bias = args.optional_array("bias", bias_obj);  // [Dout]
  check_shapes(args, text, global, weight, bias);
  const ArrayArg* weight_ptr = weight ? &*weight : nullptr;
  const ArrayArg* bias_ptr = bias ? &*bias : nullptr;
  const Placement where = args.placement({&text, &global, weight_ptr, bias_ptr});
  args.require_same_type({&text, &global, weight_ptr, bias_ptr});

  zsseg::RelationDescriptorParams params;
  params.batch = global.dim(0);
  params.num_classes = text.dim(0);
  params.dim = text.dim(1);
  params.out_dim = weight ? weight->dim(0) : 2 * params.dim;
  params.dtype = to_kernel_dtype(text.type);
  params.text = text.data;
  params.image_global = global.data;
  params.weight = weight ? weight->data : nullptr;
  params.bias = bias ? bias->data : nullptr;
  Output out = args.output_or("output", "out", out_obj, {params.batch, params.num_classes, params.out_dim}, text.type,
                              where, {&text, &global, weight_ptr, bias_ptr});
  params.out = out.data;
  run_on_placement(args, where, params, &zsseg::relation_descriptor_cuda, &zsseg::relation_descriptor_cpu);
  return out.array;
}

}  // namespace

void register_relation_descriptor(py::module_& m) {
  m.def("relation_descriptor", &relation_descriptor, py::arg("text"), py::arg("image_global"),
        py::arg("weight") = py::none(), py::arg("bias") = py::none(), py::arg("out") = py::none(),
        py::arg("stream") = 0,
        "Linear(concat(text * g, text)) fused -> [B, C, Dout] (or [B, C, 2D] without weight). "
        "See zsseg_rt.ops.relation_descriptor.");
}

}  // namespace zsseg_py
