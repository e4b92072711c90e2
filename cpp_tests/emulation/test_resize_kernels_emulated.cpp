// The CUDA upsample / segment / segment_windows kernels, run on the host (csrc/emu), against the CPU ops on
// random shapes: odd sizes, crops, C=1, batches, NaN, fp16 input, and grids capped so that the grid-stride
// loops wrap.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "emu/kernels_emulated.h"
#include "emu_test_utils.h"
#include "segment_windows_scopes.h"

// after the emulation's headers (ZS_CUDA_EMULATION selects the emulated build's hooks)
#include "cuda/segment_windows_testing.cuh"

namespace {

using zsseg::DType;
using zsseg::ResizeGeometry;

struct ResizeCase {
  int64_t batch, channels, in_h, in_w, crop_top, crop_left, crop_h, crop_w, out_h, out_w;
};

ResizeGeometry geometry_of(const ResizeCase& c) {
  ResizeGeometry g;
  g.batch = c.batch;
  g.channels = c.channels;
  g.in_height = c.in_h;
  g.in_width = c.in_w;
  g.crop_top = c.crop_top;
  g.crop_left = c.crop_left;
  g.crop_height = c.crop_h;
  g.crop_width = c.crop_w;
  g.out_height = c.out_h;
  g.out_width = c.out_w;
  return g;
}

const std::vector<ResizeCase>& resize_cases() {
  static const std::vector<ResizeCase> cases{
      {1, 1, 1, 1, 0, 0, 1, 1, 5, 3},      // C=1, 1x1 source
      {2, 3, 7, 9, 1, 2, 5, 6, 17, 13},    // batch 2, crop, odd upsample
      {1, 5, 16, 12, 0, 0, 16, 12, 7, 5},  // downsample
      {3, 2, 11, 13, 3, 4, 8, 9, 23, 29},  // crop, odd sizes, batch 3
      {1, 20, 8, 8, 0, 0, 8, 8, 32, 32},   // typical 4x upsample, many classes
      {1, 4, 10, 10, 2, 2, 7, 1, 9, 4},    // crop one column wide
  };
  return cases;
}

std::vector<float> random_logits(const ResizeCase& c, std::mt19937& rng, bool with_nan) {
  std::vector<float> logits =
      emu_test::random_floats(static_cast<size_t>(c.batch * c.channels * c.in_h * c.in_w), rng, -6.f, 6.f);
  if (with_nan) {
    std::uniform_int_distribution<size_t> pick(0, logits.size() - 1);
    for (int k = 0; k < 3; ++k) logits[pick(rng)] = std::numeric_limits<float>::quiet_NaN();
  }
  return logits;
}

// ---- upsample ----------------------------------------------------------------------------------------------
TEST(UpsampleEmulated, MatchesCpu) {
  std::mt19937 rng(11);
  for (int64_t cap : emu_test::grid_caps()) {
    zs_emu::GridCapScope scope(cap);
    for (const ResizeCase& c : resize_cases()) {
      for (int variant = 0; variant < 4; ++variant) {  // plain, NaN, sigmoid+bias, fp16
        const bool with_nan = variant == 1, calibrate = variant == 2, half = variant == 3;
        std::vector<float> input = random_logits(c, rng, with_nan);
        std::vector<__half> input_half;
        if (half) input_half = emu_test::round_to_half(input);
        const std::vector<float> bias = emu_test::random_floats(static_cast<size_t>(c.channels), rng, -0.2f, 0.2f);
        const size_t out_count = static_cast<size_t>(c.batch * c.channels * c.out_h * c.out_w);
        zsseg::UpsampleParams p;
        p.geometry = geometry_of(c);
        p.apply_sigmoid = calibrate;
        p.class_bias = calibrate ? bias.data() : nullptr;
        std::vector<float> expected(out_count);
        p.input = input.data();
        p.output = expected.data();
        zsseg::upsample_cpu(p);
        std::vector<float> got(out_count);
        std::vector<__half> got_half(half ? out_count : 0);
        p.input = half ? static_cast<const void*>(input_half.data()) : input.data();
        p.output = half ? static_cast<void*>(got_half.data()) : got.data();
        p.dtype = half ? DType::Float16 : DType::Float32;
        ASSERT_EQ(zsseg::upsample_cuda_emulated(p, nullptr), 0);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the emulated launch is asynchronous
        if (half) got = emu_test::to_floats(got_half);
        for (size_t i = 0; i < out_count; ++i) {
          // fp16: the kernel rounds the fp32 value once; calibrated: expf vs the CPU's fast sigmoid (< 1e-7) + 2 ulp
          const float want = half ? __half2float(__float2half_rn(expected[i])) : expected[i];
          if (calibrate) {
            ASSERT_NEAR(got[i], want, 4e-7) << "cap " << cap << " case " << c.out_h << "x" << c.out_w << " i " << i;
          } else if (std::isnan(want)) {
            ASSERT_TRUE(std::isnan(got[i])) << "cap " << cap << " variant " << variant << " i " << i;
          } else {
            // Same taps, weights and blend order; the CPU's AVX2+FMA clone contracts a * w0 + b * w1 into an
            // fma (as nvcc does on the GPU), the host build of the kernel does not: a few ulp of the inputs
            // (|x| <= 6, ulp 4.8e-7) at most; an fp16 store may then round to the neighbouring half.
            const double ulps = half ? 1e-3 * std::fabs(want) + 2e-6 : 2e-6;
            ASSERT_NEAR(got[i], want, ulps) << "cap " << cap << " variant " << variant << " i " << i;
          }
        }
      }
    }
  }
}

// ---- segment -----------------------------------------------------------------------------------------------
struct LabelsScores {
  std::vector<int32_t> labels;
  std::vector<float> scores;
};

// Labels must agree except where the two winners' values are within fp32 rounding of each other (the CUDA
// kernel compares calibrated values in fp32, the CPU one re-checks near-ties in fp64); scores within 1e-6.
void expect_same_decisions(const LabelsScores& got, const LabelsScores& want, const char* what) {
  ASSERT_EQ(got.labels.size(), want.labels.size());
  size_t near_ties = 0;
  for (size_t i = 0; i < want.labels.size(); ++i) {
    if (std::isnan(want.scores[i])) {
      ASSERT_TRUE(std::isnan(got.scores[i])) << what << " pixel " << i;
      ASSERT_EQ(got.labels[i], want.labels[i]) << what << " pixel " << i << " (first NaN class)";
      continue;
    }
    ASSERT_NEAR(got.scores[i], want.scores[i], 1e-6) << what << " pixel " << i;
    if (got.labels[i] != want.labels[i]) ++near_ties;
  }
  EXPECT_LE(near_ties, want.labels.size() / 100 + 1) << what;
}

TEST(SegmentEmulated, MatchesCpu) {
  std::mt19937 rng(12);
  for (int64_t cap : emu_test::grid_caps()) {
    zs_emu::GridCapScope scope(cap);
    for (const ResizeCase& c : resize_cases()) {
      for (int variant = 0; variant < 5; ++variant) {  // raw, NaN, sigmoid+grouped bias, identity+bias, fp16
        const bool with_nan = variant == 1, half = variant == 4;
        const bool sigmoid = variant != 3, with_bias = variant == 2 || variant == 3;
        std::vector<float> logits = random_logits(c, rng, with_nan);
        std::vector<__half> logits_half;
        if (half) logits_half = emu_test::round_to_half(logits);
        std::vector<float> bias(static_cast<size_t>(c.channels));
        for (size_t k = 0; k < bias.size(); ++k) bias[k] = (k % 3 == 0) ? 0.1f : 0.f;  // ZegCLIP's seen/unseen
        const size_t count = static_cast<size_t>(c.batch * c.out_h * c.out_w);
        zsseg::SegmentParams p;
        p.geometry = geometry_of(c);
        p.apply_sigmoid = sigmoid;
        p.class_bias = with_bias ? bias.data() : nullptr;
        LabelsScores want{std::vector<int32_t>(count), std::vector<float>(count)};
        p.logits = logits.data();
        p.labels = want.labels.data();
        p.scores = want.scores.data();
        zsseg::segment_cpu(p);
        LabelsScores got{std::vector<int32_t>(count, -7), std::vector<float>(count, -7.f)};
        p.logits = half ? static_cast<const void*>(logits_half.data()) : logits.data();
        p.dtype = half ? DType::Float16 : DType::Float32;
        p.labels = got.labels.data();
        p.scores = got.scores.data();
        ASSERT_EQ(zsseg::segment_cuda_emulated(p, nullptr), 0);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the emulated launch is asynchronous
        if (!with_bias) {  // the raw argmax of identical fp32 upsampled values: no tolerance on labels
          EXPECT_EQ(got.labels, want.labels) << "cap " << cap << " variant " << variant << " " << c.out_h;
        }
        expect_same_decisions(got, want, "segment");
      }
    }
  }
}

// Issue 13: fp32 sigmoid saturates to exactly 1 above ~16.6, so with a bias every class ties; the CPU orders
// them by logit (argmax of raw logits within each group of equal bias), the kernel must too.
TEST(SegmentEmulated, SaturatedSigmoidTiesFollowTheLogits) {
  const std::vector<float> logits{20.f, 25.f};  // [1, 2, 1, 1]
  const std::vector<float> bias{0.f, 0.f};
  ResizeCase c{1, 2, 1, 1, 0, 0, 1, 1, 1, 1};
  zsseg::SegmentParams p;
  p.geometry = geometry_of(c);
  p.logits = logits.data();
  p.class_bias = bias.data();
  int32_t cpu_label = -1, cuda_label = -1;
  float cpu_score = 0.f, cuda_score = 0.f;
  p.labels = &cpu_label;
  p.scores = &cpu_score;
  zsseg::segment_cpu(p);
  p.labels = &cuda_label;
  p.scores = &cuda_score;
  ASSERT_EQ(zsseg::segment_cuda_emulated(p, nullptr), 0);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the emulated launch is asynchronous
  EXPECT_EQ(cpu_label, 1);
  EXPECT_EQ(cuda_label, 1);
  EXPECT_EQ(cuda_score, cpu_score);
}

// ---- segment_windows ---------------------------------------------------------------------------------------
std::vector<zsseg::WindowPlacement> sliding(int64_t h, int64_t w, int64_t crop, int64_t stride) {
  const int64_t rows = std::max<int64_t>(h - crop + stride - 1, 0) / stride + 1;
  const int64_t cols = std::max<int64_t>(w - crop + stride - 1, 0) / stride + 1;
  std::vector<zsseg::WindowPlacement> out;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t y2 = std::min(i * stride + crop, h), x2 = std::min(j * stride + crop, w);
      out.push_back({static_cast<int32_t>(std::max<int64_t>(y2 - crop, 0)), static_cast<int32_t>(y2),
                     static_cast<int32_t>(std::max<int64_t>(x2 - crop, 0)), static_cast<int32_t>(x2)});
    }
  }
  return out;
}

