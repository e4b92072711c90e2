// Fused upsample + optional sigmoid + per-class bias + argmax over classes
// (reference: zsseg_rt/ops/reference.py::segment). No [batch, classes, out_height, out_width] buffer exists:
// the CPU kernel keeps O(classes * crop_width) scratch per thread, the CUDA kernel O(1) per pixel.
#pragma once
#include "zsseg/bilinear.h"
#include "zsseg/common.h"

namespace zsseg {

struct SegmentParams {
  const void* logits = nullptr;       // [batch, classes, in_height, in_width], contiguous, `dtype`
  DType dtype = DType::Float32;       // Float16 logits: CUDA only; math is fp32 (CPU exact step: fp64)
  const float* class_bias = nullptr;  // [classes] float32, finite, or nullptr (no bias)
  bool apply_sigmoid = true;          // calibrated value = (sigmoid ? sigmoid(x) : x) - class_bias[c]
  int32_t* labels = nullptr;          // [batch, out_height, out_width] argmax (torch tie / NaN rules)
  float* scores = nullptr;            // [batch, out_height, out_width] winning calibrated value (NaN if NaN won)
  ResizeGeometry geometry;            // channels = classes; validated by the caller
};

// CPU (OpenMP over output rows). Float32 only.
void segment_cpu(const SegmentParams& params);
// CUDA: all pointers are device pointers; asynchronous on `stream`. Returns 0 or the cudaError_t.
CudaStatus segment_cuda(const SegmentParams& params, Stream stream);

}  // namespace zsseg
