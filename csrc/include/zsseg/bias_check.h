// Device-side finiteness check of a class bias: instead of copying the bias to the host and waiting
// for it on every call, a one-block kernel enqueued on the launch stream writes the first non-finite class into
// an int the host reads once the launch's completion event has passed (page-locked, mapped memory: no copy, no
// wait). The binding reports it later (DeviceArray.numpy(), the next op call, or _C.check_pending_errors()).
#pragma once
#include <cstdint>

#include "zsseg/common.h"

namespace zsseg {

// Result encoding: kBiasAllFinite, or class * 4 + kind (kind: 0 NaN, 1 +inf, 2 -inf) of the FIRST bad class.
constexpr std::int32_t kBiasAllFinite = -1;
constexpr std::int32_t kBiasNotChecked = -2;  // what the host writes before the launch

struct BiasCheckParams {
  const float* bias = nullptr;     // [classes], device memory
  std::int64_t classes = 0;        // 1 .. 2^29 (the encoding needs 4 * classes < 2^31)
  std::int32_t* result = nullptr;  // device-writable (mapped host memory)
};

ZS_HD std::int32_t encode_bad_class(std::int64_t index, float value) {
  const std::int32_t kind = value != value ? 0 : (value > 0.0f ? 1 : 2);
  return static_cast<std::int32_t>(index * 4 + kind);
}
inline const char* bad_class_kind(std::int32_t code) {
  return code % 4 == 0 ? "NaN" : (code % 4 == 1 ? "inf" : "-inf");
}

CudaStatus bias_check_cuda(const BiasCheckParams& params, Stream stream);

}  // namespace zsseg
