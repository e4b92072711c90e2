// Binding of zsseg::pamr_{cpu,cuda}: validation here, once (see array_args.h), then the CPU or CUDA launcher.
#include <string>
#include <vector>

#include "array_args.h"
#include "registry.h"
#include "zsseg/pamr.h"

namespace zsseg_py {
namespace {

constexpr std::int64_t kMaxIterations = 10000;
constexpr std::int64_t kMaxDilation = 1 << 20;

std::string type_name_of(py::handle obj) {
  return py::str(py::type::of(obj).attr("__name__")).cast<std::string>();
}

// `dilations`: a non-empty sequence of at most kPamrMaxDilations ints, each in 1..kMaxDilation.
std::vector<std::int32_t> parse_dilations(const ArgParser& args, py::handle obj) {
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj)) {
    args.fail_type("argument 'dilations' must be a sequence of ints (e.g. (8, 16)), got " + type_name_of(obj));
  }
  const py::tuple items = sequence_items(obj);  // counted as iterated: the count below bounds p.dilations[]
  const std::size_t n = items.size();
  if (n < 1 || n > static_cast<std::size_t>(zsseg::kPamrMaxDilations)) {
    args.fail_value("argument 'dilations' must hold 1.." + std::to_string(zsseg::kPamrMaxDilations) + " values, got " +
                    std::to_string(n));
  }
  std::vector<std::int32_t> out;
  std::size_t i = 0;
  for (py::handle item : items) {  // owned by the tuple
    std::int64_t d = 0;
    bool overflow = false;
    if (!index_int64(item, &d, &overflow)) {  // Python or NumPy integers, never bool or float
      args.fail_type("argument 'dilations' must hold ints, got " + type_name_of(item) + " at position " +
                     std::to_string(i + 1));  // counted from 1, as a person counts
    }
    if (overflow || d < 1 || d > kMaxDilation) {
      args.fail_value("argument 'dilations' values must be in 1.." + std::to_string(kMaxDilation) + ", got " +
                      (overflow ? std::string("a value outside int64") : std::to_string(d)) + " at position " +
                      std::to_string(i + 1));
    }
    out.push_back(static_cast<std::int32_t>(d));
    ++i;
  }
  return out;
}

void require_float32(const ArgParser& args, const ArrayArg& arg) {
  if (arg.type != ElemType::Float32) {
    args.fail_type("argument '" + arg.name + "' must be float32 (PAMR computes in float32), got " + arg.type_name);
  }
}

py::object pamr(py::handle mask_obj, py::handle image_obj, std::int64_t iterations, py::handle dilations_obj,
                py::handle out_obj, std::int64_t stream) {
  ArgParser args("pamr", stream);
  const ArrayArg mask = args.array("mask", mask_obj);  // [B, C, H, W]
  if (mask.ndim() != 4) args.fail_shape(mask, "[B, C, H, W] (4 dimensions)");
  const ArrayArg image = args.array("image", image_obj);  // [B, K, H, W]
  if (image.ndim() != 4 || image.dim(0) != mask.dim(0) || image.dim(2) != mask.dim(2) || image.dim(3) != mask.dim(3)) {
    args.fail_shape(image, "[B, K, H, W] with B, H, W of 'mask' " + mask.shape_str() +
                               " (resize the mask to the image size first)");
  }
  require_float32(args, mask);
  require_float32(args, image);
  if (iterations < 1 || iterations > kMaxIterations) {
    args.fail_value("argument 'iterations' must be in 1.." + std::to_string(kMaxIterations) + ", got " +
                    std::to_string(iterations));
  }
  const std::vector<std::int32_t> dilations = parse_dilations(args, dilations_obj);
  const Placement where = args.placement({&mask, &image});

  zsseg::PamrParams p;
  p.mask = mask.ptr<float>();
  p.image = image.ptr<float>();
  p.batch = mask.dim(0);
  p.classes = mask.dim(1);
  p.channels = image.dim(1);
  p.height = mask.dim(2);
  p.width = mask.dim(3);
  p.num_dilations = static_cast<int>(dilations.size());
  for (std::size_t i = 0; i < dilations.size(); ++i) p.dilations[i] = dilations[i];
  p.iterations = static_cast<int>(iterations);
  if (where.is_cuda() && args.capturing()) {  // before any allocation, so the capture stays valid
    args.fail_value(
        "on CUDA it allocates its workspaces (weights, scratch) on every call, which a CUDA graph capture cannot "
        "contain; run pamr outside the capture");
  }
  const std::int64_t neighbours = 8 * static_cast<std::int64_t>(dilations.size());
  args.output_numel("weights (workspace)", {p.batch, neighbours, p.height, p.width});  // before any allocation
  Output out = args.output_or("output", "out", out_obj, {p.batch, p.classes, p.height, p.width}, ElemType::Float32,
                              where, {&mask, &image});
  p.output = out.ptr<float>();
  Output weights, scratch;
  if (where.is_cuda()) {
    // workspaces: stream-ordered device allocations, freed after the launch's completion event
    weights = args.output("weights (workspace)", {p.batch, neighbours, p.height, p.width}, ElemType::Float32, where);
    p.weights = weights.ptr<float>();
    if (iterations > 1) {
      scratch = args.output("scratch (workspace)", {p.batch, p.classes, p.height, p.width}, ElemType::Float32, where);
      p.scratch = scratch.ptr<float>();
    }
  }
  run_on_placement(args, where, p, &zsseg::pamr_cuda, &zsseg::pamr_cpu);
  return out.array;
}

}  // namespace

void register_pamr(py::module_& m) {
  m.def("pamr", &pamr, py::arg("mask"), py::arg("image"), py::arg("iterations") = 10,
        py::arg("dilations") = py::make_tuple(8, 16), py::arg("out") = py::none(), py::arg("stream") = 0,
        "Pixel-adaptive mask refinement of mask [B, C, H, W] guided by image [B, K, H, W]; see zsseg_rt.ops.pamr.");
}

}  // namespace zsseg_py
