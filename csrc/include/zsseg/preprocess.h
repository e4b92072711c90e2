// Image pre-processing of the official test pipeline, fused: uint8 HWC (BGR/RGB, gray, RGBA) -> keep-ratio
// rescale with OpenCV's INTER_LINEAR uint8 fixed-point arithmetic -> (v - mean) / std -> window crops zero-padded
// to the graph size -> an NCHW batch [n, 3, crop, crop] (fp32, or fp16 on CUDA), written straight into the
// engine's input buffer (reference: zsseg_rt/ops/reference.py::preprocess).
//
// Resize arithmetic (what cv2.resize(INTER_LINEAR) computes for 8-bit images with its SIMD row filter; checked
// bit-exact against OpenCV 4.14 on x86-64 over 143M random values): per output column, fx = float((dx + 0.5) *
// (in / out) - 0.5), sx = floor(fx), fx -= sx, clamped to (sx = 0, fx = 0) left and (sx = in - 1, fx = 0)
// right, coefficients a0 = round((1 - fx) * 2048), a1 = round(fx * 2048); per output row the same without the
// coefficient clamp (only the two source row indices are clamped); horizontal pass h = s0 * a0 + s1 * a1 (int);
// vertical pass v = ((((h0 >> 4) * b0) >> 16) + (((h1 >> 4) * b1) >> 16) + 2) >> 2, saturated to 0..255.
#pragma once
#include <cmath>
#include <cstdint>

#include "zsseg/common.h"

namespace zsseg {

constexpr int kPreprocessMaxWindows = 32;  // windows per launch (the binding loops over larger sets)

struct PreprocessWindow {
  int32_t y1, y2, x1, x2;  // crop of the rescaled image; (y2 - y1) and (x2 - x1) in 1..crop
};

struct PreprocessParams {
  const uint8_t* image = nullptr;  // [in_height, in_width, in_channels], C-contiguous, on the kernel's device
  int32_t in_height = 0, in_width = 0, in_channels = 3;  // in_channels: 1 (gray), 3 or 4 (alpha ignored)
  bool bgr = true;                              // 3/4 channels are B, G, R(, A) (OpenCV order); else R, G, B(, A)
  int32_t scaled_height = 0, scaled_width = 0;  // the keep-ratio rescaled size the windows refer to
  int32_t crop = 0;                             // output windows are crop x crop (zero beyond each window's extent)
  int32_t num_windows = 0;                      // 1..kPreprocessMaxWindows
  PreprocessWindow windows[kPreprocessMaxWindows];
  float mean[3] = {0.f, 0.f, 0.f};  // RGB order, 0..255 units
  float std[3] = {1.f, 1.f, 1.f};   // RGB order, > 0
  void* output = nullptr;           // [num_windows, 3, crop, crop], `dtype`, C-contiguous
  DType dtype = DType::Float32;     // Float16: CUDA only
};

// One source coordinate of the uint8 bilinear resize: two indices and their 11-bit fixed-point weights.
struct LinearU8Tap {
  int32_t i0, i1;
  int32_t w0, w1;
};

// Column taps (OpenCV clamps the coefficient at both borders).
ZS_HD LinearU8Tap linear_u8_column_tap(int32_t dst, int32_t in_size, int32_t out_size) {
  const double scale = 1.0 / (static_cast<double>(out_size) / static_cast<double>(in_size));
  float f = static_cast<float>((dst + 0.5) * scale - 0.5);
  int32_t s = static_cast<int32_t>(floorf(f));
  f -= static_cast<float>(s);
  if (s < 0) s = 0, f = 0.f;
  if (s >= in_size - 1) s = in_size - 1, f = 0.f;
  LinearU8Tap t;
  t.i0 = s;
  t.i1 = s + 1 < in_size ? s + 1 : in_size - 1;
  t.w0 = static_cast<int32_t>(rintf((1.f - f) * 2048.f));
  t.w1 = static_cast<int32_t>(rintf(f * 2048.f));
  return t;
}

// Row taps (OpenCV keeps the coefficients and clamps the two source rows).
ZS_HD LinearU8Tap linear_u8_row_tap(int32_t dst, int32_t in_size, int32_t out_size) {
  const double scale = 1.0 / (static_cast<double>(out_size) / static_cast<double>(in_size));
  float f = static_cast<float>((dst + 0.5) * scale - 0.5);
  const int32_t s = static_cast<int32_t>(floorf(f));
  f -= static_cast<float>(s);
  LinearU8Tap t;
  t.i0 = s < 0 ? 0 : (s > in_size - 1 ? in_size - 1 : s);
  t.i1 = s + 1 < 0 ? 0 : (s + 1 > in_size - 1 ? in_size - 1 : s + 1);
  t.w0 = static_cast<int32_t>(rintf((1.f - f) * 2048.f));
  t.w1 = static_cast<int32_t>(rintf(f * 2048.f));
  return t;
}

// The resized uint8 value of channel `ch` (source channel index) at one output pixel.
ZS_HD int32_t resized_u8(const uint8_t* image, int32_t in_width, int32_t in_channels, int32_t ch, const LinearU8Tap& ty,
                         const LinearU8Tap& tx) {
  const uint8_t* r0 = image + static_cast<int64_t>(ty.i0) * in_width * in_channels + ch;
  const uint8_t* r1 = image + static_cast<int64_t>(ty.i1) * in_width * in_channels + ch;
  const int32_t h0 = r0[tx.i0 * in_channels] * tx.w0 + r0[tx.i1 * in_channels] * tx.w1;
  const int32_t h1 = r1[tx.i0 * in_channels] * tx.w0 + r1[tx.i1 * in_channels] * tx.w1;
  int32_t v = ((((h0 >> 4) * ty.w0) >> 16) + (((h1 >> 4) * ty.w1) >> 16) + 2) >> 2;
  return v < 0 ? 0 : (v > 255 ? 255 : v);
}

// Source channel of output channel c (RGB order).
ZS_HD int32_t preprocess_source_channel(int32_t c, int32_t in_channels, bool bgr) {
  if (in_channels == 1) return 0;
  return bgr ? 2 - c : c;
}

// CPU (OpenMP over output rows). Float32 output only.
void preprocess_cpu(const PreprocessParams& params);
// CUDA: image/output are device pointers; asynchronous on `stream`. Returns 0 or the cudaError_t.
CudaStatus preprocess_cuda(const PreprocessParams& params, Stream stream);

}  // namespace zsseg
