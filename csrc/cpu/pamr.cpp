// CPU PAMR (see zsseg/pamr.h): the neighbour weights once per pixel (the shared per-pixel function), then each
// iteration as a weighted sum of P shifted rows per class plane, OpenMP over (batch, class, row). The rows are
// split into the left border, the interior (contiguous neighbour columns: vectorised) and the right border.
#include <algorithm>
#include <vector>

#include "cpu_dispatch.h"
#include "zsseg/pamr.h"

namespace zsseg {
namespace {

void compute_weights(const PamrParams& p, float* weights) {
  const int neighbours = 8 * p.num_dilations;
  const int64_t plane = p.height * p.width;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t y = 0; y < p.height; ++y) {
      float w[kPamrMaxNeighbours];
      const float* image = p.image + b * p.channels * plane;
      float* out = weights + b * neighbours * plane + y * p.width;
      for (int64_t x = 0; x < p.width; ++x) {
        pamr_pixel_weights(image, p.channels, p.height, p.width, y, x, p.dilations, p.num_dilations, w);
        for (int n = 0; n < neighbours; ++n) out[n * plane + x] = w[n];
      }
    }
  }
}

// dst[x] += w[x] * src[clamp(x + dx)] over one row; the interior needs no clamp.
ZS_CPU_INLINE void accumulate_shifted(const float* src, const float* w, int64_t dx, int64_t width, float* dst) {
  const int64_t lo = std::min<int64_t>(std::max<int64_t>(-dx, 0), width);          // first x with x + dx >= 0
  const int64_t hi = std::max<int64_t>(std::min<int64_t>(width - dx, width), lo);  // first x with x + dx >= width
  for (int64_t x = 0; x < lo; ++x) dst[x] += w[x] * src[0];
#pragma omp simd
  for (int64_t x = lo; x < hi; ++x) dst[x] += w[x] * src[x + dx];
  for (int64_t x = hi; x < width; ++x) dst[x] += w[x] * src[width - 1];
}

// One refinement step of one class plane row: dst_row = sum_n w_n * src(p + o_n).
ZS_CPU_CLONES void propagate_row(const float* src_plane, const float* weights, int64_t y, int64_t height, int64_t width,
                                 const int32_t* dilations, int num_dilations, float* dst_row) {
  const int64_t plane = height * width;
  for (int64_t x = 0; x < width; ++x) dst_row[x] = 0.f;
  for (int i = 0; i < num_dilations; ++i) {
    for (int n = 0; n < 8; ++n) {
      int32_t dy, dx;
      pamr_offset(n, dilations[i], &dy, &dx);
      const float* src_row = src_plane + pamr_clamp(y + dy, height) * width;
      const float* w_row = weights + static_cast<int64_t>(8 * i + n) * plane + y * width;
      accumulate_shifted(src_row, w_row, dx, width, dst_row);
    }
  }
}

}  // namespace

void pamr_cpu(const PamrParams& p) {
  const int neighbours = 8 * p.num_dilations;
  const int64_t plane = p.height * p.width;
  const int64_t mask_numel = p.batch * p.classes * plane;
  std::vector<float> own_weights, own_scratch;
  float* weights = p.weights;
  float* scratch = p.scratch;
  if (weights == nullptr) {
    own_weights.resize(static_cast<size_t>(p.batch * neighbours * plane));
    weights = own_weights.data();
  }
  if (scratch == nullptr && p.iterations > 1) {
    own_scratch.resize(static_cast<size_t>(mask_numel));
    scratch = own_scratch.data();
  }
  compute_weights(p, weights);
  // Ping-pong so that the last iteration writes `output`: iteration t writes output when (iterations-1-t) is even.
  const float* src = p.mask;
  for (int t = 0; t < p.iterations; ++t) {
    float* dst = ((p.iterations - 1 - t) % 2 == 0) ? p.output : scratch;
#pragma omp parallel for collapse(3) schedule(static)
    for (int64_t b = 0; b < p.batch; ++b) {
      for (int64_t c = 0; c < p.classes; ++c) {
        for (int64_t y = 0; y < p.height; ++y) {
          const int64_t offset = (b * p.classes + c) * plane;
          propagate_row(src + offset, weights + b * neighbours * plane, y, p.height, p.width, p.dilations,
                        p.num_dilations, dst + offset + y * p.width);
        }
      }
    }
    src = dst;
  }
}

#ifndef ZSSEG_WITH_CUDA
// A build without CUDA: the binding names the launcher, so it must link (see cuda_launchers_absent.cpp).
CudaStatus pamr_cuda(const PamrParams&, Stream) {
  return 1;  // cuda_error_string(): "zsseg_rt was built without CUDA"
}
#endif

}  // namespace zsseg
