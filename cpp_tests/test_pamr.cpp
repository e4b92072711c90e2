// GoogleTest: CPU PAMR (and, with a GPU, CUDA PAMR) vs a naive fp64 loop written here from the definition in
// zsseg/pamr.h (replicate-padded dilated neighbours, Bessel std, channel-mean affinity, softmax, iterations).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "zsseg/pamr.h"

#ifdef ZSSEG_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace {

struct Case {
  int64_t b, c, k, h, w;
  std::vector<int32_t> dilations;
  int iterations;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all{
      {1, 1, 1, 1, 1, {1}, 1},         // a single pixel: every neighbour is itself
      {1, 3, 3, 7, 9, {1}, 2},         // odd sizes, one dilation, even iteration count
      {2, 4, 3, 13, 11, {8, 16}, 3},   // NACLIP's dilations on a map smaller than them (all clamped)
      {1, 5, 3, 40, 37, {8, 16}, 10},  // NACLIP's setting
      {1, 2, 2, 6, 25, {1, 2, 4}, 5},  // wide map, three dilations
      {1, 20, 1, 9, 64, {2, 3}, 4},    // many classes, one image channel (row interior > 16: vector loop)
  };
  return all;
}

std::vector<float> random_values(size_t n, unsigned seed, float low, float high) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(low, high);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

int64_t clamp(int64_t v, int64_t n) {
  return std::min<int64_t>(std::max<int64_t>(v, 0), n - 1);
}

// The definition, scalar and in double: neighbour offsets of the 3x3 grid per dilation, row-major, no centre.
std::vector<double> naive_pamr(const std::vector<float>& mask, const std::vector<float>& image, const Case& k) {
  std::vector<std::pair<int64_t, int64_t>> offsets, grid;
  for (int32_t d : k.dilations) {
    for (int dy = -1; dy <= 1; ++dy) {
      for (int dx = -1; dx <= 1; ++dx) {
        grid.emplace_back(dy * d, dx * d);
        if (dy != 0 || dx != 0) offsets.emplace_back(dy * d, dx * d);
      }
    }
  }
  const int64_t plane = k.h * k.w, p_count = static_cast<int64_t>(offsets.size());
  std::vector<double> weights(static_cast<size_t>(k.b * p_count * plane));
  for (int64_t b = 0; b < k.b; ++b) {
    for (int64_t y = 0; y < k.h; ++y) {
      for (int64_t x = 0; x < k.w; ++x) {
        std::vector<double> a(static_cast<size_t>(p_count), 0.0);
        for (int64_t ch = 0; ch < k.k; ++ch) {
          const float* img = image.data() + (b * k.k + ch) * plane;
          auto at = [&](int64_t yy, int64_t xx) {
            return static_cast<double>(img[clamp(yy, k.h) * k.w + clamp(xx, k.w)]);
          };
          double mean = 0.0, var = 0.0;
          for (auto& o : grid) mean += at(y + o.first, x + o.second);
          mean /= static_cast<double>(grid.size());
          for (auto& o : grid) var += (at(y + o.first, x + o.second) - mean) * (at(y + o.first, x + o.second) - mean);
          const double sigma = std::sqrt(var / static_cast<double>(grid.size() - 1));
          for (int64_t n = 0; n < p_count; ++n) {
            const auto& o = offsets[static_cast<size_t>(n)];
            a[static_cast<size_t>(n)] += -std::fabs(at(y, x) - at(y + o.first, x + o.second)) / (1e-8 + 0.1 * sigma);
          }
        }
        double top = -std::numeric_limits<double>::infinity(), total = 0.0;
        for (double& v : a) top = std::max(top, v /= static_cast<double>(k.k));
        for (double& v : a) total += (v = std::exp(v - top));
        for (int64_t n = 0; n < p_count; ++n) {
          weights[static_cast<size_t>((b * p_count + n) * plane + y * k.w + x)] = a[static_cast<size_t>(n)] / total;
        }
      }
    }
  }
  std::vector<double> m(mask.begin(), mask.end()), next(m.size());
  for (int t = 0; t < k.iterations; ++t) {
    for (int64_t b = 0; b < k.b; ++b) {
      for (int64_t c = 0; c < k.c; ++c) {
        const double* src = m.data() + (b * k.c + c) * plane;
        for (int64_t y = 0; y < k.h; ++y) {
          for (int64_t x = 0; x < k.w; ++x) {
            double acc = 0.0;
            for (int64_t n = 0; n < p_count; ++n) {
              const auto& o = offsets[static_cast<size_t>(n)];
              acc += weights[static_cast<size_t>((b * p_count + n) * plane + y * k.w + x)] *
                     src[clamp(y + o.first, k.h) * k.w + clamp(x + o.second, k.w)];
            }
            next[static_cast<size_t>((b * k.c + c) * plane + y * k.w + x)] = acc;
          }
        }
      }
    }
    std::swap(m, next);
  }
  return m;
}

zsseg::PamrParams params_of(const Case& k, const std::vector<float>& mask, const std::vector<float>& image,
                            float* output) {
  zsseg::PamrParams p;
  p.mask = mask.data(), p.image = image.data(), p.output = output;
  p.batch = k.b, p.classes = k.c, p.channels = k.k, p.height = k.h, p.width = k.w;
  p.num_dilations = static_cast<int>(k.dilations.size());
  for (size_t i = 0; i < k.dilations.size(); ++i) p.dilations[i] = k.dilations[i];
  p.iterations = k.iterations;
  return p;
}