struct WindowsCase {
  int64_t classes, grid, head, scaled_h, scaled_w, out_h, out_w;
};

TEST(SegmentWindowsEmulated, MatchesCpu) {
  // The tiled kernel's output tiles are 32 x 8 (fewer when the output is much smaller than the rescaled image);
  // the sizes below give edge tiles in both directions, several tiles, partial class chunks (chunks of 8) and the
  // footprint layouts of both window layouts.
  const std::vector<WindowsCase> cases{
      {1, 4, 16, 16, 16, 11, 13},   // one window, C=1
      {3, 5, 16, 16, 29, 23, 41},   // two windows side by side, 2 x 3 tiles
      {4, 4, 12, 21, 12, 30, 17},   // two windows stacked, padded head rows
      {2, 3, 10, 19, 23, 7, 9},     // 2x3 windows, downsample
      {1, 3, 10, 9, 7, 12, 12},     // one padded window (scaled smaller than the head)
      {11, 4, 64, 64, 85, 47, 63},  // the photo case at 1/8: 16x head upsampling, 2 windows, output < rescaled
      {9, 4, 32, 37, 81, 19, 29},   // output ~1/3 of the rescaled size: narrower tiles (wider footprints)
      {10, 2, 24, 51, 50, 70, 66},  // 2x3 windows, upsampled output, 3 x 9 tiles with odd edges
  };
  std::mt19937 rng(13);
  for (int64_t cap : emu_test::grid_caps()) {
    zs_emu::GridCapScope scope(cap);
    for (const WindowsCase& c : cases) {
      // sigmoid+bias, identity, NaN, fp16; softmax: plain, +bias and scale, NaN, fp16 (+bias), synonyms (+bias:
      // class 0 has three names, every other class one, so the names are classes + 2)
      for (int variant = 0; variant < 9; ++variant) {
        const bool softmax = variant >= 4;
        const bool synonyms = variant == 8;
        const int64_t names = synonyms ? c.classes + 2 : c.classes;
        const bool sigmoid = variant != 1 && !softmax, with_nan = variant == 2 || variant == 6;
        const bool half = variant == 3 || variant == 7;
        const auto windows = sliding(c.scaled_h, c.scaled_w, c.head, std::max<int64_t>(c.head * 2 / 3, 1));
        const int64_t n = static_cast<int64_t>(windows.size());
        std::vector<float> logits =
            emu_test::random_floats(static_cast<size_t>(n * names * c.grid * c.grid), rng, -5.f, 5.f);
        if (with_nan) logits[logits.size() / 2] = std::numeric_limits<float>::quiet_NaN();
        std::vector<__half> logits_half;
        if (half) logits_half = emu_test::round_to_half(logits);
        std::vector<float> bias(static_cast<size_t>(c.classes));
        for (size_t k = 0; k < bias.size(); ++k) bias[k] = (k % 2 == 0) ? 0.1f : 0.f;
        zsseg::SegmentWindowsParams p;
        p.num_windows = n;
        p.classes = names;
        std::vector<int32_t> class_of(static_cast<size_t>(names));
        for (int64_t k = 0; k < names; ++k) class_of[static_cast<size_t>(k)] = static_cast<int32_t>(k < 3 ? 0 : k - 2);
        if (synonyms) {
          p.class_of = class_of.data();
          p.labels_count = c.classes;
        }
        p.in_height = p.in_width = c.grid;
        p.windows = windows.data();
        p.head_height = p.head_width = c.head;
        p.scaled_height = c.scaled_h;
        p.scaled_width = c.scaled_w;
        p.out_height = c.out_h;
        p.out_width = c.out_w;
        p.class_bias = variant == 1 || variant == 4 || variant == 6 ? nullptr : bias.data();
        p.apply_sigmoid = sigmoid;
        p.softmax = softmax;
        p.logit_scale = variant == 5 ? 2.5f : 1.f;
        const size_t count = static_cast<size_t>(c.out_h * c.out_w);
        LabelsScores want{std::vector<int32_t>(count), std::vector<float>(count)};
        p.logits = logits.data();
        p.labels = want.labels.data();
        p.scores = want.scores.data();
        ASSERT_TRUE(zsseg::segment_windows_cpu(p));
        // the kernel variants differ on the sigmoid path only (the others run the default kernel)
        for (int kernel : sigmoid ? emu_test::kernel_variants(cap) : std::vector<int>{0}) {
          emu_test::VariantScope scope(kernel);
          SCOPED_TRACE("kernel variant " + std::to_string(kernel));
          LabelsScores got{std::vector<int32_t>(count, -7), std::vector<float>(count, -7.f)};
          p.logits = half ? static_cast<const void*>(logits_half.data()) : logits.data();
          p.dtype = half ? DType::Float16 : DType::Float32;
          p.labels = got.labels.data();
          p.scores = got.scores.data();
          ASSERT_EQ(emu_test::segment_windows_with_scratch(p), 0);
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the emulated launch is asynchronous
          expect_same_decisions(got, want, softmax ? "segment_windows softmax" : "segment_windows");
        }
        if (softmax && with_nan) {  // the NaN spreads to some pixels, which get label 0 on both paths
          EXPECT_TRUE(std::any_of(want.scores.begin(), want.scores.end(), [](float v) { return std::isnan(v); }));
        }
      }
    }
  }
}

