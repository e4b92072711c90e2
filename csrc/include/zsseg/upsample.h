// Bilinear resize of a logit map, torch's F.interpolate(mode="bilinear", align_corners=False), with an
// optional crop of the valid region and an optional fused calibration (reference:
// zsseg_rt/ops/reference.py::upsample):
//   out[b, c, y, x] = f(bilinear(input)[b, c, y, x]) - class_bias[c]
// with f = logistic sigmoid when apply_sigmoid, else identity, and no bias term when class_bias is nullptr.
// Without calibration the result is bit-for-bit the plain resize.
#pragma once
#include "zsseg/bilinear.h"
#include "zsseg/common.h"

namespace zsseg {

struct UpsampleParams {
  const void* input = nullptr;        // [batch, channels, in_height, in_width], contiguous, `dtype`
  void* output = nullptr;             // [batch, channels, out_height, out_width], contiguous, `dtype`
  DType dtype = DType::Float32;       // element type of input and output (Float16: CUDA only); math is fp32
  ResizeGeometry geometry;            // sizes and crop, validated by the caller (crop inside the map, sizes > 0)
  bool apply_sigmoid = false;         // f = sigmoid (fp32; CPU: vectorised approximation, abs error < 1e-7)
  const float* class_bias = nullptr;  // [channels] float32 on the input's device, or nullptr (no bias)
};

// CPU (OpenMP over output rows, calibration fused into the same pass). Float32 only.
void upsample_cpu(const UpsampleParams& params);
// CUDA: input/output are device pointers; asynchronous on `stream`. Returns 0 or the cudaError_t.
CudaStatus upsample_cuda(const UpsampleParams& params, Stream stream);

}  // namespace zsseg
