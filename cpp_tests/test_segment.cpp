// GoogleTest: CPU (and, with a GPU, CUDA) fused segment vs a naive upsample -> calibrate -> argmax here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "zsseg/bilinear.h"
#include "zsseg/segment.h"
#include "zsseg/upsample.h"

#ifdef ZSSEG_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace {

using zsseg::ResizeGeometry;

struct SegmentOutput {
  std::vector<int32_t> labels;
  std::vector<float> scores;
};

// Naive fp64 bilinear value of output (y, x) in one plane (torch align_corners=False rule).
double naive_bilinear(const float* plane, const ResizeGeometry& g, int64_t y, int64_t x) {
  auto coord = [](int64_t i, int64_t in, int64_t out) {
    const double s = (i + 0.5) * static_cast<double>(in) / static_cast<double>(out) - 0.5;
    return s < 0 ? 0.0 : s;
  };
  const double sy = coord(y, g.crop_height, g.out_height), sx = coord(x, g.crop_width, g.out_width);
  const int64_t y0 = std::min<int64_t>(static_cast<int64_t>(sy), g.crop_height - 1);
  const int64_t x0 = std::min<int64_t>(static_cast<int64_t>(sx), g.crop_width - 1);
  const int64_t y1 = std::min<int64_t>(y0 + 1, g.crop_height - 1), x1 = std::min<int64_t>(x0 + 1, g.crop_width - 1);
  const double ly = sy - y0, lx = sx - x0;
  auto at = [&](int64_t yy, int64_t xx) {
    return static_cast<double>(plane[(g.crop_top + yy) * g.in_width + g.crop_left + xx]);
  };
  return (at(y0, x0) * (1 - lx) + at(y0, x1) * lx) * (1 - ly) + (at(y1, x0) * (1 - lx) + at(y1, x1) * lx) * ly;
}

// Calibrated fp64 values of every class at one pixel (the upsampled value is rounded to fp32 first, as in
// the Python reference).
std::vector<double> naive_calibrated(const std::vector<float>& logits, const std::vector<float>* bias,
                                     bool apply_sigmoid, const ResizeGeometry& g, int64_t b, int64_t y, int64_t x) {
  std::vector<double> values(static_cast<size_t>(g.channels));
  for (int64_t c = 0; c < g.channels; ++c) {
    const float* plane = logits.data() + (b * g.channels + c) * g.in_height * g.in_width;
    const double v = static_cast<float>(naive_bilinear(plane, g, y, x));
    const double f = apply_sigmoid ? 1.0 / (1.0 + std::exp(-v)) : v;
    values[static_cast<size_t>(c)] = f - (bias ? (*bias)[static_cast<size_t>(c)] : 0.0);
  }
  return values;
}

int32_t torch_argmax(const std::vector<double>& values) {
  int32_t best = 0;
  for (size_t c = 1; c < values.size(); ++c) {
    if (zsseg::argmax_better(values[c], values[static_cast<size_t>(best)])) best = static_cast<int32_t>(c);
  }
  return best;
}

// Gap between the best and second-best value (infinite with a single class).
double top2_gap(std::vector<double> values) {
  if (values.size() < 2) return std::numeric_limits<double>::infinity();
  std::partial_sort(values.begin(), values.begin() + 2, values.end(), std::greater<double>());
  return values[0] - values[1];
}

ResizeGeometry make_geometry(int64_t b, int64_t c, int64_t h, int64_t w, int64_t out_h, int64_t out_w) {
  ResizeGeometry g;
  g.batch = b, g.channels = c, g.in_height = h, g.in_width = w;
  g.crop_height = h, g.crop_width = w, g.out_height = out_h, g.out_width = out_w;
  return g;
}

SegmentOutput run_cpu(const std::vector<float>& logits, const std::vector<float>* bias, bool apply_sigmoid,
                      const ResizeGeometry& g) {
  const size_t n = static_cast<size_t>(g.batch * g.out_height * g.out_width);
  SegmentOutput out{std::vector<int32_t>(n, -5), std::vector<float>(n, -5.f)};
  zsseg::SegmentParams p;
  p.logits = logits.data();
  p.class_bias = bias ? bias->data() : nullptr;
  p.apply_sigmoid = apply_sigmoid;
  p.labels = out.labels.data();
  p.scores = out.scores.data();
  p.geometry = g;
  zsseg::segment_cpu(p);
  return out;
}