// Windows overlapping more than the sliding-window layout does: three at a pixel (the merged sum divided by 3, an
// IEEE division, in the tiled kernel) and five (more than a tile's slots: the launcher runs the direct kernel).
TEST(SegmentWindowsEmulated, ManyOverlappingWindowsMatchCpu) {
  std::mt19937 rng(14);
  for (int64_t cap : emu_test::grid_caps()) {
    zs_emu::GridCapScope scope(cap);
    for (int layout = 0; layout < 2; ++layout) {
      const int64_t classes = 5, grid = 3, head = 20, scaled_h = 14, scaled_w = 20, out_h = 17, out_w = 23;
      std::vector<zsseg::WindowPlacement> windows;
      if (layout == 0) {  // three windows over the whole image: every merged value is a sum of 3 divided by 3
        for (int k = 0; k < 3; ++k) windows.push_back({0, 14, 0, 20});
      } else {  // five overlapping in the middle columns, three more at the edges: up to 7 at a pixel
        for (int32_t k = 0; k < 5; ++k) windows.push_back({0, 12, 2 * k, 2 * k + 12});
        windows.push_back({0, 12, 8, 20});
        windows.push_back({2, 14, 0, 12});
        windows.push_back({2, 14, 8, 20});
      }
      for (bool softmax : {false, true}) {
        std::vector<float> logits =
            emu_test::random_floats(static_cast<size_t>(windows.size() * classes * grid * grid), rng, -4.f, 4.f);
        std::vector<float> bias(static_cast<size_t>(classes), 0.05f);
        zsseg::SegmentWindowsParams p;
        p.num_windows = static_cast<int64_t>(windows.size());
        p.classes = classes;
        p.in_height = p.in_width = grid;
        p.windows = windows.data();
        p.head_height = p.head_width = head;
        p.scaled_height = scaled_h;
        p.scaled_width = scaled_w;
        p.out_height = out_h;
        p.out_width = out_w;
        p.class_bias = bias.data();
        p.softmax = softmax;
        p.logits = logits.data();
        const size_t count = static_cast<size_t>(out_h * out_w);
        LabelsScores want{std::vector<int32_t>(count), std::vector<float>(count)};
        p.labels = want.labels.data();
        p.scores = want.scores.data();
        ASSERT_TRUE(zsseg::segment_windows_cpu(p));
        for (int kernel : softmax ? std::vector<int>{0} : emu_test::kernel_variants(cap)) {
          emu_test::VariantScope scope(kernel);
          SCOPED_TRACE("kernel variant " + std::to_string(kernel));
          LabelsScores got{std::vector<int32_t>(count, -7), std::vector<float>(count, -7.f)};
          p.labels = got.labels.data();
          p.scores = got.scores.data();
          ASSERT_EQ(emu_test::segment_windows_with_scratch(p), 0);
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the emulated launch is asynchronous
          expect_same_decisions(got, want, softmax ? "many windows softmax" : "many windows");
        }
      }
    }
  }
}

