// Python binding of preprocess: validation through array_args.h, then the CPU or CUDA launcher (in chunks of
// kPreprocessMaxWindows windows).
#include <cmath>
#include <string>
#include <vector>

#include <algorithm>

#include "array_args.h"
#include "registry.h"
#include "zsseg/preprocess.h"

namespace zsseg_py {
namespace {

constexpr std::int64_t kMaxSide = 1 << 16;  // rescaled sides beyond this are refused (the pipeline caps them)

// An int (Python or NumPy integer, not bool), else TypeError naming its type; out of int64 -> ValueError.
std::int64_t int_item(const ArgParser& args, py::handle item, const std::string& what) {
  std::int64_t value = 0;
  bool overflow = false;
  if (!index_int64(item, &value, &overflow)) {
    args.fail_type(what + " must be an int, got " + std::string(py::str(py::type::of(item).attr("__name__"))));
  }
  if (overflow) args.fail_value(what + " is out of the int64 range");
  return value;
}

std::vector<std::int64_t> int_tuple(const ArgParser& args, py::handle obj, std::size_t n, const std::string& what) {
  const std::string expected = what + " must be a sequence of " + std::to_string(n) + " ints, got ";
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj)) {
    args.fail_value(expected + std::string(py::str(py::repr(obj))));
  }
  const py::tuple items = sequence_items(obj);  // counted as iterated (see sequence_items)
  if (items.size() != n) args.fail_value(expected + std::string(py::str(py::repr(obj))));
  std::vector<std::int64_t> out;
  for (py::handle item : items) out.push_back(int_item(args, item, what));
  return out;
}

void float3(const ArgParser& args, py::handle obj, const char* what, float* out, bool positive) {
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj)) {
    args.fail_value(std::string(what) + " must be 3 numbers (R, G, B), got " + std::string(py::str(py::repr(obj))));
  }
  const py::tuple items = sequence_items(obj);  // counted as iterated: the count bounds out[0..2]
  if (items.size() != 3) {
    args.fail_value(std::string(what) + " must be 3 numbers (R, G, B), got " + std::string(py::str(py::repr(obj))));
  }
  int i = 0;
  for (py::handle item : items) {
    if (PyBool_Check(item.ptr()) || !PyNumber_Check(item.ptr())) {
      args.fail_type(std::string(what) + " must be 3 numbers (R, G, B), got " + std::string(py::str(py::repr(obj))));
    }
    const double v = py::float_(py::reinterpret_borrow<py::object>(item)).cast<double>();
    if (!std::isfinite(v) || (positive && !(v > 0.0))) {
      args.fail_value(std::string(what) + " must be finite" + (positive ? " and > 0" : "") + ", got " +
                      std::string(py::str(py::repr(obj))));
    }
    out[i++] = static_cast<float>(v);
  }
}

