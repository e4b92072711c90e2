// CUDA bilinear resize (torch align_corners=False): one thread per output element, fp32 math, with the optional
// calibration f(v) - class_bias[c] (f = sigmoid or identity) applied before the store.
#include "resize_common.cuh"
#include "zsseg/upsample.h"

namespace zsseg {
namespace {

using cuda_detail::bilinear_at;
using cuda_detail::store_from_float;

template <typename T>
__global__ void upsample_kernel(const T* __restrict__ input, T* __restrict__ output, ResizeGeometry g, float scale_y,
                                float scale_x, bool apply_sigmoid, const float* __restrict__ class_bias) {
  const int64_t total = g.batch * g.channels * g.out_height * g.out_width;
  const int64_t plane_in = g.in_height * g.in_width;
  const int64_t crop_offset = g.crop_top * g.in_width + g.crop_left;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t x = i % g.out_width;
    const int64_t rest = i / g.out_width;
    const int64_t y = rest % g.out_height;
    const int64_t plane = rest / g.out_height;
    const BilinearTap ty = bilinear_tap(scale_y, y, g.crop_height);
    const BilinearTap tx = bilinear_tap(scale_x, x, g.crop_width);
    float v = bilinear_at(input + plane * plane_in + crop_offset, g.in_width, ty, tx);
    if (apply_sigmoid) v = sigmoid_f32(v);  // fp32 expf; NaN propagates, saturates to exactly 0 / 1
    if (class_bias != nullptr) v -= __ldg(class_bias + plane % g.channels);
    store_from_float(output + i, v);
  }
}

template <typename T>
CudaStatus launch(const UpsampleParams& p, cudaStream_t stream) {
  const ResizeGeometry& g = p.geometry;
  const int64_t total = g.batch * g.channels * g.out_height * g.out_width;
  ZS_LAUNCH(upsample_kernel<T>, cuda_detail::blocks_for(total), cuda_detail::kThreadsPerBlock, stream,
            static_cast<const T*>(p.input), static_cast<T*>(p.output), g, bilinear_scale(g.crop_height, g.out_height),
            bilinear_scale(g.crop_width, g.out_width), p.apply_sigmoid, p.class_bias);
  return static_cast<CudaStatus>(cudaGetLastError());
}

}  // namespace

CudaStatus upsample_cuda(const UpsampleParams& params, Stream stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (params.dtype == DType::Float16) return launch<__half>(params, s);
  return launch<float>(params, s);
}

}  // namespace zsseg
