// CUDA warp (see zsseg/warp.h): one thread per output pixel (grid-stride), its taps from the shared per-pixel
// function, then every channel sampled with them, as the CPU kernel. Nothing synchronises; enqueued on `stream`.
#include "resize_common.cuh"
#include "zsseg/warp.h"

namespace zsseg {
namespace {

__global__ void warp_kernel(const float* __restrict__ values, const float* __restrict__ flow, int64_t batch,
                            int64_t channels, int64_t height, int64_t width, bool nearest, float* __restrict__ out) {
  const int64_t plane = height * width;
  const int64_t total = batch * plane;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / plane;
    const int64_t pixel = i % plane;
    const WarpTaps taps =
        warp_taps(__ldg(flow + 2 * i), __ldg(flow + 2 * i + 1), pixel / width, pixel % width, height, width, nearest);
    const float* source = values + b * channels * plane;
    float* target = out + b * channels * plane + pixel;
    for (int64_t c = 0; c < channels; ++c) target[c * plane] = warp_sample(source + c * plane, taps, nearest);
  }
}

}  // namespace

CudaStatus warp_cuda(const WarpParams& p, Stream stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t pixels = p.batch * p.height * p.width;
  ZS_LAUNCH(warp_kernel, cuda_detail::blocks_for(pixels), cuda_detail::kThreadsPerBlock, s, p.values, p.flow, p.batch,
            p.channels, p.height, p.width, p.nearest, p.output);
  return static_cast<CudaStatus>(cudaGetLastError());
}

}  // namespace zsseg
