// The CUDA similarity / relation_descriptor / preprocess kernels, run on the host (csrc/emu), against the CPU
// ops: tile edges (sizes that are not multiples of 64 or 16), C=1, batches, fp16, strided grids, extreme norms.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "emu/kernels_emulated.h"
#include "emu_test_utils.h"

namespace {

using zsseg::DType;

// |got - want| <= tolerance * (1 + |want|) elementwise.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double tolerance, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], tolerance * (1.0 + std::fabs(want[i]))) << what << " element " << i;
  }
}

struct SimilarityCase {
  int64_t batch, patches, classes, dim;
  bool text_batched, normalize;
};

std::vector<float> run_similarity(const zsseg::SimilarityParams& base, const std::vector<float>& patches,
                                  const std::vector<float>& text, bool emulated, bool half) {
  zsseg::SimilarityParams p = base;
  const size_t out_count = static_cast<size_t>(p.batch * p.num_classes * p.num_patches);
  std::vector<float> out(out_count);
  if (!emulated) {
    p.patches = patches.data();
    p.text = text.data();
    p.out = out.data();
    zsseg::similarity_cpu(p);
    return out;
  }
  std::vector<float> patches_copy = patches, text_copy = text;
  std::vector<__half> patches_half, text_half, out_half(out_count);
  if (half) {
    patches_half = emu_test::round_to_half(patches_copy);
    text_half = emu_test::round_to_half(text_copy);
    p.patches = patches_half.data();
    p.text = text_half.data();
    p.out = out_half.data();
    p.dtype = DType::Float16;
  } else {
    p.patches = patches.data();
    p.text = text.data();
    p.out = out.data();
  }
  EXPECT_EQ(zsseg::similarity_cuda_emulated(p, nullptr), 0);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the emulated launch is asynchronous
  return half ? emu_test::to_floats(out_half) : out;
}

TEST(SimilarityEmulated, MatchesCpu) {
  const std::vector<SimilarityCase> cases{
      {1, 1, 1, 1, false, true},      // C=1, N=1, D=1
      {2, 67, 130, 33, false, true},  // tile edges, 3 class tiles (strided when the grid cap is 2)
      {3, 20, 5, 16, true, false},    // batched text, scale only
      {1, 100, 70, 40, true, true},   // batched text, normalised
  };
  std::mt19937 rng(21);
  for (int64_t cap : emu_test::grid_caps()) {
    zs_emu::GridCapScope scope(cap);
    for (const SimilarityCase& c : cases) {
      for (bool half : {false, true}) {
        zsseg::SimilarityParams p;
        p.batch = c.batch;
        p.num_patches = c.patches;
        p.num_classes = c.classes;
        p.dim = c.dim;
        p.text_batched = c.text_batched;
        p.normalize = c.normalize;
        p.scale = 3.5f;
        std::vector<float> patches =
            emu_test::random_floats(static_cast<size_t>(c.batch * c.patches * c.dim), rng, -1.f, 1.f);
        std::vector<float> text = emu_test::random_floats(
            static_cast<size_t>((c.text_batched ? c.batch : 1) * c.classes * c.dim), rng, -1.f, 1.f);
        if (half) {  // the CPU sees the fp16-rounded inputs
          emu_test::round_to_half(patches);
          emu_test::round_to_half(text);
        }
        const std::vector<float> want = run_similarity(p, patches, text, false, false);
        const std::vector<float> got = run_similarity(p, patches, text, true, half);
        expect_close(got, want, half ? 2e-3 : 1e-5, half ? "similarity fp16" : "similarity fp32");
      }
    }
  }
}

// Issue 13: the CUDA kernel summed squares (and products) in fp32, so rows with |x| above ~1.8e19 overflowed
// (cosine 0 or NaN); the CPU normalises first, in double. Tiny rows (norm < eps) must match the CPU too.
TEST(SimilarityEmulated, NormalisesExtremeMagnitudes) {
  for (const float magnitude : {1e25f, 2e19f, 1e-25f, 1e-40f}) {
    zsseg::SimilarityParams p;
    p.batch = 1;
    p.num_patches = 3;
    p.num_classes = 2;
    p.dim = 20;
    p.normalize = true;
    std::mt19937 rng(22);
    std::vector<float> patches = emu_test::random_floats(60, rng, -1.f, 1.f);
    std::vector<float> text = emu_test::random_floats(40, rng, -1.f, 1.f);
    for (float& v : patches) v *= magnitude;
    for (float& v : text) v *= magnitude;
    const std::vector<float> want = run_similarity(p, patches, text, false, false);
    const std::vector<float> got = run_similarity(p, patches, text, true, false);
    if (magnitude > 1.f) {  // cosines (norms above torch's eps 1e-12), not 0 or NaN
      for (float w : want) ASSERT_GT(std::fabs(w), 1e-3f) << "magnitude " << magnitude;
    }
    expect_close(got, want, 1e-5, "similarity extreme magnitudes");
  }
}

