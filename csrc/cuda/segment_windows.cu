// CUDA fused multi-window exact post-processing (see zsseg/segment_windows.h): one thread per output pixel; per
// class, the four rescaled taps of the output pixel are evaluated from the windows covering them (bilinear from
// the window logits, sigmoid, bias, average), blended columns first then rows as every resize here, and the argmax is
// kept with torch's tie/NaN rules. No intermediate buffer at all. fp32 math (expf sigmoid: within 1e-7 of the
// CPU path's vectorised sigmoid). Compiled everywhere nvcc exists; never run in this project's CI (no GPU).
#include <cmath>

#include "resize_common.cuh"
#include "zsseg/segment_windows.h"

namespace zsseg {
namespace {

constexpr int kMaxWindowsCuda = 64;

struct WindowTable {
  WindowPlacement w[kMaxWindowsCuda];
};

struct Dims {
  int64_t num_windows, classes, in_h, in_w, head_h, head_w, scaled_h, scaled_w, out_h, out_w;
  float head_scale_y, head_scale_x, out_scale_y, out_scale_x;
  bool sigmoid;
  float logit_scale;  // softmax kernel only
};

// The merged (window-averaged) calibrated value of class c at rescaled pixel (r, q).
template <typename T>
__device__ float merged_value(const T* __restrict__ logits, const WindowTable& table, const Dims& d, int64_t c,
                              float bias, int64_t r, int64_t q) {
  float total = 0.f, count = 0.f;
  const int64_t plane = d.in_h * d.in_w;
  for (int64_t k = 0; k < d.num_windows; ++k) {
    const WindowPlacement& w = table.w[k];
    if (r < w.y1 || r >= w.y2 || q < w.x1 || q >= w.x2) continue;
    const BilinearTap ty = bilinear_tap(d.head_scale_y, r - w.y1, d.in_h);
    const BilinearTap tx = bilinear_tap(d.head_scale_x, q - w.x1, d.in_w);
    float v = cuda_detail::bilinear_at(logits + (k * d.classes + c) * plane, d.in_w, ty, tx);
    if (d.sigmoid) v = sigmoid_f32(v);
    total += v - bias;
    count += 1.f;
  }
  return count > 1.f ? total / count : total;
}

template <typename T>
__global__ void segment_windows_kernel(const T* __restrict__ logits, WindowTable table, Dims d,
                                       const float* __restrict__ class_bias, int32_t* __restrict__ labels,
                                       float* __restrict__ scores) {
  const int64_t total = d.out_h * d.out_w;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t y = i / d.out_w, x = i % d.out_w;
    const BilinearTap ty = bilinear_tap(d.out_scale_y, y, d.scaled_h);
    const BilinearTap tx = bilinear_tap(d.out_scale_x, x, d.scaled_w);
    int32_t best_label = -1;
    float best = 0.f;
    for (int64_t c = 0; c < d.classes; ++c) {
      const float bias = class_bias != nullptr ? __ldg(class_bias + c) : 0.f;
      const float a00 = merged_value(logits, table, d, c, bias, ty.i0, tx.i0);
      const float a01 = merged_value(logits, table, d, c, bias, ty.i0, tx.i1);
      const float a10 = merged_value(logits, table, d, c, bias, ty.i1, tx.i0);
      const float a11 = merged_value(logits, table, d, c, bias, ty.i1, tx.i1);
      // columns first, then rows: the blend order of every resize here (upsample, segment, torch)
      const float v = blend4(a00, a01, a10, a11, ty, tx);
      if (best_label < 0 || argmax_better(v, best)) {
        best_label = static_cast<int32_t>(c);
        best = v;
      }
    }
    labels[i] = best_label;
    scores[i] = best;
  }
}

// The resized (output-pixel) averaged logit of class c times logit_scale at the merged taps: softmax variant.
template <typename T>
__device__ float softmax_input(const T* __restrict__ logits, const WindowTable& table, const Dims& d, int64_t c,
                               const BilinearTap& ty, const BilinearTap& tx) {
  const float a00 = merged_value(logits, table, d, c, 0.f, ty.i0, tx.i0) * d.logit_scale;
  const float a01 = merged_value(logits, table, d, c, 0.f, ty.i0, tx.i1) * d.logit_scale;
  const float a10 = merged_value(logits, table, d, c, 0.f, ty.i1, tx.i0) * d.logit_scale;
  const float a11 = merged_value(logits, table, d, c, 0.f, ty.i1, tx.i1) * d.logit_scale;
  return blend4(a00, a01, a10, a11, ty, tx);
}

// Softmax variant (see zsseg/segment_windows.h): one thread per output pixel, the class values recomputed per
// pass instead of stored (pass 1: max and NaN; pass 2: the sum of exp in class order; pass 3: argmax of
// exp / sum - bias_c, with class_of of each class's max over its names). No class_drop on CUDA (the binding
// refuses it).
template <typename T>
__global__ void segment_windows_softmax_kernel(const T* __restrict__ logits, WindowTable table, Dims d,
                                               const float* __restrict__ class_bias,
                                               const int32_t* __restrict__ class_of, int32_t* __restrict__ labels,
                                               float* __restrict__ scores) {
  const int64_t total = d.out_h * d.out_w;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t y = i / d.out_w, x = i % d.out_w;
    const BilinearTap ty = bilinear_tap(d.out_scale_y, y, d.scaled_h);
    const BilinearTap tx = bilinear_tap(d.out_scale_x, x, d.scaled_w);
    float best = -INFINITY;
    bool bad = false;
    for (int64_t c = 0; c < d.classes; ++c) {
      const float v = softmax_input(logits, table, d, c, ty, tx);
      bad = bad || is_nan_value(v);
      best = best > v ? best : v;
    }
    bad = bad || !(fabsf(best) <= 3.402823466e+38f);
    if (bad) {
      labels[i] = 0;
      scores[i] = NAN;
      continue;
    }
    float sum = 0.f;
    for (int64_t c = 0; c < d.classes; ++c) sum += expf(softmax_input(logits, table, d, c, ty, tx) - best);
    // argmax of the probabilities themselves (e / sum, minus the bias), as the CPU and torch: two exp values one
    // ulp apart can divide to the same probability, and then the lower class index wins
    float top_value = 0.f;
    int32_t label = 0;
    // with class_of, names grouped by class in class order: a class's probability is the running max over its
    // names (probabilities are >= 0), considered when the next class starts (no per-class buffer)
    int64_t current = class_of != nullptr ? __ldg(class_of) : 0;
    float class_prob = 0.f;
    for (int64_t c = 0; c < d.classes; ++c) {
      const float prob = expf(softmax_input(logits, table, d, c, ty, tx) - best) / sum;
      const int64_t cls = class_of != nullptr ? __ldg(class_of + c) : c;
      if (cls != current) {
        const float value = class_bias != nullptr ? class_prob - __ldg(class_bias + current) : class_prob;
        if (current == 0 || value > top_value) {
          top_value = value;
          label = static_cast<int32_t>(current);
        }
        current = cls;
        class_prob = 0.f;
      }
      class_prob = prob > class_prob ? prob : class_prob;
    }
    const float value = class_bias != nullptr ? class_prob - __ldg(class_bias + current) : class_prob;
    if (current == 0 || value > top_value) {
      top_value = value;
      label = static_cast<int32_t>(current);
    }
    labels[i] = label;
    scores[i] = top_value;
  }
}

