// GoogleTest: CPU (and, with a GPU, CUDA) bilinear resize, plain and with the fused calibration
// f(v) - class_bias[c], vs a naive fp64 implementation written here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "zsseg/bilinear.h"
#include "zsseg/upsample.h"

#ifdef ZSSEG_WITH_CUDA
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

namespace {

using zsseg::ResizeGeometry;

// Direct transcription of torch's align_corners=False rule in fp64.
double source_coordinate(int64_t out_index, int64_t in_size, int64_t out_size) {
  const double src = (out_index + 0.5) * static_cast<double>(in_size) / static_cast<double>(out_size) - 0.5;
  return src < 0 ? 0 : src;
}

std::vector<double> naive_upsample(const std::vector<float>& input, const ResizeGeometry& g) {
  std::vector<double> out(static_cast<size_t>(g.batch * g.channels * g.out_height * g.out_width));
  size_t k = 0;
  for (int64_t plane = 0; plane < g.batch * g.channels; ++plane) {
    for (int64_t y = 0; y < g.out_height; ++y) {
      const double sy = source_coordinate(y, g.crop_height, g.out_height);
      const int64_t y0 = std::min<int64_t>(static_cast<int64_t>(std::floor(sy)), g.crop_height - 1);
      const int64_t y1 = std::min<int64_t>(y0 + 1, g.crop_height - 1);
      const double ly = sy - y0;
      for (int64_t x = 0; x < g.out_width; ++x) {
        const double sx = source_coordinate(x, g.crop_width, g.out_width);
        const int64_t x0 = std::min<int64_t>(static_cast<int64_t>(std::floor(sx)), g.crop_width - 1);
        const int64_t x1 = std::min<int64_t>(x0 + 1, g.crop_width - 1);
        const double lx = sx - x0;
        auto at = [&](int64_t yy, int64_t xx) {
          return static_cast<double>(
              input[plane * g.in_height * g.in_width + (g.crop_top + yy) * g.in_width + g.crop_left + xx]);
        };
        const double top = at(y0, x0) * (1 - lx) + at(y0, x1) * lx;
        const double bottom = at(y1, x0) * (1 - lx) + at(y1, x1) * lx;
        out[k++] = top * (1 - ly) + bottom * ly;
      }
    }
  }
  return out;
}

// The naive calibration in fp64: sigmoid (optional) then minus the class's bias (optional).
std::vector<double> naive_calibrate(std::vector<double> values, const ResizeGeometry& g, bool apply_sigmoid,
                                    const std::vector<float>* class_bias) {
  const int64_t plane_size = g.out_height * g.out_width;
  for (size_t i = 0; i < values.size(); ++i) {
    double v = values[i];
    if (apply_sigmoid) v = 1.0 / (1.0 + std::exp(-v));
    if (class_bias != nullptr)
      v -= (*class_bias)[static_cast<size_t>((static_cast<int64_t>(i) / plane_size) % g.channels)];
    values[i] = v;
  }
  return values;
}

ResizeGeometry make_geometry(int64_t b, int64_t c, int64_t h, int64_t w, int64_t out_h, int64_t out_w) {
  ResizeGeometry g;
  g.batch = b, g.channels = c, g.in_height = h, g.in_width = w;
  g.crop_height = h, g.crop_width = w, g.out_height = out_h, g.out_width = out_w;
  return g;
}

std::vector<float> random_values(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 2.f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<float> run_cpu(const std::vector<float>& input, const ResizeGeometry& g, bool apply_sigmoid = false,
                           const std::vector<float>* class_bias = nullptr) {
  std::vector<float> out(static_cast<size_t>(g.batch * g.channels * g.out_height * g.out_width), -7.f);
  zsseg::UpsampleParams p;
  p.input = input.data();
  p.output = out.data();
  p.geometry = g;
  p.apply_sigmoid = apply_sigmoid;
  p.class_bias = class_bias != nullptr ? class_bias->data() : nullptr;
  zsseg::upsample_cpu(p);
  return out;
}

// Error bound against the fp64 naive value: torch (and the kernels) compute the source coordinate in fp32, an
// error of about 3 * 2^-24 * (in + 1) that moves the value by up to that times 2 max|x| per axis.
double upsample_tolerance(const ResizeGeometry& g, const std::vector<float>& x) {
  double max_abs = 0;
  for (float v : x) max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
  return max_abs * (3.6e-7 * static_cast<double>(g.crop_height + g.crop_width + 2) + 5e-7) * 2.0;
}

// Bound for the calibrated values: the sigmoid's slope is <= 1/4, so the coordinate error shrinks 4x; plus the
// fast sigmoid's own error (< 1e-7 absolute) and the fp32 rounding of the result and of the subtraction
// (|value| <= ~1.3 here: 2 half-ulps of 2^0 = 1.2e-7). Without the sigmoid: the coordinate bound plus the
// rounding of the subtraction.
double calibrated_tolerance(const ResizeGeometry& g, const std::vector<float>& x, bool apply_sigmoid) {
  return apply_sigmoid ? upsample_tolerance(g, x) * 0.25 + 3e-7 : upsample_tolerance(g, x) + 1e-6;
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol) << "at flat index " << i;
}

struct Case {
  int64_t b, c, h, w, out_h, out_w, top, left, crop_h, crop_w;
};

std::vector<Case> cases() {
  return {
      {1, 1, 1, 1, 1, 1, 0, 0, 1, 1},       // 1x1 identity
      {1, 3, 1, 1, 5, 7, 0, 0, 1, 1},       // 1x1 broadcast
      {2, 3, 4, 5, 4, 5, 0, 0, 4, 5},       // identity size
      {1, 2, 8, 8, 32, 32, 0, 0, 8, 8},     // 4x upsampling
      {2, 3, 7, 5, 19, 23, 0, 0, 7, 5},     // odd ratios, h != w
      {1, 4, 20, 17, 6, 5, 0, 0, 20, 17},   // downsampling
      {1, 2, 16, 16, 40, 33, 2, 3, 11, 9},  // crop
      {2, 5, 12, 10, 3, 50, 1, 0, 10, 10},  // crop, down in H, up in W
  };
}

ResizeGeometry geometry_of(const Case& k) {
  ResizeGeometry g = make_geometry(k.b, k.c, k.h, k.w, k.out_h, k.out_w);
  g.crop_top = k.top, g.crop_left = k.left, g.crop_height = k.crop_h, g.crop_width = k.crop_w;
  return g;
}

TEST(BilinearTap, MatchesTorchIndexRule) {
  // in=4 -> out=8: scale 0.5, src(i) = max(0.5 i - 0.25, 0)
  const float scale = zsseg::bilinear_scale(4, 8);
  const zsseg::BilinearTap t0 = zsseg::bilinear_tap(scale, 0, 4);
  EXPECT_EQ(t0.i0, 0);
  EXPECT_EQ(t0.i1, 1);
  EXPECT_FLOAT_EQ(t0.w1, 0.f);
  const zsseg::BilinearTap t3 = zsseg::bilinear_tap(scale, 3, 4);  // src 1.25
  EXPECT_EQ(t3.i0, 1);
  EXPECT_EQ(t3.i1, 2);
  EXPECT_FLOAT_EQ(t3.w1, 0.25f);
  const zsseg::BilinearTap t7 = zsseg::bilinear_tap(scale, 7, 4);  // src 3.25 -> clamped upper tap
  EXPECT_EQ(t7.i0, 3);
  EXPECT_EQ(t7.i1, 3);
}

TEST(UpsampleCpu, MatchesNaiveReference) {
  unsigned seed = 1;
  for (const Case& k : cases()) {
    const ResizeGeometry g = geometry_of(k);
    const std::vector<float> input = random_values(static_cast<size_t>(k.b * k.c * k.h * k.w), seed++);
    SCOPED_TRACE(testing::Message() << "case in " << k.h << "x" << k.w << " out " << k.out_h << "x" << k.out_w
                                    << " crop " << k.top << "," << k.left << "," << k.crop_h << "," << k.crop_w);
    expect_close(run_cpu(input, g), naive_upsample(input, g), upsample_tolerance(g, input));
  }
}

TEST(UpsampleCpu, CalibratedMatchesNaiveLoop) {
  unsigned seed = 50;
  for (const Case& k : cases()) {
    const ResizeGeometry g = geometry_of(k);
    const std::vector<float> input = random_values(static_cast<size_t>(k.b * k.c * k.h * k.w), seed++);
    std::vector<float> bias = random_values(static_cast<size_t>(k.c), seed++);
    for (float& b : bias) b *= 0.1f;
    const std::vector<double> plain = naive_upsample(input, g);
    for (const bool apply_sigmoid : {false, true}) {
      for (const std::vector<float>* class_bias : std::vector<const std::vector<float>*>{nullptr, &bias}) {
        if (!apply_sigmoid && class_bias == nullptr) continue;  // the plain resize, tested above
        SCOPED_TRACE(testing::Message() << "case in " << k.h << "x" << k.w << " out " << k.out_h << "x" << k.out_w
                                        << " crop " << k.top << "," << k.left << "," << k.crop_h << "," << k.crop_w
                                        << " sigmoid " << apply_sigmoid << " bias " << (class_bias != nullptr));
        expect_close(run_cpu(input, g, apply_sigmoid, class_bias), naive_calibrate(plain, g, apply_sigmoid, class_bias),
                     calibrated_tolerance(g, input, apply_sigmoid));
      }
    }
  }
}

TEST(UpsampleCpu, BiasOnlyIsThePlainResizeMinusTheBiasExactly) {
  const ResizeGeometry g = geometry_of({2, 3, 7, 5, 19, 23, 0, 0, 7, 5});
  const std::vector<float> input = random_values(static_cast<size_t>(2 * 3 * 7 * 5), 7);
  const std::vector<float> bias{0.1f, -0.25f, 0.f};
  const std::vector<float> plain = run_cpu(input, g);
  const std::vector<float> biased = run_cpu(input, g, false, &bias);
  const int64_t plane_size = g.out_height * g.out_width;
  for (size_t i = 0; i < plain.size(); ++i) {
    ASSERT_EQ(biased[i], plain[i] - bias[static_cast<size_t>((static_cast<int64_t>(i) / plane_size) % 3)]) << i;
  }
}

TEST(UpsampleCpu, SigmoidSaturatesAndPropagatesNan) {
  // 1x1 maps broadcast their value, so every output equals the input's calibrated value. (An infinite logit
  // would give NaN already in the resize, as in torch: its zero-weight tap is multiplied, inf * 0 = NaN.)
  const float big = 0.5f * std::numeric_limits<float>::max();
  const std::vector<float> input{0.f, 100.f, -100.f, big, -big, std::nanf(""), 1e-3f, -20.f};
  const ResizeGeometry g = make_geometry(1, static_cast<int64_t>(input.size()), 1, 1, 2, 3);
  const std::vector<float> bias{0.1f, 0.1f, 0.f, 0.f, 0.f, 0.f, 0.f, -0.5f};
  const std::vector<float> out = run_cpu(input, g, true, &bias);
  for (size_t c = 0; c < input.size(); ++c) {
    const double x = input[c];
    const double want = (std::isnan(x) ? x : 1.0 / (1.0 + std::exp(-x))) - bias[c];
    for (size_t j = 0; j < 6; ++j) {
      const float got = out[c * 6 + j];
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(got)) << "class " << c;
      } else {
        EXPECT_NEAR(got, want, 2e-7) << "class " << c << " x " << x;
      }
    }
  }
}

