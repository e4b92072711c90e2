// The CUDA PAMR kernels, run on the host (csrc/emu), against the CPU op: odd sizes, dilations larger than the
// map, even and odd iteration counts (the ping-pong must end in `output`), NaN propagation, grids capped so that
// the grid-stride loops wrap, and the refusal without workspaces.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "emu/kernels_emulated.h"
#include "emu_test_utils.h"

namespace {

struct PamrCase {
  int64_t b, c, k, h, w;
  std::vector<int32_t> dilations;
  int iterations;
};

const std::vector<PamrCase>& pamr_cases() {
  static const std::vector<PamrCase> cases{
      {1, 1, 1, 1, 1, {1}, 1},        {1, 3, 3, 7, 9, {1}, 2},        {2, 4, 3, 13, 11, {8, 16}, 3},
      {1, 5, 3, 24, 21, {8, 16}, 10}, {1, 2, 2, 6, 25, {1, 2, 4}, 5},
  };
  return cases;
}

struct PamrRun {
  std::vector<float> output, weights, scratch;
  zsseg::PamrParams params;
};

PamrRun prepare(const PamrCase& c, const std::vector<float>& mask, const std::vector<float>& image) {
  PamrRun r;
  r.output.assign(mask.size(), std::numeric_limits<float>::quiet_NaN());
  r.weights.assign(static_cast<size_t>(c.b * 8 * static_cast<int64_t>(c.dilations.size()) * c.h * c.w), 0.f);
  r.scratch.assign(mask.size(), 0.f);
  zsseg::PamrParams& p = r.params;
  p.mask = mask.data(), p.image = image.data();
  p.batch = c.b, p.classes = c.c, p.channels = c.k, p.height = c.h, p.width = c.w;
  p.num_dilations = static_cast<int>(c.dilations.size());
  for (size_t i = 0; i < c.dilations.size(); ++i) p.dilations[i] = c.dilations[i];
  p.iterations = c.iterations;
  p.output = r.output.data(), p.weights = r.weights.data(), p.scratch = r.scratch.data();
  return r;
}

// Both kernels call the same per-pixel weights function and sum the neighbours in the same order; only expf
// (host std::exp here, the device's expf on a GPU) and FMA contraction may differ: a few ulp of |values| <= 2.
constexpr float kTolerance = 1e-5f;

TEST(PamrEmulated, MatchesCpu) {
  std::mt19937 rng(5);
  for (int64_t cap : emu_test::grid_caps()) {
    zs_emu::GridCapScope scope(cap);
    for (const PamrCase& c : pamr_cases()) {
      const std::vector<float> mask =
          emu_test::random_floats(static_cast<size_t>(c.b * c.c * c.h * c.w), rng, -2.f, 2.f);
      const std::vector<float> image =
          emu_test::random_floats(static_cast<size_t>(c.b * c.k * c.h * c.w), rng, -2.f, 2.f);
      PamrRun gpu = prepare(c, mask, image);
      ASSERT_EQ(zsseg::pamr_cuda_emulated(gpu.params, nullptr), 0);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // launches are asynchronous
      PamrRun cpu = prepare(c, mask, image);
      cpu.params.weights = nullptr, cpu.params.scratch = nullptr;  // the CPU kernel's own workspaces
      zsseg::pamr_cpu(cpu.params);
      for (size_t i = 0; i < cpu.output.size(); ++i) {
        ASSERT_NEAR(gpu.output[i], cpu.output[i], kTolerance) << "element " << i << " cap " << cap;
      }
    }
  }
}

TEST(PamrEmulated, NanSpreadsLikeTheCpuKernel) {
  std::mt19937 rng(8);
  const PamrCase c{1, 2, 3, 9, 10, {1, 2}, 2};
  std::vector<float> mask = emu_test::random_floats(static_cast<size_t>(c.c * c.h * c.w), rng, -1.f, 1.f);
  std::vector<float> image = emu_test::random_floats(static_cast<size_t>(c.k * c.h * c.w), rng, -1.f, 1.f);
  mask[3 * c.w + 4] = std::numeric_limits<float>::quiet_NaN();               // class 0, pixel (3, 4)
  image[c.h * c.w + 7 * c.w + 1] = std::numeric_limits<float>::quiet_NaN();  // channel 1, pixel (7, 1)
  PamrRun gpu = prepare(c, mask, image);
  ASSERT_EQ(zsseg::pamr_cuda_emulated(gpu.params, nullptr), 0);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  PamrRun cpu = prepare(c, mask, image);
  zsseg::pamr_cpu(cpu.params);
  size_t nans = 0;
  for (size_t i = 0; i < cpu.output.size(); ++i) {
    ASSERT_EQ(std::isnan(gpu.output[i]), std::isnan(cpu.output[i])) << "element " << i;
    nans += std::isnan(cpu.output[i]) ? 1 : 0;
    if (!std::isnan(cpu.output[i])) ASSERT_NEAR(gpu.output[i], cpu.output[i], kTolerance);
  }
  EXPECT_GT(nans, 0u);
  EXPECT_LT(nans, cpu.output.size());
}

TEST(PamrEmulated, RefusesMissingWorkspaces) {
  const PamrCase c{1, 2, 1, 4, 4, {1}, 2};
  const std::vector<float> mask(32, 0.f), image(16, 0.f);
  PamrRun run = prepare(c, mask, image);
  run.params.scratch = nullptr;  // two iterations need the ping-pong buffer
  EXPECT_NE(zsseg::pamr_cuda_emulated(run.params, nullptr), 0);
  run = prepare(c, mask, image);
  run.params.weights = nullptr;
  EXPECT_NE(zsseg::pamr_cuda_emulated(run.params, nullptr), 0);
}

}  // namespace