TEST(RelationDescriptorEmulated, MatchesCpu) {
  struct Case {
    int64_t batch, classes, dim, out_dim;
    bool weight, bias;
  };
  const std::vector<Case> cases{
      {1, 1, 1, 2, false, false},     // concat only, the smallest
      {2, 5, 7, 14, false, false},    // concat only
      {3, 70, 20, 33, true, true},    // 2 class tiles, odd output size
      {5, 130, 17, 65, true, false},  // 3 class tiles (strided with cap 2), 2 output tiles
  };
  std::mt19937 rng(23);
  for (int64_t cap : emu_test::grid_caps()) {
    zs_emu::GridCapScope scope(cap);
    for (const Case& c : cases) {
      for (bool half : {false, true}) {
        std::vector<float> text = emu_test::random_floats(static_cast<size_t>(c.classes * c.dim), rng, -1.f, 1.f);
        std::vector<float> global = emu_test::random_floats(static_cast<size_t>(c.batch * c.dim), rng, -1.f, 1.f);
        std::vector<float> weight =
            emu_test::random_floats(static_cast<size_t>(c.out_dim * 2 * c.dim), rng, -0.5f, 0.5f);
        std::vector<float> bias = emu_test::random_floats(static_cast<size_t>(c.out_dim), rng, -0.5f, 0.5f);
        std::vector<__half> text_h, global_h, weight_h, bias_h;
        if (half) {
          text_h = emu_test::round_to_half(text);
          global_h = emu_test::round_to_half(global);
          weight_h = emu_test::round_to_half(weight);
          bias_h = emu_test::round_to_half(bias);
        }
        const size_t out_count = static_cast<size_t>(c.batch * c.classes * c.out_dim);
        zsseg::RelationDescriptorParams p;
        p.batch = c.batch;
        p.num_classes = c.classes;
        p.dim = c.dim;
        p.out_dim = c.out_dim;
        std::vector<float> want(out_count), got(out_count);
        p.text = text.data();
        p.image_global = global.data();
        p.weight = c.weight ? weight.data() : nullptr;
        p.bias = c.bias ? bias.data() : nullptr;
        p.out = want.data();
        zsseg::relation_descriptor_cpu(p);
        std::vector<__half> got_h(out_count);
        if (half) {
          p.text = text_h.data();
          p.image_global = global_h.data();
          p.weight = c.weight ? weight_h.data() : nullptr;
          p.bias = c.bias ? bias_h.data() : nullptr;
          p.out = got_h.data();
          p.dtype = DType::Float16;
        } else {
          p.out = got.data();
        }
        ASSERT_EQ(zsseg::relation_descriptor_cuda_emulated(p, nullptr), 0);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the emulated launch is asynchronous
        if (half) got = emu_test::to_floats(got_h);
        expect_close(got, want, half ? 2e-3 : 1e-5, half ? "relation fp16" : "relation fp32");
      }
    }
  }
}

