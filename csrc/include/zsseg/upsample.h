// Bilinear resize of a logit map, torch's F.interpolate(mode="bilinear", align_corners=False), with an
// optional crop of the valid region (reference: zsseg_rt/ops/reference.py::upsample).
#pragma once
#include "zsseg/bilinear.h"
#include "zsseg/common.h"

namespace zsseg {

struct UpsampleParams {
  const void* input = nullptr;  // [batch, channels, in_height, in_width], contiguous, `dtype`
  void* output = nullptr;       // [batch, channels, out_height, out_width], contiguous, `dtype`
  DType dtype = DType::Float32;  // element type of input and output (Float16: CUDA only); math is fp32
  ResizeGeometry geometry;       // sizes and crop, validated by the caller (crop inside the map, sizes > 0)
};

// CPU (OpenMP over output rows). Float32 only.
void upsample_cpu(const UpsampleParams& params);
// CUDA: input/output are device pointers; asynchronous on `stream`. Returns 0 or the cudaError_t.
CudaStatus upsample_cuda(const UpsampleParams& params, Stream stream);

}  // namespace zsseg
