// PAMR, pixel-adaptive mask refinement (Araslanov & Roth, "Single-Stage Semantic Segmentation from Image
// Labels", CVPR 2020, visinf/1-stage-wseg models/mods/pamr.py), as NACLIP and SC-CLIP apply it to the
// class logits at the original image size (reference: zsseg_rt/ops/reference.py::pamr).
//
// For every dilation d (in order) the 8 neighbours of a pixel p are at the offsets (dy, dx) of the 3x3 grid
// {-d, 0, d}^2 without (0, 0), row-major: (-d,-d) (-d,0) (-d,d) (0,-d) (0,d) (d,-d) (d,0) (d,d); a neighbour
// outside the map reads the nearest border pixel (replicate padding). P = 8 * num_dilations neighbours.
//   sigma_k(p)  = standard deviation (Bessel-corrected) of image channel k over the 9 * num_dilations values of
//                 the dilated 3x3 grids around p (the centre counted once per dilation)
//   a_n(p)      = mean_k ( -|image_k(p) - image_k(p + o_n)| / (1e-8 + 0.1 * sigma_k(p)) )
//   w_n(p)      = softmax_n a_n(p)                       (computed once from the image)
//   mask(p)    <- sum_n w_n(p) * mask(p + o_n)           (per class, `iterations` times)
// The reference's bilinear (align_corners=True) resize of the mask to the image size is the identity here: the
// mask and the image have the same height and width (NACLIP and SC-CLIP pass both at the original size).
#pragma once
#include <cmath>
#include <cstdint>

#include "zsseg/common.h"

namespace zsseg {

constexpr int kPamrMaxDilations = 8;
constexpr int kPamrMaxNeighbours = 8 * kPamrMaxDilations;

struct PamrParams {
  const float* mask = nullptr;   // [batch, classes, height, width] float32, contiguous (the logits)
  const float* image = nullptr;  // [batch, channels, height, width] float32, contiguous (the guide image)
  int64_t batch = 0, classes = 0, channels = 0, height = 0, width = 0;
  int32_t dilations[kPamrMaxDilations] = {};  // each >= 1
  int num_dilations = 0;                      // 1 .. kPamrMaxDilations
  int iterations = 0;                         // >= 1
  float* output = nullptr;                    // [batch, classes, height, width], must not overlap the inputs
  // Workspaces. CPU: optional (allocated by the kernel when nullptr). CUDA: required, on the device.
  float* weights = nullptr;  // [batch, 8 * num_dilations, height, width]
  float* scratch = nullptr;  // [batch, classes, height, width] (the ping-pong buffer of the iterations)
};

ZS_HD int64_t pamr_clamp(int64_t v, int64_t size) {
  return v < 0 ? 0 : (v >= size ? size - 1 : v);
}

// Offset of neighbour `n` (0..7) of dilation `d`: the 3x3 kernel positions row-major without the centre.
ZS_HD void pamr_offset(int n, int32_t d, int32_t* dy, int32_t* dx) {
  const int cell = n < 4 ? n : n + 1;  // skip the centre cell 4
  *dy = (cell / 3 - 1) * d;
  *dx = (cell % 3 - 1) * d;
}

// The P neighbour weights w_n of pixel (y, x) of one batch item; `image` points at its [channels, H, W] planes.
// Float arithmetic throughout (as the reference's float32 torch ops).
ZS_HD void pamr_pixel_weights(const float* image, int64_t channels, int64_t height, int64_t width, int64_t y, int64_t x,
                              const int32_t* dilations, int num_dilations, float* weights) {
  const int neighbours = 8 * num_dilations;
  const int64_t plane = height * width;
  for (int n = 0; n < neighbours; ++n) weights[n] = 0.f;
  for (int64_t k = 0; k < channels; ++k) {
    const float* img = image + k * plane;
    const float centre = img[y * width + x];
    // standard deviation over the 9 * num_dilations grid values (two passes: mean, then squared deviations)
    float sum = 0.f;
    for (int i = 0; i < num_dilations; ++i) {
      const int32_t d = dilations[i];
      for (int cy = -1; cy <= 1; ++cy) {
        const int64_t row = pamr_clamp(y + cy * d, height) * width;
        for (int cx = -1; cx <= 1; ++cx) sum += img[row + pamr_clamp(x + cx * d, width)];
      }
    }
    const float count = static_cast<float>(9 * num_dilations);
    const float mean = sum / count;
    float squares = 0.f;
    for (int i = 0; i < num_dilations; ++i) {
      const int32_t d = dilations[i];
      for (int cy = -1; cy <= 1; ++cy) {
        const int64_t row = pamr_clamp(y + cy * d, height) * width;
        for (int cx = -1; cx <= 1; ++cx) {
          const float dev = img[row + pamr_clamp(x + cx * d, width)] - mean;
          squares += dev * dev;
        }
      }
    }
    const float sigma = sqrtf(squares / (count - 1.f));
    const float denom = 1e-8f + 0.1f * sigma;
    for (int i = 0; i < num_dilations; ++i) {
      for (int n = 0; n < 8; ++n) {
        int32_t dy, dx;
        pamr_offset(n, dilations[i], &dy, &dx);
        const float other = img[pamr_clamp(y + dy, height) * width + pamr_clamp(x + dx, width)];
        weights[8 * i + n] += -fabsf(centre - other) / denom;
      }
    }
  }
  // mean over channels, then the softmax over the neighbours (max-subtracted; NaN propagates)
  const float num_channels = static_cast<float>(channels);
  for (int n = 0; n < neighbours; ++n) weights[n] /= num_channels;
  float top = weights[0];
  for (int n = 1; n < neighbours; ++n) top = weights[n] > top ? weights[n] : top;
  float total = 0.f;
  for (int n = 0; n < neighbours; ++n) {
    weights[n] = expf(weights[n] - top);
    total += weights[n];
  }
  for (int n = 0; n < neighbours; ++n) weights[n] /= total;
}

// CPU (OpenMP over rows). The caller validates the sizes (all > 0, 1..8 dilations >= 1, iterations >= 1).
void pamr_cpu(const PamrParams& params);
// CUDA: mask/image/output/weights/scratch are device pointers; asynchronous on `stream` (one weights kernel, then
// one kernel per iteration). Returns 0 or the cudaError_t.
CudaStatus pamr_cuda(const PamrParams& params, Stream stream);

}  // namespace zsseg
