// GoogleTest: CPU warp (and, with a GPU, CUDA warp) vs a scalar fp64 loop written here from the definition in
// zsseg/warp.h (OpenCV remap's rule: float32 source coordinate, a 1/32-pixel grid rounded half to even, taps clamped
// to the map, nearest rounds a half to even, NaN for a displacement that is not finite).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "zsseg/warp.h"

#ifdef ZSSEG_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace {

struct Case {
  int64_t b, c, h, w;
  float reach;  // displacements uniform in [-reach, reach]
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all{
      {1, 1, 1, 1, 3.f},     // one pixel: every tap is itself
      {1, 3, 7, 9, 0.f},     // no motion
      {2, 4, 13, 11, 2.5f},  // odd sizes, sub-pixel motion
      {1, 27, 24, 32, 8.f},  // the filter's class-score state, large motion (many taps clamped)
      {1, 2, 5, 6, 1e9f},    // far outside: every tap a border pixel
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

// The definition, scalar and in double from the float32 coordinates.
std::vector<double> naive_warp(const std::vector<float>& values, const std::vector<float>& flow, const Case& k,
                               bool nearest) {
  std::vector<double> out(values.size());
  const int64_t plane = k.h * k.w;
  auto at = [&](int64_t b, int64_t c, int64_t y, int64_t x) {
    y = std::min<int64_t>(std::max<int64_t>(y, 0), k.h - 1);
    x = std::min<int64_t>(std::max<int64_t>(x, 0), k.w - 1);
    return static_cast<double>(values[static_cast<size_t>((b * k.c + c) * plane + y * k.w + x)]);
  };
  for (int64_t b = 0; b < k.b; ++b) {
    for (int64_t y = 0; y < k.h; ++y) {
      for (int64_t x = 0; x < k.w; ++x) {
        const size_t f = static_cast<size_t>(((b * k.h + y) * k.w + x) * 2);
        float sx = static_cast<float>(x) + flow[f], sy = static_cast<float>(y) + flow[f + 1];
        const bool finite = std::isfinite(sx) && std::isfinite(sy);
        sx = std::min(std::max(sx, -1048576.f), 1048576.f);
        sy = std::min(std::max(sy, -1048576.f), 1048576.f);
        for (int64_t c = 0; c < k.c; ++c) {
          double v;
          if (!finite) {
            v = std::numeric_limits<double>::quiet_NaN();
          } else if (nearest) {
            v = at(b, c, static_cast<int64_t>(std::nearbyint(sy)), static_cast<int64_t>(std::nearbyint(sx)));
          } else {
            const double qx = std::nearbyint(static_cast<double>(sx) * 32),
                         qy = std::nearbyint(static_cast<double>(sy) * 32);
            const double fx = std::floor(qx / 32), fy = std::floor(qy / 32), ax = qx / 32 - fx, ay = qy / 32 - fy;
            const int64_t x0 = static_cast<int64_t>(fx), y0 = static_cast<int64_t>(fy);
            v = (1 - ay) * (1 - ax) * at(b, c, y0, x0) + (1 - ay) * ax * at(b, c, y0, x0 + 1) +
                ay * (1 - ax) * at(b, c, y0 + 1, x0) + ay * ax * at(b, c, y0 + 1, x0 + 1);
          }
          out[static_cast<size_t>((b * k.c + c) * plane + y * k.w + x)] = v;
        }
      }
    }
  }
  return out;
}

zsseg::WarpParams params_of(const Case& k, const std::vector<float>& values, const std::vector<float>& flow,
                            float* output, bool nearest) {
  zsseg::WarpParams p;
  p.values = values.data(), p.flow = flow.data(), p.output = output;
  p.batch = k.b, p.channels = k.c, p.height = k.h, p.width = k.w, p.nearest = nearest;
  return p;
}

// Four fp32 products of |values| <= 4 summed (FMA-contracted or not) against the fp64 sum: a few ulp of 4.
constexpr double kTolerance = 4e-6;

TEST(WarpCpu, MatchesNaiveDefinition) {
  unsigned seed = 1;
  for (const Case& k : cases()) {
    for (bool nearest : {false, true}) {
      const std::vector<float> values = random_values(static_cast<size_t>(k.b * k.c * k.h * k.w), seed++, -4.f, 4.f);
      const std::vector<float> flow =
          random_values(static_cast<size_t>(k.b * k.h * k.w * 2), seed++, -k.reach, k.reach);
      std::vector<float> out(values.size(), std::numeric_limits<float>::quiet_NaN());
      zsseg::warp_cpu(params_of(k, values, flow, out.data(), nearest));
      const std::vector<double> expected = naive_warp(values, flow, k, nearest);
      for (size_t i = 0; i < out.size(); ++i) {
        ASSERT_NEAR(out[i], expected[i], nearest ? 0.0 : kTolerance) << "element " << i << " nearest " << nearest;
      }
    }
  }
}

TEST(WarpCpu, IntegerShiftMovesValuesExactly) {
  const Case k{1, 2, 4, 5, 0.f};
  std::vector<float> values(40);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  std::vector<float> flow(static_cast<size_t>(4 * 5 * 2), 0.f);
  for (size_t i = 0; i < flow.size(); i += 2) flow[i + 1] = -1.f;  // each pixel reads the row above
  std::vector<float> out(values.size());
  zsseg::warp_cpu(params_of(k, values, flow, out.data(), false));
  for (int64_t c = 0; c < 2; ++c) {
    for (int64_t y = 0; y < 4; ++y) {
      for (int64_t x = 0; x < 5; ++x) {
        EXPECT_EQ(out[static_cast<size_t>(c * 20 + y * 5 + x)],
                  values[static_cast<size_t>(c * 20 + std::max<int64_t>(y - 1, 0) * 5 + x)]);
      }
    }
  }
}

TEST(WarpCpu, NonFiniteDisplacementGivesNanInEveryChannel) {
  const Case k{1, 3, 3, 3, 0.f};
  const std::vector<float> values(27, 1.f);
  std::vector<float> flow(18, 0.f);
  flow[2 * 4] = std::numeric_limits<float>::infinity();  // pixel (1, 1)
  std::vector<float> out(27);
  zsseg::warp_cpu(params_of(k, values, flow, out.data(), true));
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t i = 0; i < 9; ++i) EXPECT_EQ(std::isnan(out[static_cast<size_t>(c * 9 + i)]), i == 4);
  }
}

