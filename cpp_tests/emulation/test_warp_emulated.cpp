// The CUDA warp kernel, run on the host (csrc/emu), against the CPU op: odd sizes, many channels, far displacements,
// a displacement that is not finite, bilinear and nearest, grids capped so that the grid-stride loop wraps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "emu/kernels_emulated.h"
#include "emu_test_utils.h"

namespace {

struct WarpCase {
  int64_t b, c, h, w;
  float reach;
};

// Both kernels take the taps from the same per-pixel function and sum them in the same order; only FMA
// contraction may differ: a few ulp of |values| <= 4.
constexpr float kWarpTolerance = 4e-6f;

TEST(WarpEmulated, MatchesCpu) {
  const std::vector<WarpCase> cases{{1, 1, 1, 1, 2.f}, {1, 3, 7, 9, 0.5f}, {2, 5, 13, 11, 4.f}, {1, 27, 9, 12, 50.f}};
  std::mt19937 rng(11);
  for (int64_t cap : emu_test::grid_caps()) {
    zs_emu::GridCapScope scope(cap);
    for (const WarpCase& c : cases) {
      for (bool nearest : {false, true}) {
        const std::vector<float> values =
            emu_test::random_floats(static_cast<size_t>(c.b * c.c * c.h * c.w), rng, -4.f, 4.f);
        std::vector<float> flow =
            emu_test::random_floats(static_cast<size_t>(c.b * c.h * c.w * 2), rng, -c.reach, c.reach);
        flow[0] = std::numeric_limits<float>::quiet_NaN();  // pixel (0, 0) of item 0: NaN in every channel
        std::vector<float> gpu(values.size(), -7.f), cpu(values.size(), -9.f);
        zsseg::WarpParams p;
        p.values = values.data(), p.flow = flow.data(), p.output = gpu.data();
        p.batch = c.b, p.channels = c.c, p.height = c.h, p.width = c.w, p.nearest = nearest;
        ASSERT_EQ(zsseg::warp_cuda_emulated(p, nullptr), 0);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        p.output = cpu.data();
        zsseg::warp_cpu(p);
        for (size_t i = 0; i < cpu.size(); ++i) {
          ASSERT_EQ(std::isnan(gpu[i]), std::isnan(cpu[i])) << "element " << i << " cap " << cap;
          if (!std::isnan(cpu[i])) {
            ASSERT_NEAR(gpu[i], cpu[i], nearest ? 0.f : kWarpTolerance) << "element " << i;
          }
        }
        EXPECT_TRUE(std::isnan(cpu[0]));
      }
    }
  }
}

}  // namespace