// ---- segment_windows: class pruning and the fast arithmetic (sigmoid path) -------------------------------------
// The tiled kernel's bound pass skips, per output tile, the classes whose upper bound is below another class's
// lower bound. It must change nothing: with Pruning::kOn and Pruning::kBoundsOnly (same arithmetic, every class
// evaluated) labels and scores are bit-identical, and both match the CPU op as the unpruned kernel does.

struct PruneCase {
  const char* what;
  int64_t classes, grid, head, scaled_h, scaled_w, out_h, out_w, stride;
  int kind;  // logits: 0 uniform [-5, 5]; 1 one class per region dominates; 2 all classes equal; 3 pairs equal
             // (odd classes copy the even one below); 4 a NaN; 5 one huge (1e31) and one deep (-70) logit;
             // 6 dominated, with logits around -40 (sums below -88 in both windows' overlap: still fast);
             // 7 uniform [-39.5, 39.5]: steep rows within the chained exponentials' range (their worst case)
  bool half;
};

// Logits where each region (2 x 4 cells) of the grid has one clearly winning class (what a trained model gives),
// the others low.
std::vector<float> dominated_logits(int64_t windows, int64_t classes, int64_t grid, std::mt19937& rng, float offset) {
  std::vector<float> logits =
      emu_test::random_floats(static_cast<size_t>(windows * classes * grid * grid), rng, -9.f, -4.f);
  std::uniform_int_distribution<int64_t> pick(0, classes - 1);
  for (int64_t k = 0; k < windows; ++k) {
    for (int64_t by = 0; by < grid; by += 2) {
      for (int64_t bx = 0; bx < grid; bx += 4) {
        const int64_t winner = pick(rng);
        for (int64_t y = by; y < std::min(by + 2, grid); ++y) {
          for (int64_t x = bx; x < std::min(bx + 4, grid); ++x) {
            logits[static_cast<size_t>(((k * classes + winner) * grid + y) * grid + x)] = 3.f;
          }
        }
      }
    }
  }
  for (float& v : logits) v += offset;
  return logits;
}

