// CUDA segment_windows, the direct form (the fallback; see segment_windows.cu): one thread per output pixel
// evaluates, per class, its four rescaled taps from the window logits. The launcher runs it when more than kSlots
// windows overlap one tile's footprint (the pipeline's sliding windows never do; the tests make it happen).
#include "segment_windows_tiles.cuh"

namespace zsseg {
namespace sw_cuda {
inline namespace ZS_SW_BUILD {  // emulated / device: segment_windows_tiles.cuh
namespace {

// ---- the direct form -----------------------------------------------------------------------------------------

// The merged (window-averaged) calibrated value of class c at rescaled pixel (r, q).
template <typename T>
__device__ float merged_value(const T* __restrict__ logits, const WindowTable& table, const Dims& d, int32_t c,
                              float bias, int32_t r, int32_t q) {
  float total = 0.f, count = 0.f;
  const int64_t plane = static_cast<int64_t>(d.in_h) * d.in_w;
  for (int32_t k = 0; k < d.num_windows; ++k) {
    const WindowPlacement& w = table.w[k];
    if (r < w.y1 || r >= w.y2 || q < w.x1 || q >= w.x2) continue;
    const BilinearTap ty = bilinear_tap(d.head_scale_y, r - w.y1, d.in_h);
    const BilinearTap tx = bilinear_tap(d.head_scale_x, q - w.x1, d.in_w);
    float v = cuda_detail::bilinear_at(logits + (static_cast<int64_t>(k) * d.classes + c) * plane, d.in_w, ty, tx);
    if (d.sigmoid) v = logistic(v);
    total += v - bias;
    count += 1.f;
  }
  return count > 1.f ? total / count : total;
}

// The resized merged value of class c at output pixel (ty, tx): the four taps blended (softmax: times logit_scale
// at the taps, no bias).
template <typename T>
__device__ __forceinline__ float direct_value(const T* __restrict__ logits, const WindowTable& table, const Dims& d,
                                              int32_t c, float bias, float scale, const BilinearTap& ty,
                                              const BilinearTap& tx) {
  const float a00 = merged_value(logits, table, d, c, bias, ty.i0, tx.i0) * scale;
  const float a01 = merged_value(logits, table, d, c, bias, ty.i0, tx.i1) * scale;
  const float a10 = merged_value(logits, table, d, c, bias, ty.i1, tx.i0) * scale;
  const float a11 = merged_value(logits, table, d, c, bias, ty.i1, tx.i1) * scale;
  return blend4(a00, a01, a10, a11, ty, tx);
}

template <typename T>
__global__ void segment_windows_direct_kernel(const T* __restrict__ logits, WindowTable table, Dims d,
                                              const float* __restrict__ class_bias,
                                              const int32_t* __restrict__ class_of, bool softmax,
                                              int32_t* __restrict__ labels, float* __restrict__ scores) {
  const int64_t total = static_cast<int64_t>(d.out_h) * d.out_w;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t y = static_cast<int32_t>(i / d.out_w), x = static_cast<int32_t>(i % d.out_w);
    const BilinearTap ty = bilinear_tap(d.out_scale_y, y, d.scaled_h);
    const BilinearTap tx = bilinear_tap(d.out_scale_x, x, d.scaled_w);
    if (!softmax) {
      float best = -INFINITY;
      int32_t label = 0;
      for (int32_t c = 0; c < d.classes; ++c) {
        const float bias = class_bias != nullptr ? __ldg(class_bias + c) : 0.f;
        argmax_update(direct_value(logits, table, d, c, bias, 1.f, ty, tx), c, best, label);
      }
      labels[i] = label;
      scores[i] = best;
      continue;
    }
    SoftmaxState s;
    s.current = class_of != nullptr ? __ldg(class_of) : 0;
    for (int pass = 1; pass <= 3 && !(pass > 1 && s.bad); ++pass) {
      for (int32_t n = 0; n < d.classes; ++n) {
        softmax_update(s, pass, direct_value(logits, table, d, n, 0.f, d.logit_scale, ty, tx), n, class_of, class_bias);
      }
      if (pass == 1) softmax_finish_pass1(s);
    }
    softmax_store(s, class_bias, labels + i, scores + i);
  }
}

}  // namespace

template <typename T>
void launch_direct(const T* logits, const WindowTable& table, const Dims& d, const SegmentWindowsParams& p,
                   unsigned int blocks, cudaStream_t stream) {
  ZS_LAUNCH(segment_windows_direct_kernel<T>, blocks, kThreads, stream, logits, table, d, p.class_bias, p.class_of,
            p.softmax, p.labels, p.scores);
}

ZS_SW_INSTANTIATE_LAUNCH(launch_direct, unsigned int);

}  // namespace ZS_SW_BUILD
}  // namespace sw_cuda
}  // namespace zsseg