// Error bound of an fp32 upsampled value against the fp64 naive one. torch (and the kernels) compute the
// source coordinate in fp32: its error, about 3 * 2^-24 * (in + 1), moves the blend weight and so the value
// by up to that times the neighbour difference (<= 2 max|x|) per axis; plus a few roundings of max|x|.
double upsample_tolerance(const ResizeGeometry& g, const std::vector<float>& x) {
  double max_abs = 0;
  for (float v : x) max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
  return max_abs * (3.6e-7 * static_cast<double>(g.crop_height + g.crop_width + 2) + 5e-7) * 2.0;
}

// Labels must match exactly except where the naive top-2 calibrated values are within twice the value error
// bound (fp32 index math / rounding can swap such classes); scores within that bound too.
void expect_matches_naive(const SegmentOutput& got, const std::vector<float>& logits, const std::vector<float>* bias,
                          bool apply_sigmoid, const ResizeGeometry& g) {
  const double score_tol = upsample_tolerance(g, logits) * (apply_sigmoid ? 0.25 : 1.0) + 1e-7;
  size_t i = 0;
  for (int64_t b = 0; b < g.batch; ++b) {
    for (int64_t y = 0; y < g.out_height; ++y) {
      for (int64_t x = 0; x < g.out_width; ++x, ++i) {
        const std::vector<double> values = naive_calibrated(logits, bias, apply_sigmoid, g, b, y, x);
        const int32_t want = torch_argmax(values);
        if (got.labels[i] != want) {
          ASSERT_LT(top2_gap(values), 2 * score_tol)
              << "label " << got.labels[i] << " != " << want << " at " << b << "," << y << "," << x;
        }
        ASSERT_NEAR(got.scores[i], values[static_cast<size_t>(want)], score_tol) << "at " << b << "," << y << "," << x;
      }
    }
  }
}

std::vector<float> random_values(size_t n, unsigned seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

enum class BiasKind { None, TwoValues, Random };

std::vector<float> make_bias(BiasKind kind, int64_t classes, unsigned seed) {
  std::vector<float> bias(static_cast<size_t>(classes), 0.f);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-0.3f, 0.3f);
  for (int64_t c = 0; c < classes; ++c) {
    bias[static_cast<size_t>(c)] = kind == BiasKind::TwoValues ? (c % 3 == 0 ? 0.f : 0.1f) : dist(rng);
  }
  return bias;
}

struct Case {
  int64_t b, c, h, w, out_h, out_w, top, left, crop_h, crop_w;
};

const Case kCases[] = {
    {1, 1, 1, 1, 3, 4, 0, 0, 1, 1},     {2, 5, 4, 6, 4, 6, 0, 0, 4, 6},      {1, 12, 7, 5, 19, 23, 0, 0, 7, 5},
    {2, 9, 20, 17, 6, 5, 0, 0, 20, 17}, {1, 7, 16, 16, 40, 33, 2, 3, 11, 9}, {1, 300, 4, 3, 9, 10, 0, 0, 4, 3},
};

ResizeGeometry geometry_of(const Case& k) {
  ResizeGeometry g = make_geometry(k.b, k.c, k.h, k.w, k.out_h, k.out_w);
  g.crop_top = k.top, g.crop_left = k.left, g.crop_height = k.crop_h, g.crop_width = k.crop_w;
  return g;
}

TEST(SegmentCpu, MatchesNaiveForAllBiasKindsAndSigmoidModes) {
  unsigned seed = 7;
  for (const Case& k : kCases) {
    const ResizeGeometry g = geometry_of(k);
    const std::vector<float> logits = random_values(static_cast<size_t>(k.b * k.c * k.h * k.w), seed++, 3.f);
    for (BiasKind kind : {BiasKind::None, BiasKind::TwoValues, BiasKind::Random}) {
      for (bool apply_sigmoid : {true, false}) {
        const std::vector<float> bias = make_bias(kind, k.c, seed++);
        const std::vector<float>* bias_ptr = kind == BiasKind::None ? nullptr : &bias;
        SCOPED_TRACE(testing::Message() << "C=" << k.c << " out " << k.out_h << "x" << k.out_w << " bias kind "
                                        << static_cast<int>(kind) << " sigmoid " << apply_sigmoid);
        expect_matches_naive(run_cpu(logits, bias_ptr, apply_sigmoid, g), logits, bias_ptr, apply_sigmoid, g);
      }
    }
  }
}