LabelsScores run_windows(zsseg::SegmentWindowsParams p, bool cuda, bool half, const std::vector<__half>& logits_half) {
  const size_t count = static_cast<size_t>(p.out_height * p.out_width);
  LabelsScores out{std::vector<int32_t>(count, -7), std::vector<float>(count, -7.f)};
  p.labels = out.labels.data();
  p.scores = out.scores.data();
  if (!cuda) {
    EXPECT_TRUE(zsseg::segment_windows_cpu(p));
    return out;
  }
  if (half) {
    p.logits = logits_half.data();
    p.dtype = DType::Float16;
  }
  EXPECT_EQ(emu_test::segment_windows_with_scratch(p), 0);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the emulated launch is asynchronous
  return out;
}

TEST(SegmentWindowsEmulated, PruningIsExact) {
  using zsseg::segment_windows_testing::Pruning;
  const std::vector<PruneCase> cases{
      {"uniform, photo at 1/8 (two windows side by side, 16x head)", 11, 4, 64, 64, 85, 47, 63, 43, 0, false},
      {"dominated, photo at 1/8", 24, 4, 64, 64, 85, 47, 63, 43, 1, false},
      {"dominated, fp16", 24, 4, 64, 64, 85, 47, 63, 43, 1, true},
      {"dominated, portrait (windows stacked: rows of the two windows differ)", 17, 4, 64, 85, 64, 63, 47, 43, 1,
       false},
      {"dominated, 2x2 windows (four at a footprint: generic tiles)", 9, 2, 24, 40, 40, 45, 47, 16, 1, false},
      {"all classes equal", 12, 4, 64, 64, 85, 47, 63, 43, 2, false},
      {"equal pairs (lowest index on ties)", 12, 4, 64, 64, 85, 47, 63, 43, 3, false},
      {"a NaN logit", 10, 4, 64, 64, 85, 47, 63, 43, 4, false},
      {"a huge and a deep logit", 10, 4, 64, 64, 85, 47, 63, 43, 5, false},
      {"dominated, logits near -40", 16, 4, 64, 64, 85, 47, 63, 43, 6, false},
      {"one window, output larger than the rescaled image (edge tiles)", 7, 5, 32, 32, 32, 45, 41, 32, 1, false},
      {"steep logits within +-40 (the chained rows' worst case)", 11, 4, 64, 64, 85, 47, 63, 43, 7, false},
  };
  std::mt19937 rng(15);
  for (int64_t cap : emu_test::grid_caps()) {
    zs_emu::GridCapScope scope(cap);
    for (const PruneCase& c : cases) {
      const auto windows = sliding(c.scaled_h, c.scaled_w, c.head, c.stride);
      const int64_t n = static_cast<int64_t>(windows.size());
      std::vector<float> logits;
      if (c.kind == 1 || c.kind == 6) {
        logits = dominated_logits(n, c.classes, c.grid, rng, c.kind == 6 ? -40.f : 0.f);
      } else {
        const float range = c.kind == 7 ? 39.5f : 5.f;
        logits = emu_test::random_floats(static_cast<size_t>(n * c.classes * c.grid * c.grid), rng, -range, range);
      }
      const int64_t plane = c.grid * c.grid;
      for (int64_t k = 0; k < n; ++k) {
        for (int64_t cl = 1; cl < c.classes; ++cl) {
          float* dst = logits.data() + (k * c.classes + cl) * plane;
          const float* src = logits.data() + (k * c.classes + (c.kind == 2 ? 0 : cl - 1)) * plane;
          if (c.kind == 2 || (c.kind == 3 && cl % 2 == 1)) std::copy(src, src + plane, dst);
        }
      }
      if (c.kind == 4) logits[logits.size() / 3] = std::numeric_limits<float>::quiet_NaN();
      if (c.kind == 5) {
        logits[logits.size() / 3] = 1e31f;
        logits[logits.size() / 2] = -70.f;
      }
      std::vector<__half> logits_half;
      if (c.half) logits_half = emu_test::round_to_half(logits);
      std::vector<float> bias(static_cast<size_t>(c.classes));
      for (size_t k = 0; k < bias.size(); ++k) bias[k] = (k % 3 == 0) ? 0.1f : 0.f;
      if (c.kind == 2 || c.kind == 3) std::fill(bias.begin(), bias.end(), 0.05f);  // ties must stay ties
      zsseg::SegmentWindowsParams p;
      p.num_windows = n;
      p.classes = c.classes;
      p.in_height = p.in_width = c.grid;
      p.windows = windows.data();
      p.head_height = p.head_width = c.head;
      p.scaled_height = c.scaled_h;
      p.scaled_width = c.scaled_w;
      p.out_height = c.out_h;
      p.out_width = c.out_w;
      p.class_bias = bias.data();
      p.logits = logits.data();
      const LabelsScores want = run_windows(p, false, false, logits_half);
      for (int kernel : emu_test::kernel_variants(cap, true)) {
        emu_test::VariantScope variant_scope(kernel);
        zsseg::segment_windows_testing::reset_prune_stats();
        LabelsScores pruned, all;
        {
          emu_test::PruningScope on(Pruning::kOn);
          pruned = run_windows(p, true, c.half, logits_half);
        }
        const auto stats = zsseg::segment_windows_testing::prune_stats();
        {
          emu_test::PruningScope bounds(Pruning::kBoundsOnly);
          all = run_windows(p, true, c.half, logits_half);
        }
        LabelsScores off;
        {
          emu_test::PruningScope none(Pruning::kOff);
          off = run_windows(p, true, c.half, logits_half);
        }
        SCOPED_TRACE(std::string(c.what) + ", grid cap " + std::to_string(cap) + ", kernel variant " +
                     std::to_string(kernel));
        ASSERT_GT(stats.tiles, 0) << "the bound pass ran";
        using zsseg::segment_windows_testing::Variant;
        // chained exponentials: only the chain variant, only with a power-of-two head scale (grid 4 -> head 64) and
        // logits within +-40 (not kind 6, not the huge/deep or NaN logits' tiles)
        if (kernel != static_cast<int>(Variant::kColumnsChain) || c.grid * 16 != c.head || c.kind == 6) {
          EXPECT_EQ(stats.chained_rows, 0) << "no chained rows";
        } else if (c.kind <= 3 || c.kind == 7) {
          EXPECT_GT(stats.chained_rows, stats.fast_tiles) << "chained rows in the fast tiles";
        }
        EXPECT_EQ(pruned.labels, all.labels);
        ASSERT_EQ(pruned.scores.size(), all.scores.size());
        for (size_t i = 0; i < all.scores.size(); ++i) {  // bit-identical (NaN included)
          ASSERT_EQ(std::memcmp(&pruned.scores[i], &all.scores[i], sizeof(float)), 0) << "pixel " << i;
        }
        expect_same_decisions(pruned, want, c.what);
        expect_same_decisions(off, want, c.what);
        if ((c.kind == 1 || c.kind == 6) && c.head == 64) {  // the photo-like layouts (16x head upsampling)
          EXPECT_LT(stats.kept, stats.classes * 3 / 4) << "a dominated map prunes classes";
        }
        if (c.kind == 2) {
          EXPECT_EQ(stats.kept, stats.classes) << "equal classes: nothing can be pruned";
          EXPECT_EQ(pruned.labels, std::vector<int32_t>(pruned.labels.size(), 0)) << "ties: the lowest index";
        }
        if (c.kind == 3) {
          for (int32_t l : pruned.labels) EXPECT_EQ(l % 2, 0) << "a tie with the class below: the lower index";
          EXPECT_EQ(pruned.labels, want.labels);
        }
        if (c.kind == 4 || c.kind == 5) {
          EXPECT_LT(stats.fast_tiles, stats.tiles) << "non-finite, huge or deep logits: generic tiles";
        }
        if (c.kind == 1 && !c.half && c.grid == 4 && c.scaled_h < c.scaled_w) {
          EXPECT_EQ(stats.fast_tiles, stats.tiles) << "tame side-by-side windows: every tile fast";
        }
        if (c.kind == 4) {
          EXPECT_TRUE(std::any_of(pruned.scores.begin(), pruned.scores.end(), [](float v) { return std::isnan(v); }));
          EXPECT_EQ(pruned.labels, want.labels);
        }
      }  // kernel variants
    }
  }
}

}  // namespace