#ifdef ZSSEG_WITH_CUDA
TEST(WarpCuda, MatchesCpu) {
  if (zsseg::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << zsseg::cuda_error_string(-1);
  unsigned seed = 40;
  for (const Case& k : cases()) {
    for (bool nearest : {false, true}) {
      const std::vector<float> values = random_values(static_cast<size_t>(k.b * k.c * k.h * k.w), seed++, -4.f, 4.f);
      const std::vector<float> flow =
          random_values(static_cast<size_t>(k.b * k.h * k.w * 2), seed++, -k.reach, k.reach);
      std::vector<float> cpu(values.size()), gpu(values.size());
      zsseg::warp_cpu(params_of(k, values, flow, cpu.data(), nearest));
      float *d_values, *d_flow, *d_out;
      cudaMalloc(&d_values, values.size() * 4), cudaMalloc(&d_flow, flow.size() * 4);
      cudaMalloc(&d_out, values.size() * 4);
      cudaMemcpy(d_values, values.data(), values.size() * 4, cudaMemcpyHostToDevice);
      cudaMemcpy(d_flow, flow.data(), flow.size() * 4, cudaMemcpyHostToDevice);
      zsseg::WarpParams p = params_of(k, values, flow, d_out, nearest);
      p.values = d_values, p.flow = d_flow;
      EXPECT_EQ(zsseg::warp_cuda(p, nullptr), 0);
      EXPECT_EQ(cudaMemcpy(gpu.data(), d_out, values.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
      cudaFree(d_values), cudaFree(d_flow), cudaFree(d_out);
      for (size_t i = 0; i < cpu.size(); ++i) ASSERT_NEAR(gpu[i], cpu[i], nearest ? 0.0 : kTolerance) << i;
    }
  }
}
#endif

}  // namespace
