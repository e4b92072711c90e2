// CUDA fused upsample + calibration + argmax: one thread per output pixel loops over the classes, so no
// [B, C, H, W] buffer exists. fp32 math; the calibrated values are compared in fp32 (the CPU kernel
// re-checks near-ties in fp64, so the two may differ only where two classes are within fp32 rounding).
#include "resize_common.cuh"
#include "zsseg/segment.h"

namespace zsseg {
namespace {

using cuda_detail::bilinear_at;

// Two classes whose fp32 calibrated values are equal (e.g. sigmoid saturated to exactly 1.0 above ~16.6): does
// the later one (raw value v, bias b) win? As segment_cpu: within a group of equal bias the larger raw value wins
// (f is increasing), across groups the fp64 calibrated values decide; on a full tie the lower index stays.
__device__ __forceinline__ bool calibrated_tie_better(float v, float b, float best_raw, float best_bias,
                                                      bool apply_sigmoid) {
  if (b == best_bias) return v > best_raw;
  return calibrate_f64(v, b, apply_sigmoid) > calibrate_f64(best_raw, best_bias, apply_sigmoid);
}

template <typename T>
__global__ void segment_kernel(const T* __restrict__ logits, const float* __restrict__ class_bias, bool apply_sigmoid,
                               int32_t* __restrict__ labels, float* __restrict__ scores, ResizeGeometry g,
                               float scale_y, float scale_x) {
  const int64_t total = g.batch * g.out_height * g.out_width;
  const int64_t plane_in = g.in_height * g.in_width;
  const int64_t crop_offset = g.crop_top * g.in_width + g.crop_left;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t x = i % g.out_width;
    const int64_t rest = i / g.out_width;
    const int64_t y = rest % g.out_height;
    const int64_t b = rest / g.out_height;
    const BilinearTap ty = bilinear_tap(scale_y, y, g.crop_height);
    const BilinearTap tx = bilinear_tap(scale_x, x, g.crop_width);
    const T* batch_at_crop = logits + b * g.channels * plane_in + crop_offset;
    // Without a bias, f(x) is increasing: take the raw argmax and calibrate the winner only.
    const bool calibrate_each = class_bias != nullptr;
    int32_t best_label = 0;
    float best = 0.f, best_raw = 0.f, best_bias = 0.f;
    for (int64_t c = 0; c < g.channels; ++c) {
      const float v = bilinear_at(batch_at_crop + c * plane_in, g.in_width, ty, tx);
      const float bias = calibrate_each ? __ldg(class_bias + c) : 0.f;
      const float value = calibrate_each ? calibrate_f32(v, bias, apply_sigmoid) : v;
      if (c == 0 || argmax_better(value, best) ||
          (calibrate_each && value == best && calibrated_tie_better(v, bias, best_raw, best_bias, apply_sigmoid))) {
        best = value;
        best_raw = v;
        best_bias = bias;
        best_label = static_cast<int32_t>(c);
      }
    }
    labels[i] = best_label;
    scores[i] = calibrate_each ? best : calibrate_f32(best, 0.f, apply_sigmoid);
  }
}

template <typename T>
CudaStatus launch(const SegmentParams& p, cudaStream_t stream) {
  const ResizeGeometry& g = p.geometry;
  const int64_t total = g.batch * g.out_height * g.out_width;
  ZS_LAUNCH(segment_kernel<T>, cuda_detail::blocks_for(total), cuda_detail::kThreadsPerBlock, stream,
            static_cast<const T*>(p.logits), p.class_bias, p.apply_sigmoid, p.labels, p.scores, g,
            bilinear_scale(g.crop_height, g.out_height), bilinear_scale(g.crop_width, g.out_width));
  return static_cast<CudaStatus>(cudaGetLastError());
}

}  // namespace

ZS_DTYPE_ENTRY_POINT(segment_cuda, SegmentParams)

}  // namespace zsseg