// Issue 13: segment_cpu blended rows then columns while upsample (and torch, and CUDA) blend columns then rows,
// so its upsampled values were ~1 ulp off and its labels not exactly argmax(upsample). Now bit for bit: the
// winning raw value (identity, no bias: score == the upsampled maximum) and the torch-rule argmax.
TEST(SegmentCpu, EqualsArgmaxOfUpsampleBitForBit) {
  std::mt19937 rng(31);
  std::uniform_real_distribution<float> dist(-4.f, 4.f);
  struct Case {
    int64_t batch, classes, in_h, in_w, crop_top, crop_left, crop_h, crop_w, out_h, out_w;
  };
  for (const Case& c : {Case{1, 7, 9, 11, 0, 0, 9, 11, 37, 29}, Case{2, 3, 13, 10, 2, 1, 9, 8, 31, 45},
                        Case{1, 20, 16, 16, 0, 0, 16, 16, 64, 64}, Case{1, 5, 40, 33, 3, 2, 30, 25, 11, 13}}) {
    ResizeGeometry g = make_geometry(c.batch, c.classes, c.in_h, c.in_w, c.out_h, c.out_w);
    g.crop_top = c.crop_top, g.crop_left = c.crop_left, g.crop_height = c.crop_h, g.crop_width = c.crop_w;
    std::vector<float> logits(static_cast<size_t>(c.batch * c.classes * c.in_h * c.in_w));
    for (float& v : logits) v = dist(rng);
    logits[logits.size() / 3] = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> up(static_cast<size_t>(c.batch * c.classes * c.out_h * c.out_w));
    zsseg::UpsampleParams u;
    u.input = logits.data();
    u.output = up.data();
    u.geometry = g;
    zsseg::upsample_cpu(u);
    const SegmentOutput out = run_cpu(logits, nullptr, false, g);
    const int64_t plane = c.out_h * c.out_w;
    for (int64_t b = 0; b < c.batch; ++b) {
      for (int64_t i = 0; i < plane; ++i) {
        int32_t best = 0;
        for (int64_t k = 1; k < c.classes; ++k) {
          if (zsseg::argmax_better(up[(b * c.classes + k) * plane + i], up[(b * c.classes + best) * plane + i])) {
            best = static_cast<int32_t>(k);
          }
        }
        const float best_value = up[(b * c.classes + best) * plane + i];
        const size_t at = static_cast<size_t>(b * plane + i);
        ASSERT_EQ(out.labels[at], best) << "batch " << b << " pixel " << i;
        if (std::isnan(best_value)) {
          ASSERT_TRUE(std::isnan(out.scores[at]));
        } else {
          ASSERT_EQ(out.scores[at], best_value) << "batch " << b << " pixel " << i;
        }
      }
    }
  }
}

TEST(SegmentCpu, EqualLogitsPickLowestIndex) {
  const ResizeGeometry g = make_geometry(1, 4, 2, 2, 3, 3);
  const std::vector<float> logits(16, 0.5f);
  const std::vector<float> random_bias{0.2f, 0.1f, 0.1f, 0.3f};  // classes 1 and 2 tie after calibration
  for (const std::vector<float>* bias : {static_cast<const std::vector<float>*>(nullptr), &random_bias}) {
    const SegmentOutput out = run_cpu(logits, bias, true, g);
    for (size_t i = 0; i < out.labels.size(); ++i) EXPECT_EQ(out.labels[i], bias ? 1 : 0);
  }
}

TEST(SegmentCpu, FirstNanClassWinsWithNanScore) {
  // 10 classes: NaN at classes 3 and 6, a large value at 8. Uniform bias -> grouped path, 10 distinct
  // biases -> general path; both must return the first NaN class with a NaN score.
  const ResizeGeometry g = make_geometry(1, 10, 1, 1, 2, 2);
  std::vector<float> logits(10, 1.f);
  logits[3] = logits[6] = std::nanf("");
  logits[8] = 9.f;
  for (bool distinct_biases : {false, true}) {
    std::vector<float> bias(10);
    for (size_t c = 0; c < 10; ++c) bias[c] = distinct_biases ? 0.01f * static_cast<float>(c) : 0.1f;
    const SegmentOutput out = run_cpu(logits, &bias, true, g);
    for (size_t i = 0; i < out.labels.size(); ++i) {
      EXPECT_EQ(out.labels[i], 3);
      EXPECT_TRUE(std::isnan(out.scores[i]));
    }
  }
}

