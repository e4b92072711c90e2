// Binding of zsseg::similarity_{cpu,cuda}: validation happens here, once (see array_args.h).
#include "zsseg/similarity.h"
#include "array_args.h"
#include "registry.h"

namespace zsseg_py {
namespace {

// Checks text against patches [B, N, D]; returns whether text is batched ([B, C, D]).
bool check_text_shape(const ArgParser& args, const ArrayArg& patches, const ArrayArg& text) {
  const std::int64_t batch = patches.dim(0), dim = patches.dim(2);
  if (text.ndim() == 2 && text.dim(1) == dim) return false;
  if (text.ndim() == 3 && text.dim(0) == batch && text.dim(2) == dim) return true;
  args.fail_shape(text, "[C, D] or [B, C, D] with B=" + std::to_string(batch) + ", D=" + std::to_string(dim) +
                            " (from 'patches' " + patches.shape_str() + ")");
}

py::object similarity(py::handle patches_obj, py::handle text_obj, bool normalize, double scale, py::handle out_obj,
                      std::int64_t stream) {
  ArgParser args("similarity", stream);
  const ArrayArg patches = args.array("patches", patches_obj);  // [B, N, D]
  if (patches.ndim() != 3) args.fail_shape(patches, "[B, N, D]");
  const ArrayArg text = args.array("text", text_obj);  // [C, D] or [B, C, D]
  const bool text_batched = check_text_shape(args, patches, text);
  const Placement where = args.placement({&patches, &text});
  args.require_same_type({&patches, &text});

  zsseg::SimilarityParams params;
  params.batch = patches.dim(0);
  params.num_patches = patches.dim(1);
  params.dim = patches.dim(2);
  params.num_classes = text.dim(text.ndim() - 2);
  params.text_batched = text_batched;
  params.normalize = normalize;
  params.scale = static_cast<float>(scale);
  params.dtype = to_kernel_dtype(patches.type);
  params.patches = patches.data;
  params.text = text.data;
  Output out = args.output_or("output", "out", out_obj, {params.batch, params.num_classes, params.num_patches},
                              patches.type, where, {&patches, &text});
  params.out = out.data;
  run_on_placement(args, where, params, &zsseg::similarity_cuda, &zsseg::similarity_cpu);
  return out.array;
}

}  // namespace

void register_similarity(py::module_& m) {
  m.def("similarity", &similarity, py::arg("patches"), py::arg("text"), py::arg("normalize") = false,
        py::arg("scale") = 1.0, py::arg("out") = py::none(), py::arg("stream") = 0,
        "scale * <text_c, patch_n> -> [B, C, N]; patches [B, N, D], text [C, D] or [B, C, D]. "
        "See zsseg_rt.ops.similarity.");
}

}  // namespace zsseg_py