template <typename T>
CudaStatus launch(const SegmentWindowsParams& p, cudaStream_t stream) {
  if (p.num_windows > kMaxWindowsCuda) return static_cast<CudaStatus>(cudaErrorInvalidValue);
  WindowTable table{};
  for (int64_t k = 0; k < p.num_windows; ++k) table.w[k] = p.windows[k];
  Dims d{p.num_windows,
         p.classes,
         p.in_height,
         p.in_width,
         p.head_height,
         p.head_width,
         p.scaled_height,
         p.scaled_width,
         p.out_height,
         p.out_width,
         bilinear_scale(p.in_height, p.head_height),
         bilinear_scale(p.in_width, p.head_width),
         bilinear_scale(p.scaled_height, p.out_height),
         bilinear_scale(p.scaled_width, p.out_width),
         p.apply_sigmoid && !p.softmax,
         p.logit_scale};
  const int64_t total = p.out_height * p.out_width;
  if (p.softmax) {
    if (p.class_drop != nullptr) return static_cast<CudaStatus>(cudaErrorInvalidValue);
    ZS_LAUNCH(segment_windows_softmax_kernel<T>, cuda_detail::blocks_for(total), cuda_detail::kThreadsPerBlock, stream,
              static_cast<const T*>(p.logits), table, d, p.class_bias, p.class_of, p.labels, p.scores);
    return static_cast<CudaStatus>(cudaGetLastError());
  }
  ZS_LAUNCH(segment_windows_kernel<T>, cuda_detail::blocks_for(total), cuda_detail::kThreadsPerBlock, stream,
            static_cast<const T*>(p.logits), table, d, p.class_bias, p.labels, p.scores);
  return static_cast<CudaStatus>(cudaGetLastError());
}

}  // namespace

CudaStatus segment_windows_cuda(const SegmentWindowsParams& params, Stream stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (params.dtype == DType::Float16) return launch<__half>(params, s);
  return launch<float>(params, s);
}

}  // namespace zsseg
