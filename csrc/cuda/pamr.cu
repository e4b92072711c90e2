// CUDA PAMR (see zsseg/pamr.h): one kernel computes the neighbour weights (one thread per pixel, the shared
// per-pixel function), then one kernel per iteration refines every class plane (one thread per element, the P
// neighbours summed in order, as the CPU kernel). The iterations ping-pong between `scratch` and `output` so
// that the last one writes `output`. Nothing synchronises; everything is enqueued on `stream`.
#include "resize_common.cuh"
#include "zsseg/pamr.h"

namespace zsseg {
namespace {

struct Dilations {
  int32_t values[kPamrMaxDilations];
  int count;
};

__global__ void pamr_weights_kernel(const float* __restrict__ image, int64_t batch, int64_t channels, int64_t height,
                                    int64_t width, Dilations dilations, float* __restrict__ weights) {
  const int64_t plane = height * width;
  const int64_t total = batch * plane;
  const int neighbours = 8 * dilations.count;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / plane;
    const int64_t pixel = i % plane;
    float w[kPamrMaxNeighbours];
    pamr_pixel_weights(image + b * channels * plane, channels, height, width, pixel / width, pixel % width,
                       dilations.values, dilations.count, w);
    float* out = weights + b * neighbours * plane + pixel;
    for (int n = 0; n < neighbours; ++n) out[n * plane] = w[n];
  }
}

__global__ void pamr_step_kernel(const float* __restrict__ src, const float* __restrict__ weights, int64_t batch,
                                 int64_t classes, int64_t height, int64_t width, Dilations dilations,
                                 float* __restrict__ dst) {
  const int64_t plane = height * width;
  const int64_t total = batch * classes * plane;
  const int neighbours = 8 * dilations.count;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t pixel = i % plane;
    const int64_t bc = i / plane;
    const int64_t b = bc / classes;
    const int64_t y = pixel / width;
    const int64_t x = pixel % width;
    const float* src_plane = src + bc * plane;
    const float* w = weights + b * neighbours * plane + pixel;
    float acc = 0.f;
    for (int d = 0; d < dilations.count; ++d) {
      for (int n = 0; n < 8; ++n) {
        int32_t dy, dx;
        pamr_offset(n, dilations.values[d], &dy, &dx);
        const float value = __ldg(src_plane + pamr_clamp(y + dy, height) * width + pamr_clamp(x + dx, width));
        acc += __ldg(w + static_cast<int64_t>(8 * d + n) * plane) * value;
      }
    }
    dst[i] = acc;
  }
}

}  // namespace

CudaStatus pamr_cuda(const PamrParams& p, Stream stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (p.weights == nullptr || (p.scratch == nullptr && p.iterations > 1)) {
    return static_cast<CudaStatus>(cudaErrorInvalidValue);  // CUDA needs both workspaces (the binding gives them)
  }
  Dilations dilations{};
  dilations.count = p.num_dilations;
  for (int i = 0; i < p.num_dilations && i < kPamrMaxDilations; ++i) dilations.values[i] = p.dilations[i];
  const int64_t pixels = p.batch * p.height * p.width;
  ZS_LAUNCH(pamr_weights_kernel, cuda_detail::blocks_for(pixels), cuda_detail::kThreadsPerBlock, s, p.image, p.batch,
            p.channels, p.height, p.width, dilations, p.weights);
  cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) return static_cast<CudaStatus>(status);
  const int64_t elements = p.batch * p.classes * p.height * p.width;
  const float* src = p.mask;
  for (int t = 0; t < p.iterations; ++t) {
    float* dst = ((p.iterations - 1 - t) % 2 == 0) ? p.output : p.scratch;
    ZS_LAUNCH(pamr_step_kernel, cuda_detail::blocks_for(elements), cuda_detail::kThreadsPerBlock, s, src, p.weights,
              p.batch, p.classes, p.height, p.width, dilations, dst);
    status = cudaGetLastError();
    if (status != cudaSuccess) return static_cast<CudaStatus>(status);
    src = dst;
  }
  return static_cast<CudaStatus>(cudaSuccess);
}

}  // namespace zsseg