TEST(UpsampleCpu, NanNeighbourWithZeroWeightPropagates) {
  // Identity size: every output uses weight 0 on its right/bottom neighbours, torch still multiplies them.
  const ResizeGeometry g = make_geometry(1, 1, 2, 2, 2, 2);
  std::vector<float> input{1.f, 2.f, 3.f, std::nanf("")};
  const std::vector<float> out = run_cpu(input, g);
  EXPECT_TRUE(std::isnan(out[0]));  // (0,0) reads (1,1) with weight 0 -> NaN like torch
  EXPECT_TRUE(std::isnan(out[3]));
}

#ifdef ZSSEG_WITH_CUDA
template <typename T>
std::vector<float> run_cuda(const std::vector<float>& input, const ResizeGeometry& g, zsseg::DType dtype,
                            bool apply_sigmoid = false, const std::vector<float>* class_bias = nullptr) {
  std::vector<T> host_in(input.size());
  for (size_t i = 0; i < input.size(); ++i) host_in[i] = static_cast<T>(input[i]);
  const size_t out_n = static_cast<size_t>(g.batch * g.channels * g.out_height * g.out_width);
  T *d_in = nullptr, *d_out = nullptr;
  EXPECT_EQ(cudaMalloc(&d_in, host_in.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&d_out, out_n * sizeof(T)), cudaSuccess);
  cudaMemcpy(d_in, host_in.data(), host_in.size() * sizeof(T), cudaMemcpyHostToDevice);
  float* d_bias = nullptr;
  if (class_bias != nullptr) {
    EXPECT_EQ(cudaMalloc(&d_bias, class_bias->size() * sizeof(float)), cudaSuccess);
    cudaMemcpy(d_bias, class_bias->data(), class_bias->size() * sizeof(float), cudaMemcpyHostToDevice);
  }
  zsseg::UpsampleParams p;
  p.input = d_in, p.output = d_out, p.dtype = dtype, p.geometry = g;
  p.apply_sigmoid = apply_sigmoid, p.class_bias = d_bias;
  EXPECT_EQ(zsseg::upsample_cuda(p, nullptr), 0);
  std::vector<T> host_out(out_n);
  EXPECT_EQ(cudaMemcpy(host_out.data(), d_out, out_n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d_in);
  cudaFree(d_out);
  cudaFree(d_bias);
  std::vector<float> out(out_n);
  for (size_t i = 0; i < out_n; ++i) out[i] = static_cast<float>(host_out[i]);
  return out;
}

TEST(UpsampleCuda, MatchesNaiveReferenceFp32AndFp16) {
  if (zsseg::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << zsseg::cuda_error_string(-1);
  unsigned seed = 100;
  for (const Case& k : cases()) {
    const ResizeGeometry g = geometry_of(k);
    std::vector<float> input = random_values(static_cast<size_t>(k.b * k.c * k.h * k.w), seed++);
    expect_close(run_cuda<float>(input, g, zsseg::DType::Float32), naive_upsample(input, g),
                 upsample_tolerance(g, input));
    for (float& x : input) x = static_cast<float>(static_cast<__half>(x));  // the fp16 input, exactly
    // fp16 output rounding: half an ulp of |x| <= ~8 is 2^-8.
    expect_close(run_cuda<__half>(input, g, zsseg::DType::Float16), naive_upsample(input, g), 4e-3);
  }
}

TEST(UpsampleCuda, CalibratedMatchesNaiveLoopFp32AndFp16) {
  if (zsseg::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << zsseg::cuda_error_string(-1);
  unsigned seed = 200;
  for (const Case& k : cases()) {
    const ResizeGeometry g = geometry_of(k);
    std::vector<float> input = random_values(static_cast<size_t>(k.b * k.c * k.h * k.w), seed++);
    std::vector<float> bias = random_values(static_cast<size_t>(k.c), seed++);
    for (float& b : bias) b *= 0.1f;
    for (const bool apply_sigmoid : {false, true}) {
      const std::vector<double> want = naive_calibrate(naive_upsample(input, g), g, apply_sigmoid, &bias);
      // fp32: expf is within a few ulp, so the same bound as the CPU applies.
      expect_close(run_cuda<float>(input, g, zsseg::DType::Float32, apply_sigmoid, &bias), want,
                   calibrated_tolerance(g, input, apply_sigmoid));
    }
    std::vector<float> input16 = input;
    for (float& x : input16) x = static_cast<float>(static_cast<__half>(x));  // the fp16 input, exactly
    const std::vector<double> want16 = naive_calibrate(naive_upsample(input16, g), g, true, &bias);
    // fp16 output rounding of values in (-0.3, 1.3): half an ulp of 1 is 2^-11 ~ 4.9e-4.
    expect_close(run_cuda<__half>(input16, g, zsseg::DType::Float16, true, &bias), want16, 1e-3);
  }
}
#endif

}  // namespace