py::object preprocess(py::handle image_obj, py::handle scaled_size, py::handle windows_obj, std::int64_t crop,
                      py::handle mean, py::handle std_dev, const std::string& color_order, const std::string& dtype,
                      py::handle out_obj, std::int64_t stream) {
  ArgParser args("preprocess", stream);
  const ArrayArg image = args.uint8_array("image", image_obj);  // [H, W] or [H, W, C]
  if (image.ndim() != 2 && image.ndim() != 3) args.fail_shape(image, "[H, W, C] with C in {1, 3, 4}, or [H, W]");
  const std::int64_t channels = image.ndim() == 3 ? image.dim(2) : 1;
  if (channels != 1 && channels != 3 && channels != 4) args.fail_shape(image, "[H, W, C] with C in {1, 3, 4}");
  if (image.dim(0) > kMaxSide * 4 || image.dim(1) > kMaxSide * 4) args.fail_shape(image, "sides <= 262144");
  if (color_order != "bgr" && color_order != "rgb") {
    args.fail_value("color_order must be 'bgr' or 'rgb', got '" + color_order + "'");
  }
  if (dtype != "float32" && dtype != "float16")
    args.fail_value("dtype must be 'float32' or 'float16', got '" + dtype + "'");
  const std::vector<std::int64_t> scaled = int_tuple(args, scaled_size, 2, "scaled_size (height, width)");
  if (scaled[0] < 1 || scaled[1] < 1 || scaled[0] > kMaxSide || scaled[1] > kMaxSide) {
    args.fail_value("scaled_size must be in 1.." + std::to_string(kMaxSide) + " per side, got (" +
                    std::to_string(scaled[0]) + ", " + std::to_string(scaled[1]) + ")");
  }
  if (crop < 1 || crop > 8192) args.fail_value("crop must be in 1..8192, got " + std::to_string(crop));
  if (!py::isinstance<py::sequence>(windows_obj) || py::isinstance<py::str>(windows_obj)) {
    args.fail_value("windows must be a non-empty sequence of (y1, y2, x1, x2)");
  }
  const py::tuple window_items = sequence_items(windows_obj);
  if (window_items.size() == 0) args.fail_value("windows must be a non-empty sequence of (y1, y2, x1, x2)");
  std::vector<zsseg::PreprocessWindow> windows;
  for (py::handle item : window_items) {
    const std::string what = "windows[" + std::to_string(windows.size()) + "]";
    const std::vector<std::int64_t> w = int_tuple(args, item, 4, what + " (y1, y2, x1, x2)");
    if (w[0] < 0 || w[1] > scaled[0] || w[0] >= w[1] || w[2] < 0 || w[3] > scaled[1] || w[2] >= w[3] ||
        w[1] - w[0] > crop || w[3] - w[2] > crop) {
      args.fail_value(what + " = (" + std::to_string(w[0]) + ", " + std::to_string(w[1]) + ", " + std::to_string(w[2]) +
                      ", " + std::to_string(w[3]) + ") must lie inside the rescaled image " +
                      std::to_string(scaled[0]) + "x" + std::to_string(scaled[1]) + " and be at most " +
                      std::to_string(crop) + " per side");
    }
    windows.push_back({static_cast<std::int32_t>(w[0]), static_cast<std::int32_t>(w[1]),
                       static_cast<std::int32_t>(w[2]), static_cast<std::int32_t>(w[3])});
  }
  zsseg::PreprocessParams params;
  float3(args, mean, "mean", params.mean, false);
  float3(args, std_dev, "std", params.std, true);
  const Placement where = args.placement({&image});
  const ElemType out_type = dtype == "float16" ? ElemType::Float16 : ElemType::Float32;
  if (out_type == ElemType::Float16 && !where.is_cuda()) args.fail_type("dtype 'float16' is supported on CUDA only");
  const std::vector<std::int64_t> shape = {static_cast<std::int64_t>(windows.size()), 3, crop, crop};
  args.output_numel("output", shape);
  const Output out = args.output_or("output", "out", out_obj, shape, out_type, where, {&image});
  const py::object result = out.array;
  void* data = out.data;
  params.image = image.ptr<std::uint8_t>();
  params.in_height = static_cast<std::int32_t>(image.dim(0));
  params.in_width = static_cast<std::int32_t>(image.dim(1));
  params.in_channels = static_cast<std::int32_t>(channels);
  params.bgr = color_order == "bgr";
  params.scaled_height = static_cast<std::int32_t>(scaled[0]);
  params.scaled_width = static_cast<std::int32_t>(scaled[1]);
  params.crop = static_cast<std::int32_t>(crop);
  params.dtype = out_type == ElemType::Float16 ? zsseg::DType::Float16 : zsseg::DType::Float32;
  const std::size_t item = elem_size(out_type);
  const std::size_t per_window = static_cast<std::size_t>(3 * crop * crop) * item;
  CudaDeviceGuard guard(where);
  for (std::size_t start = 0; start < windows.size(); start += zsseg::kPreprocessMaxWindows) {
    const std::size_t count = std::min<std::size_t>(zsseg::kPreprocessMaxWindows, windows.size() - start);
    params.num_windows = static_cast<std::int32_t>(count);
    for (std::size_t i = 0; i < count; ++i) params.windows[i] = windows[start + i];
    params.output = static_cast<char*>(data) + start * per_window;
    if (where.is_cuda()) {
      args.check_launch(zsseg::preprocess_cuda(params, args.stream()));
    } else {
      py::gil_scoped_release release;
      zsseg::preprocess_cpu(params);
    }
  }
  return result;
}

}  // namespace

void register_preprocess(py::module_& m) {
  m.def("preprocess", &preprocess, py::arg("image"), py::arg("scaled_size"), py::arg("windows"), py::arg("crop"),
        py::arg("mean"), py::arg("std"), py::arg("color_order") = "bgr", py::arg("dtype") = "float32",
        py::arg("out") = py::none(), py::arg("stream") = 0,
        "uint8 image -> keep-ratio rescale (OpenCV INTER_LINEAR arithmetic) -> normalise -> window crops "
        "[n, 3, crop, crop]; see zsseg_rt.ops.preprocess.");
}

}  // namespace zsseg_py
