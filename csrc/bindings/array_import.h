// array_import.h: what the array importers share: array_args.cpp (NumPy, __cuda_array_interface__, DeviceArray, the
// checks) and dlpack_import.cpp (__dlpack__). Private to csrc/bindings; the contract is array_args.h's.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "array_args.h"

namespace zsseg_py::detail {

// An array as described by its producer, before the op-independent checks.
struct RawArray {
  const void* data = nullptr;
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> byte_strides;  // empty = C-contiguous by contract
  ElemType type = ElemType::Other;
  std::string type_name;
  Placement place;
  py::object keep_alive;
  bool readonly = false;
  const char* via = "";                    // "numpy", "__dlpack__", "__cuda_array_interface__"
  std::optional<std::int64_t> cai_stream;  // stream to order after (CAI "stream" entry; 1 = legacy when absent)
  bool device_from_pointer = false;        // the device id comes from the pointer (CAI, DLPack kDLCUDAHost)
};

// The name of obj's Python type ("ndarray").
std::string python_type_name(py::handle obj);
// "BufferError: message" without pybind11's appended traceback.
std::string error_text(py::error_already_set& err);
// An object with __dlpack__ / __dlpack_device__, exported for the launch stream of `p` (see dlpack_import.cpp).
RawArray from_dlpack(py::handle obj, const ArgParser& p, const char* name);

}  // namespace zsseg_py::detail