TEST(SegmentCpu, ManyDistinctBiasesUseExactRefinement) {
  // 40 distinct biases forces the general path; two classes 1e-9 apart must still resolve like fp64.
  const ResizeGeometry g = make_geometry(1, 40, 1, 1, 1, 1);
  std::vector<float> logits(40, -5.f);
  std::vector<float> bias(40);
  for (size_t c = 0; c < 40; ++c) bias[c] = 0.001f * static_cast<float>(c);
  logits[30] = 2.f;
  logits[31] = 2.f;  // same raw value, larger bias -> class 30 wins
  EXPECT_EQ(run_cpu(logits, &bias, true, g).labels[0], 30);
  bias[31] = bias[30];  // exact tie -> lowest index
  EXPECT_EQ(run_cpu(logits, &bias, true, g).labels[0], 30);
  bias[30] = bias[31] + 1e-7f;  // 31 now strictly better, by less than the approximate sigmoid's margin
  EXPECT_EQ(run_cpu(logits, &bias, true, g).labels[0], 31);
}

TEST(FastSigmoid, AbsoluteErrorBelow1e7) {
  double worst = 0;
  for (float x = -100.f; x <= 100.f; x += 0.00137f) {
    const double exact = 1.0 / (1.0 + std::exp(-static_cast<double>(x)));
    worst = std::max(worst, std::fabs(zsseg::sigmoid_fast_f32(x) - exact));
  }
  EXPECT_LT(worst, 1e-7);
  EXPECT_EQ(zsseg::sigmoid_fast_f32(std::numeric_limits<float>::infinity()), 1.f);
  EXPECT_LT(zsseg::sigmoid_fast_f32(-std::numeric_limits<float>::infinity()), 1e-30f);
}

#ifdef ZSSEG_WITH_CUDA
SegmentOutput run_cuda(const std::vector<float>& logits, const std::vector<float>* bias, bool apply_sigmoid,
                       const ResizeGeometry& g) {
  const size_t n = static_cast<size_t>(g.batch * g.out_height * g.out_width);
  float *d_logits = nullptr, *d_bias = nullptr, *d_scores = nullptr;
  int32_t* d_labels = nullptr;
  cudaMalloc(&d_logits, logits.size() * sizeof(float));
  cudaMemcpy(d_logits, logits.data(), logits.size() * sizeof(float), cudaMemcpyHostToDevice);
  if (bias) {
    cudaMalloc(&d_bias, bias->size() * sizeof(float));
    cudaMemcpy(d_bias, bias->data(), bias->size() * sizeof(float), cudaMemcpyHostToDevice);
  }
  cudaMalloc(&d_labels, n * sizeof(int32_t));
  cudaMalloc(&d_scores, n * sizeof(float));
  zsseg::SegmentParams p;
  p.logits = d_logits, p.class_bias = d_bias, p.apply_sigmoid = apply_sigmoid;
  p.labels = d_labels, p.scores = d_scores, p.geometry = g;
  EXPECT_EQ(zsseg::segment_cuda(p, nullptr), 0);
  SegmentOutput out{std::vector<int32_t>(n), std::vector<float>(n)};
  EXPECT_EQ(cudaMemcpy(out.labels.data(), d_labels, n * sizeof(int32_t), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaMemcpy(out.scores.data(), d_scores, n * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(d_logits), cudaFree(d_bias), cudaFree(d_labels), cudaFree(d_scores);
  return out;
}

TEST(SegmentCuda, MatchesNaiveFp32) {
  if (zsseg::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << zsseg::cuda_error_string(-1);
  unsigned seed = 70;
  for (const Case& k : kCases) {
    const ResizeGeometry g = geometry_of(k);
    const std::vector<float> logits = random_values(static_cast<size_t>(k.b * k.c * k.h * k.w), seed++, 3.f);
    for (BiasKind kind : {BiasKind::None, BiasKind::Random}) {
      for (bool apply_sigmoid : {true, false}) {
        const std::vector<float> bias = make_bias(kind, k.c, seed++);
        const std::vector<float>* bias_ptr = kind == BiasKind::None ? nullptr : &bias;
        expect_matches_naive(run_cuda(logits, bias_ptr, apply_sigmoid, g), logits, bias_ptr, apply_sigmoid, g);
      }
    }
  }
}
#endif

}  // namespace
