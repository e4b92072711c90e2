// Parsing of the `size`, `crop` and `class_bias` arguments shared by the upsample and segment bindings.
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "array_args.h"
#ifdef ZSSEG_WITH_CUDA
#include <cuda_runtime.h>
#endif
#include "zsseg/bilinear.h"

namespace zsseg_py {

// A tuple/list of exactly `count` Python ints (named `what` in messages), else TypeError/ValueError.
inline std::vector<std::int64_t> parse_int_tuple(const ArgParser& args, py::handle obj, const char* name,
                                                 std::size_t count, const char* layout) {
  const std::string expected =
      std::string("argument '") + name + "' must be a tuple of " + std::to_string(count) + " ints " + layout + ", got ";
  if (!py::isinstance<py::tuple>(obj) && !py::isinstance<py::list>(obj)) {
    args.fail_type(expected + py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  }
  const py::tuple items = sequence_items(obj);  // counted as iterated (see sequence_items); the tuple owns the items
  if (items.size() != count) args.fail_value(expected + py::repr(obj).cast<std::string>());
  std::vector<std::int64_t> values;
  for (py::handle item : items) {
    std::int64_t value = 0;
    bool overflow = false;
    if (!index_int64(item, &value, &overflow)) args.fail_type(expected + py::repr(obj).cast<std::string>());
    if (overflow) args.fail_value(expected + py::repr(obj).cast<std::string>() + " (out of the int64 range)");
    values.push_back(value);
  }
  return values;
}

inline std::string tuple_str(const std::vector<std::int64_t>& v) {
  std::string s = "(";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + ")";
}

// Geometry of logits [B, C, h, w] resized to `size` = (H, W), optionally cropped to
// `crop` = (top, left, height, width), which must lie inside the h x w map.
inline zsseg::ResizeGeometry parse_resize_geometry(const ArgParser& args, const ArrayArg& logits, py::handle size,
                                                   py::handle crop) {
  zsseg::ResizeGeometry g;
  g.batch = logits.dim(0), g.channels = logits.dim(1), g.in_height = logits.dim(2), g.in_width = logits.dim(3);
  const std::vector<std::int64_t> out_size = parse_int_tuple(args, size, "size", 2, "(H, W)");
  if (out_size[0] < 1 || out_size[1] < 1) {
    args.fail_value("argument 'size' must be (H, W) with H >= 1 and W >= 1, got " + tuple_str(out_size));
  }
  g.out_height = out_size[0], g.out_width = out_size[1];
  g.crop_height = g.in_height, g.crop_width = g.in_width;
  if (crop.is_none()) return g;
  const std::vector<std::int64_t> box = parse_int_tuple(args, crop, "crop", 4, "(top, left, height, width)");
  const bool inside = box[0] >= 0 && box[1] >= 0 && box[2] >= 1 && box[3] >= 1 && box[0] <= g.in_height - box[2] &&
                      box[1] <= g.in_width - box[3];
  if (!inside) {
    args.fail_value(
        "argument 'crop' (top, left, height, width) must have top, left >= 0, height, width >= 1 and "
        "lie inside the logits map of size h x w = " +
        std::to_string(g.in_height) + " x " + std::to_string(g.in_width) + ", got " + tuple_str(box));
  }
  g.crop_top = box[0], g.crop_left = box[1], g.crop_height = box[2], g.crop_width = box[3];
  return g;
}

#ifdef ZSSEG_WITH_CUDA
// The first host.size() elements of the CUDA array `array` (argument `name`) into `host`: copied on the launch stream
// (ordered after the array's producer) and waited for without the GIL; a failure is a ValueError.
template <class T>
void read_back(const ArgParser& args, const char* name, const ArrayArg& array, std::vector<T>& host) {
  CudaDeviceGuard guard(array.place);
  const auto stream = static_cast<cudaStream_t>(args.stream());
  cudaError_t status =
      cudaMemcpyAsync(host.data(), array.ptr<T>(), host.size() * sizeof(T), cudaMemcpyDeviceToHost, stream);
  if (status == cudaSuccess) {
    py::gil_scoped_release release;
    status = cudaStreamSynchronize(stream);
  }
  if (status != cudaSuccess) {
    args.fail_value(std::string("argument '") + name + "': cannot read it from the GPU: " + cudaGetErrorString(status));
  }
}
#endif

// class_bias: [C] float32 (C-contiguous, checked by ArgParser) or None. The caller puts it in the same
// placement() call as the logits (same device). Every value must be finite (NaN and +/-inf are refused, naming
// the first bad class): with infinite biases whole groups of classes tie at +/-inf, where the fused CPU argmax
// and the per-class CUDA argmax would not pick the same label. To drop a class, leave it out of the vocabulary.
// A host (NumPy) bias is checked here, before anything runs. A CUDA bias is checked on the device without a
// host wait (zsseg/bias_check.h): a one-block kernel on the launch stream, before the op's kernel, writes the
// first bad class into mapped pinned memory, and the ValueError comes once the launch has finished -- from
// DeviceArray.numpy() of an output, from the next op call, or from _C.check_pending_errors() (like CUDA's own
// asynchronous errors). Only when no check slot is free (1024 launches in flight) is it read back blocking.
// `logits` is the op's [.., C, ..] input: the bias must have its C entries and live on its device (checked here,
// before any device-side work, so a bias on another GPU gets the one-line mixed-device error).
// `classes` (segment_windows with a name -> class map): the bias has one entry per class, not per logits row.
// How a CUDA class_bias is checked: on the device after the launch (an op call), read back to the host now (a plan,
// once), or not at all (the caller checked it on the host where it made it: a plan with bias_checked=True). A host
// bias is always checked here.
enum class BiasCheck { Device, ReadBack, Caller };

inline std::optional<ArrayArg> parse_class_bias(const ArgParser& args, py::handle obj, const ArrayArg& logits,
                                                std::int64_t classes = -1, BiasCheck check = BiasCheck::Device) {
  const bool per_row = classes < 0;
  if (per_row) classes = logits.dim(1);
  std::optional<ArrayArg> bias = args.optional_array("class_bias", obj);
  if (!bias) return bias;
  if (bias->ndim() != 1 || bias->dim(0) != classes) {
    args.fail_shape(*bias, "[C] = [" + std::to_string(classes) + "] (one bias per class of " +
                               (per_row ? "logits)" : "class_of: the number of classes)"));
  }
  if (bias->type != ElemType::Float32) {
    args.fail_type("argument 'class_bias' must be float32, got " + bias->type_name);
  }
  args.placement({&logits, &*bias});  // same device as the logits, before anything runs there
  std::vector<float> host;
  const float* values = bias->ptr<float>();
  if (bias->place.is_cuda()) {
#ifdef ZSSEG_WITH_CUDA
    if (check == BiasCheck::Caller) return bias;
    if (check == BiasCheck::ReadBack && args.capturing()) {
      args.fail_value(
          "argument 'class_bias' on CUDA is read back to the host to be checked, which a CUDA graph capture cannot "
          "contain; make the plan outside the capture, or pass bias_checked=True for a bias checked on the host");
    }
    if (check == BiasCheck::Device && args.check_bias_on_device(*bias)) return bias;  // reported after the launch
    // Fallback: read back on the launch stream (ordered after the bias' producer), without the GIL while waiting.
    host.resize(static_cast<std::size_t>(classes));
    read_back(args, "class_bias", *bias, host);
    values = host.data();
#endif
  }
  for (std::int64_t c = 0; c < classes; ++c) {
    if (!std::isfinite(values[c])) {
      args.fail_value("argument 'class_bias' must be finite, got " +
                      std::string(std::isnan(values[c]) ? "NaN" : (values[c] > 0 ? "inf" : "-inf")) + " at class " +
                      std::to_string(c) + " (to drop a class, leave it out of the vocabulary)");
    }
  }
  return bias;
}

// The inputs upsample and segment share, validated in this order: logits [B, C, h, w], class_bias (see
// parse_class_bias), the device they are both on, and the geometry of the resize to `size` within `crop`.
struct ResizeInputs {
  ArrayArg logits;
  std::optional<ArrayArg> bias;
  Placement where;
  zsseg::ResizeGeometry geometry;
  const ArrayArg* bias_arg() const { return bias ? &*bias : nullptr; }
};
inline ResizeInputs parse_resize_inputs(const ArgParser& args, py::handle logits_obj, py::handle class_bias_obj,
                                        py::handle size, py::handle crop) {
  ResizeInputs in;
  in.logits = args.array("logits", logits_obj);  // [B, C, h, w]
  if (in.logits.ndim() != 4) args.fail_shape(in.logits, "[B, C, h, w] (4 dimensions)");
  in.bias = parse_class_bias(args, class_bias_obj, in.logits);  // [C]
  in.where = args.placement({&in.logits, in.bias_arg()});
  in.geometry = parse_resize_geometry(args, in.logits, size, crop);
  return in;
}

// class_of (segment_windows, softmax): [N] int32 name -> class map, C-contiguous, on the logits' device (N = the
// logits' rows). Names are grouped by class in class order: class_of[0] = 0, each next entry equal to the previous
// or one more. Returns the map (or nullopt) and the number of classes (N without a map). A CUDA map is read back
// on the launch stream to be checked (a synchronisation of N ints; the runtime's softmax path runs on the host).
inline std::pair<std::optional<ArrayArg>, std::int64_t> parse_class_map(const ArgParser& args, py::handle obj,
                                                                        const ArrayArg& logits) {
  const std::int64_t names = logits.dim(1);
  std::optional<ArrayArg> map = args.optional_int32_array("class_of", obj);
  if (!map) return {map, names};
  if (map->ndim() != 1 || map->dim(0) != names) {
    args.fail_shape(*map, "[N] = [" + std::to_string(names) + "] (the class of every name row of logits)");
  }
  args.placement({&logits, &*map});
  std::vector<std::int32_t> host;
  const std::int32_t* values = map->ptr<std::int32_t>();
  if (map->place.is_cuda()) {
#ifdef ZSSEG_WITH_CUDA
    if (args.capturing()) {  // the read-back below is a host synchronisation: illegal in a capture
      args.fail_value(
          "argument 'class_of' on CUDA is read back to the host to be checked, which a CUDA graph capture cannot "
          "contain; call segment_windows with a CUDA class_of outside the capture");
    }
    host.resize(static_cast<std::size_t>(names));
    read_back(args, "class_of", *map, host);
    values = host.data();
#endif
  }
  for (std::int64_t n = 0; n < names; ++n) {
    const std::int64_t expected_max = n == 0 ? 0 : static_cast<std::int64_t>(values[n - 1]) + 1;
    const std::int64_t expected_min = n == 0 ? 0 : static_cast<std::int64_t>(values[n - 1]);
    if (values[n] < expected_min || values[n] > expected_max) {
      args.fail_value(
          "argument 'class_of' must group the names by class in class order (class_of[0] = 0, each "
          "next entry equal to the previous or one more), got " +
          std::to_string(values[n]) + " at name " + std::to_string(n) +
          (n == 0 ? "" : " after " + std::to_string(values[n - 1])));
    }
  }
  return {map, static_cast<std::int64_t>(values[names - 1]) + 1};
}

}  // namespace zsseg_py