TEST(PreprocessEmulated, MatchesCpuExactly) {
  struct Case {
    int32_t in_h, in_w, channels, scaled_h, scaled_w, crop;
    bool bgr;
  };
  const std::vector<Case> cases{
      {1, 1, 1, 3, 2, 4, false},       // gray 1x1 upscaled, padded window
      {7, 9, 3, 7, 9, 5, true},        // identity scale, several windows
      {13, 11, 4, 29, 23, 16, false},  // RGBA upscale
      {40, 33, 3, 17, 14, 8, true},    // downscale
  };
  std::mt19937 rng(24);
  for (int64_t cap : emu_test::grid_caps()) {
    zs_emu::GridCapScope scope(cap);
    for (const Case& c : cases) {
      std::uniform_int_distribution<int> byte(0, 255);
      std::vector<uint8_t> image(static_cast<size_t>(c.in_h * c.in_w * c.channels));
      for (uint8_t& v : image) v = static_cast<uint8_t>(byte(rng));
      zsseg::PreprocessParams p;
      p.image = image.data();
      p.in_height = c.in_h;
      p.in_width = c.in_w;
      p.in_channels = c.channels;
      p.bgr = c.bgr;
      p.scaled_height = c.scaled_h;
      p.scaled_width = c.scaled_w;
      p.crop = c.crop;
      p.num_windows = 0;
      for (int32_t y1 = 0; y1 < c.scaled_h; y1 += std::max(1, c.crop * 2 / 3)) {
        for (int32_t x1 = 0; x1 < c.scaled_w && p.num_windows < zsseg::kPreprocessMaxWindows;
             x1 += std::max(1, c.crop * 2 / 3)) {
          p.windows[p.num_windows++] = {y1, std::min(y1 + c.crop, c.scaled_h), x1, std::min(x1 + c.crop, c.scaled_w)};
        }
        if (p.num_windows >= zsseg::kPreprocessMaxWindows) break;
      }
      const float mean[3] = {123.675f, 116.28f, 103.53f}, stdev[3] = {58.395f, 57.12f, 57.375f};
      std::copy(mean, mean + 3, p.mean);
      std::copy(stdev, stdev + 3, p.std);
      const size_t count = static_cast<size_t>(p.num_windows) * 3 * c.crop * c.crop;
      std::vector<float> want(count), got(count, -99.f);
      std::vector<__half> got_h(count);
      p.output = want.data();
      zsseg::preprocess_cpu(p);
      p.output = got.data();
      ASSERT_EQ(zsseg::preprocess_cuda_emulated(p, nullptr), 0);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the emulated launch is asynchronous
      EXPECT_EQ(got, want) << "cap " << cap << " image " << c.in_h << "x" << c.in_w;
      p.output = got_h.data();
      p.dtype = DType::Float16;
      ASSERT_EQ(zsseg::preprocess_cuda_emulated(p, nullptr), 0);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the emulated launch is asynchronous
      for (size_t i = 0; i < count; ++i) ASSERT_EQ(got_h[i].bits, __float2half_rn(want[i]).bits) << i;
    }
  }
}

}  // namespace

// Issue 25: where 64x64 tiles would leave most SMs idle, the kernels use 32x32 tiles. Both sum every dot product
// in the same order, so the choice must not change a single bit.
TEST(DenseTilesEmulated, SmallAndLargeTilesGiveIdenticalResults) {
  std::mt19937 rng(29);
  zsseg::SimilarityParams s;
  s.batch = 2, s.num_patches = 70, s.num_classes = 37, s.dim = 45, s.normalize = true, s.scale = 2.0f;
  const std::vector<float> patches = emu_test::random_floats(2 * 70 * 45, rng, -1.f, 1.f);
  const std::vector<float> text = emu_test::random_floats(37 * 45, rng, -1.f, 1.f);
  zsseg::RelationDescriptorParams r;
  r.batch = 1, r.num_classes = 37, r.dim = 45, r.out_dim = 70;
  const std::vector<float> global = emu_test::random_floats(45, rng, -1.f, 1.f);
  const std::vector<float> weight = emu_test::random_floats(70 * 90, rng, -0.5f, 0.5f);
  const std::vector<float> bias = emu_test::random_floats(70, rng, -0.5f, 0.5f);
  std::vector<float> sim[2], rel[2];
  for (int variant = 0; variant < 2; ++variant) {
    zs_emu::DeviceConfig config;
    config.multiprocessors = variant == 0 ? 0 : 100000;  // 0: unknown -> 64-tiles; many SMs -> 32-tiles
    zs_emu::reset_runtime(config);
    sim[variant].assign(2 * 37 * 70, 0.f);
    s.patches = patches.data(), s.text = text.data(), s.out = sim[variant].data();
    ASSERT_EQ(zsseg::similarity_cuda_emulated(s, nullptr), 0);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the emulated launch is asynchronous
    rel[variant].assign(37 * 70, 0.f);
    r.text = text.data(), r.image_global = global.data(), r.weight = weight.data(), r.bias = bias.data();
    r.out = rel[variant].data();
    ASSERT_EQ(zsseg::relation_descriptor_cuda_emulated(r, nullptr), 0);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the emulated launch is asynchronous
  }
  zs_emu::reset_runtime();
  EXPECT_EQ(sim[0], sim[1]);
  EXPECT_EQ(rel[0], rel[1]);
  std::vector<float> cpu(2 * 37 * 70);
  s.out = cpu.data();
  zsseg::similarity_cpu(s);
  expect_close(sim[1], cpu, 1e-5, "similarity 32-tiles");
}
