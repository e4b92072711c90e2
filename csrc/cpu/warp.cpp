// CPU warp (see zsseg/warp.h): the taps of each output pixel once (the shared per-pixel function), then every
// channel sampled with them; OpenMP over (batch, row).
#include "zsseg/warp.h"
#include "cpu_dispatch.h"

namespace zsseg {

void warp_cpu(const WarpParams& p) {
  const int64_t plane = p.height * p.width;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t y = 0; y < p.height; ++y) {
      const float* flow_row = p.flow + (b * p.height + y) * p.width * 2;
      const float* values = p.values + b * p.channels * plane;
      float* out = p.output + b * p.channels * plane + y * p.width;
      for (int64_t x = 0; x < p.width; ++x) {
        const WarpTaps taps = warp_taps(flow_row[2 * x], flow_row[2 * x + 1], y, x, p.height, p.width, p.nearest);
        for (int64_t c = 0; c < p.channels; ++c) out[c * plane + x] = warp_sample(values + c * plane, taps, p.nearest);
      }
    }
  }
}

#ifndef ZSSEG_WITH_CUDA
// A build without CUDA: the binding names the launcher, so it must link (see cuda_launchers_absent.cpp).
CudaStatus warp_cuda(const WarpParams&, Stream) {
  return 1;  // cuda_error_string(): "zsseg_rt was built without CUDA"
}
#endif

}  // namespace zsseg