// Tolerance: each step is a convex combination of fp32 values (|values| <= 2 here), so fp32 rounding adds at most
// ~P ulp of the value range per step; 10 steps of P = 16 -> ~1e-5 worst case, typically far less.
constexpr double kTolerance = 2e-5;

TEST(PamrCpu, MatchesNaiveDefinition) {
  unsigned seed = 1;
  for (const Case& k : cases()) {
    const std::vector<float> mask = random_values(static_cast<size_t>(k.b * k.c * k.h * k.w), seed++, -2.f, 2.f);
    const std::vector<float> image = random_values(static_cast<size_t>(k.b * k.k * k.h * k.w), seed++, -2.f, 2.f);
    std::vector<float> out(mask.size(), std::numeric_limits<float>::quiet_NaN());
    zsseg::pamr_cpu(params_of(k, mask, image, out.data()));
    const std::vector<double> expected = naive_pamr(mask, image, k);
    for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], expected[i], kTolerance) << "element " << i;
  }
}

TEST(PamrCpu, ConstantMaskStaysConstantAndFlatImageAverages) {
  // weights sum to 1: a constant class plane is a fixed point; on a flat image every neighbour weighs 1/P
  Case k{1, 2, 3, 5, 6, {1}, 1};
  std::vector<float> mask(static_cast<size_t>(2 * 30));
  for (size_t i = 0; i < 30; ++i) mask[i] = 0.75f, mask[30 + i] = static_cast<float>(i);
  const std::vector<float> flat(static_cast<size_t>(3 * 30), 0.5f);
  std::vector<float> out(mask.size());
  zsseg::pamr_cpu(params_of(k, mask, flat, out.data()));
  for (size_t i = 0; i < 30; ++i) EXPECT_NEAR(out[i], 0.75f, 1e-6f);
  // interior pixel (2, 2) of plane 1 holds 2*6+2 = 14; the mean of its 8 neighbours is 14 as well (a linear ramp)
  EXPECT_NEAR(out[30 + 14], 14.f, 1e-5f);
  // corner (0, 0): the neighbours clamp to rows/cols 0..1: (0+0+1 + 0+1 + 6+6+7) / 8 = 21 / 8
  EXPECT_NEAR(out[30 + 0], 21.f / 8.f, 1e-6f);
}

TEST(PamrCpu, CallerWorkspacesGiveTheSameResult) {
  const Case& k = cases()[3];
  const std::vector<float> mask = random_values(static_cast<size_t>(k.b * k.c * k.h * k.w), 90, -1.f, 1.f);
  const std::vector<float> image = random_values(static_cast<size_t>(k.b * k.k * k.h * k.w), 91, -1.f, 1.f);
  std::vector<float> own(mask.size()), given(mask.size());
  zsseg::pamr_cpu(params_of(k, mask, image, own.data()));
  std::vector<float> weights(static_cast<size_t>(k.b * 8 * 2 * k.h * k.w)), scratch(mask.size());
  zsseg::PamrParams p = params_of(k, mask, image, given.data());
  p.weights = weights.data(), p.scratch = scratch.data();
  zsseg::pamr_cpu(p);
  EXPECT_EQ(own, given);
}

#ifdef ZSSEG_WITH_CUDA
TEST(PamrCuda, MatchesCpu) {
  if (zsseg::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << zsseg::cuda_error_string(-1);
  unsigned seed = 40;
  for (const Case& k : cases()) {
    const std::vector<float> mask = random_values(static_cast<size_t>(k.b * k.c * k.h * k.w), seed++, -2.f, 2.f);
    const std::vector<float> image = random_values(static_cast<size_t>(k.b * k.k * k.h * k.w), seed++, -2.f, 2.f);
    std::vector<float> cpu(mask.size()), gpu(mask.size());
    zsseg::pamr_cpu(params_of(k, mask, image, cpu.data()));
    const size_t weights_count = static_cast<size_t>(k.b * 8 * k.dilations.size() * k.h * k.w);
    float *d_mask, *d_image, *d_out, *d_weights, *d_scratch;
    cudaMalloc(&d_mask, mask.size() * 4), cudaMalloc(&d_image, image.size() * 4), cudaMalloc(&d_out, mask.size() * 4);
    cudaMalloc(&d_weights, weights_count * 4), cudaMalloc(&d_scratch, mask.size() * 4);
    cudaMemcpy(d_mask, mask.data(), mask.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(d_image, image.data(), image.size() * 4, cudaMemcpyHostToDevice);
    zsseg::PamrParams p = params_of(k, mask, image, d_out);
    p.mask = d_mask, p.image = d_image, p.weights = d_weights, p.scratch = d_scratch;
    EXPECT_EQ(zsseg::pamr_cuda(p, nullptr), 0);
    EXPECT_EQ(cudaMemcpy(gpu.data(), d_out, mask.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    cudaFree(d_mask), cudaFree(d_image), cudaFree(d_out), cudaFree(d_weights), cudaFree(d_scratch);
    for (size_t i = 0; i < cpu.size(); ++i) ASSERT_NEAR(gpu[i], cpu[i], kTolerance) << "element " << i;  // expf
  }
}
#endif

}  // namespace
