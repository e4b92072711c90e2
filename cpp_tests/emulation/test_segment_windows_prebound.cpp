// The `ordered_prebound` candidate of CUDA segment_windows (csrc/cuda/segment_windows_prebound.cuh), emulated: its
// tiles' bounds from a first launch's 2 x 2 blocks are the footprint's own, so it gives `ordered`'s labels and
// scores bit for bit and keeps the same classes, with fewer global loads in the tiles' bound passes; the control
// (Pruning::kPreboundCellsOnly: blocks of one logit, bounds too tight) must give wrong labels; a launch without its
// scratch is refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "emu/kernels_emulated.h"
#include "emu_test_utils.h"
#include "segment_windows_scopes.h"

// after the emulation's headers (emu/kernels_emulated.h): the emulated build's hooks
#include "cuda/segment_windows_testing.cuh"

namespace {

using zsseg::segment_windows_testing::Pruning;
using zsseg::segment_windows_testing::Variant;

struct Outcome {
  std::vector<int32_t> labels;
  std::vector<float> scores;
  zsseg::segment_windows_testing::PruneStats stats;
};

// The photo case at 1/8 (as PruningIsExact): two windows side by side, 4 x 4 logits -> head 64, rescaled 64 x 85,
// output 47 x 63.
struct Photo {
  std::vector<zsseg::WindowPlacement> windows{{0, 64, 0, 64}, {0, 64, 21, 85}};
  std::vector<float> bias;
  zsseg::SegmentWindowsParams params(const std::vector<float>& logits, int64_t classes) {
    bias.assign(static_cast<std::size_t>(classes), 0.f);
    for (std::size_t c = 0; c < bias.size(); c += 3) bias[c] = 0.1f;  // ZegCLIP's seen/unseen shape
    zsseg::SegmentWindowsParams p;
    p.logits = logits.data();
    p.num_windows = 2;
    p.classes = classes;
    p.in_height = p.in_width = 4;
    p.windows = windows.data();
    p.head_height = p.head_width = 64;
    p.scaled_height = 64;
    p.scaled_width = 85;
    p.out_height = 47;
    p.out_width = 63;
    p.class_bias = bias.data();
    return p;
  }
};

Outcome launch(zsseg::SegmentWindowsParams p, int kernel, Pruning pruning) {
  emu_test::PruningScope pruning_scope(pruning);
  const std::size_t count = static_cast<std::size_t>(p.out_height * p.out_width);
  Outcome out{std::vector<int32_t>(count, -7), std::vector<float>(count, -7.f), {}};
  p.labels = out.labels.data();
  p.scores = out.scores.data();
  p.kernel = kernel;
  zsseg::segment_windows_testing::reset_prune_stats();
  EXPECT_EQ(emu_test::segment_windows_with_scratch(p), 0);
  out.stats = zsseg::segment_windows_testing::prune_stats();
  return out;
}

Outcome cpu(zsseg::SegmentWindowsParams p) {
  const std::size_t count = static_cast<std::size_t>(p.out_height * p.out_width);
  Outcome out{std::vector<int32_t>(count, -7), std::vector<float>(count, -7.f), {}};
  p.labels = out.labels.data();
  p.scores = out.scores.data();
  EXPECT_TRUE(zsseg::segment_windows_cpu(p));
  return out;
}

// Pixels whose label differs from the CPU op's, or whose score is more than 2e-6 from it (NaN: at the same pixels).
int64_t differing(const Outcome& got, const Outcome& want) {
  int64_t bad = 0;
  for (std::size_t i = 0; i < want.labels.size(); ++i) {
    const bool nan = std::isnan(got.scores[i]), want_nan = std::isnan(want.scores[i]);
    const bool score_ok = nan == want_nan && (nan || std::fabs(got.scores[i] - want.scores[i]) <= 2e-6f);
    bad += got.labels[i] != want.labels[i] || !score_ok ? 1 : 0;
  }
  return bad;
}

bool same_bits(const Outcome& a, const Outcome& b) {
  return a.labels == b.labels && std::memcmp(a.scores.data(), b.scores.data(), a.scores.size() * sizeof(float)) == 0;
}

// Logits of `classes` classes, `windows` windows of h x w cells: kind 0 i.i.d. [-5, 5]; 1 dominated (a winner per
// 2 x 2 cells at 3, the rest in [-9, -4]); 2 dominated with a NaN, a +inf and a huge (1e31) logit (the generic
// tiles); 3 every class equal (ties).
std::vector<float> logits_of(int kind, int64_t classes, std::mt19937& rng, int64_t windows = 2, int64_t h = 4,
                             int64_t w = 4) {
  const int64_t plane = h * w, n = windows * classes * plane;
  if (kind == 0) return emu_test::random_floats(static_cast<std::size_t>(n), rng, -5.f, 5.f);
  if (kind == 3) return std::vector<float>(static_cast<std::size_t>(n), 0.25f);
  std::vector<float> logits = emu_test::random_floats(static_cast<std::size_t>(n), rng, -9.f, -4.f);
  std::uniform_int_distribution<int64_t> pick(0, classes - 1);
  for (int64_t k = 0; k < windows; ++k) {
    for (int64_t by = 0; by < h; by += 2) {
      for (int64_t bx = 0; bx < w; bx += 2) {
        const int64_t winner = pick(rng);
        for (int64_t y = by; y < std::min(by + 2, h); ++y) {
          for (int64_t x = bx; x < std::min(bx + 2, w); ++x)
            logits[static_cast<std::size_t>(((k * classes + winner) * h + y) * w + x)] = 3.f;
        }
      }
    }
  }
  if (kind == 2) {
    logits[static_cast<std::size_t>((0 * classes + 2) * plane + 5 % plane)] = NAN;
    logits[static_cast<std::size_t>((1 * classes + 4) * plane + 10 % plane)] = INFINITY;
    logits[static_cast<std::size_t>((1 * classes + 6) * plane + 3 % plane)] = 1e31f;
  }
  return logits;
}

TEST(SegmentWindowsEmulated, PreboundGivesOrderedsResultsWithFewerBoundLoads) {
  const int ordered = static_cast<int>(Variant::kOrdered), prebound = static_cast<int>(Variant::kOrderedPrebound);
  std::mt19937 rng(86);
  for (int kind = 0; kind < 4; ++kind) {
    for (int64_t classes : {int64_t{12}, int64_t{40}}) {
      SCOPED_TRACE("kind " + std::to_string(kind) + ", " + std::to_string(classes) + " classes");
      const std::vector<float> logits = logits_of(kind, classes, rng);
      Photo photo;
      const zsseg::SegmentWindowsParams p = photo.params(logits, classes);
      const Outcome want = cpu(p);
      const Outcome a = launch(p, ordered, Pruning::kOn), b = launch(p, prebound, Pruning::kOn);
      EXPECT_EQ(differing(b, want), 0) << "the CPU op's labels and scores";
      EXPECT_TRUE(same_bits(a, b)) << "ordered's labels and scores, bit for bit";
      EXPECT_EQ(a.stats.tiles, b.stats.tiles);
      EXPECT_EQ(a.stats.kept, b.stats.kept) << "the same classes listed and evaluated";
      EXPECT_EQ(a.stats.fast_tiles, b.stats.fast_tiles) << "the same tiles tame";
      EXPECT_EQ(a.stats.prebound_loads, 0);
      // every logit read once per block it is in: (2h - 1) (2w - 1) per plane
      EXPECT_EQ(b.stats.prebound_loads, 2 * classes * 7 * 7);
      EXPECT_GT(a.stats.bound_loads, 0);
      EXPECT_LT(b.stats.bound_loads * 2, a.stats.bound_loads) << "under half the tiles' loads";
      if (kind == 3) EXPECT_EQ(b.labels, std::vector<int32_t>(b.labels.size(), 1)) << "ties: the lowest index";
    }
  }
}

// Other logit grids and placements (the review of 21e18ae: grids 2, 3, 5, a non-square one, fp16, slot rectangles
// starting at odd rows and columns): a bound that is too loose or too tight changes which classes are kept or which
// tiles are tame even where the labels survive, so the counts are compared with ordered's as well as the bits. Each
// grid also runs the control (blocks of one logit) on i.i.d. and wild logits and must tell it apart, so each grid
// can see a bound too tight (and, with its odd rectangles, one too loose: a block past the rectangle's last row).
struct GridCase {
  std::string name;
  int64_t h, w;  // the logit grid of every window
  std::vector<zsseg::WindowPlacement> windows;
  int64_t scaled_h, scaled_w, out_h, out_w;
  bool half;
};

std::vector<GridCase> grid_cases() {
  const std::vector<zsseg::WindowPlacement> pair{{0, 64, 0, 64}, {0, 64, 21, 85}};  // the photo's, side by side
  // four windows at odd offsets (rows 11, columns 21): footprints meeting 1-4 windows, slot rectangles starting at
  // odd logit rows and columns, rows not shared between slots (the generic tiles)
  const std::vector<zsseg::WindowPlacement> four{{0, 64, 0, 64}, {0, 64, 21, 85}, {11, 75, 0, 64}, {11, 75, 21, 85}};
  return {
      {"grid 2", 2, 2, pair, 64, 85, 47, 63, false},
      {"grid 3", 3, 3, pair, 64, 85, 47, 63, false},
      {"grid 5", 5, 5, pair, 64, 85, 47, 63, false},
      {"grid 3 x 5", 3, 5, pair, 64, 85, 47, 63, false},
      {"grid 5 x 3, fp16", 5, 3, pair, 64, 85, 47, 63, true},
      {"grid 3, fp16", 3, 3, pair, 64, 85, 47, 63, true},
      {"grid 5, four windows at odd offsets", 5, 5, four, 75, 85, 55, 63, false},
      {"grid 4, four windows at odd offsets, fp16", 4, 4, four, 75, 85, 55, 63, true},
      {"grid 7 x 6, four windows at odd offsets", 7, 6, four, 75, 85, 55, 63, false},
  };
}

TEST(SegmentWindowsEmulated, PreboundGivesOrderedsResultsOnOtherGridsAndOffsets) {
  const int ordered = static_cast<int>(Variant::kOrdered), prebound = static_cast<int>(Variant::kOrderedPrebound);
  std::mt19937 rng(2186);
  for (const GridCase& g : grid_cases()) {
    const int64_t n = static_cast<int64_t>(g.windows.size());
    for (int kind = 0; kind < 4; ++kind) {
      {
        const int64_t classes = 24;  // more than a chunk (8): the first chunk, then the bound's survivors
        SCOPED_TRACE(g.name + ", kind " + std::to_string(kind));
        std::vector<float> logits = logits_of(kind, classes, rng, n, g.h, g.w);
        std::vector<__half> halves;
        if (g.half) halves = emu_test::round_to_half(logits);  // the CPU op reads the values the kernel reads
        std::vector<float> bias(static_cast<std::size_t>(classes), 0.f);
        for (std::size_t c = 0; c < bias.size(); c += 3) bias[c] = 0.1f;
        zsseg::SegmentWindowsParams p;
        p.logits = logits.data();
        p.num_windows = n;
        p.classes = classes;
        p.in_height = g.h;
        p.in_width = g.w;
        p.windows = g.windows.data();
        p.head_height = p.head_width = 64;
        p.scaled_height = g.scaled_h;
        p.scaled_width = g.scaled_w;
        p.out_height = g.out_h;
        p.out_width = g.out_w;
        p.class_bias = bias.data();
        const Outcome want = cpu(p);
        if (g.half) {
          p.logits = halves.data();
          p.dtype = zsseg::DType::Float16;
        }
        const Outcome a = launch(p, ordered, Pruning::kOn), b = launch(p, prebound, Pruning::kOn);
        EXPECT_EQ(differing(b, want), 0) << "the CPU op's labels and scores";
        EXPECT_TRUE(same_bits(a, b)) << "ordered's labels and scores, bit for bit";
        EXPECT_GT(a.stats.tiles, 0);
        EXPECT_EQ(a.stats.tiles, b.stats.tiles);
        EXPECT_EQ(a.stats.kept, b.stats.kept) << "the same classes listed and evaluated";
        EXPECT_EQ(a.stats.fast_tiles, b.stats.fast_tiles) << "the same tiles tame";
        EXPECT_EQ(b.stats.prebound_loads, n * classes * (2 * g.h - 1) * (2 * g.w - 1));
        EXPECT_LE(b.stats.bound_loads, a.stats.bound_loads);
        // the control on i.i.d. logits and on those with wild values (equal logits: any bound is exact; dominated
        // ones: a too tight bound of the losers may change nothing)
        if (kind == 1 || kind == 3) continue;
        const Outcome control = launch(p, prebound, Pruning::kPreboundCellsOnly);
        EXPECT_FALSE(same_bits(a, control) && a.stats.kept == control.stats.kept &&
                     a.stats.fast_tiles == control.stats.fast_tiles)
            << "too tight bounds are seen";
      }
    }
  }
}

// The control: blocks of one logit miss a winning class's high logits (the bound is too tight), so the list drops
// a class that wins pixels: the labels differ from the CPU op's. The same logits with the real blocks are exact.
TEST(SegmentWindowsEmulated, PreboundControlWithTooTightBoundsFails) {
  const int64_t classes = 12;
  std::vector<float> logits(static_cast<std::size_t>(2 * classes * 16), -6.f);
  for (int64_t k = 0; k < 2; ++k) {
    for (int64_t i = 0; i < 16; ++i) {
      logits[static_cast<std::size_t>((k * classes + 0) * 16 + i)] = 0.f;                  // class 0 everywhere
      if (i % 2 == 1) logits[static_cast<std::size_t>((k * classes + 1) * 16 + i)] = 4.f;  // class 1: odd columns
    }
  }
  Photo photo;
  zsseg::SegmentWindowsParams p = photo.params(logits, classes);
  photo.bias.assign(static_cast<std::size_t>(classes), 0.f);
  p.class_bias = photo.bias.data();
  const Outcome want = cpu(p);
  const int prebound = static_cast<int>(Variant::kOrderedPrebound);
  EXPECT_GT(std::count(want.labels.begin(), want.labels.end(), 1), 0) << "class 1 wins some pixels";
  EXPECT_EQ(differing(launch(p, prebound, Pruning::kOn), want), 0);
  const Outcome wrong = launch(p, prebound, Pruning::kPreboundCellsOnly);
  EXPECT_GT(differing(wrong, want), 0) << "too tight bounds drop a winning class";
  EXPECT_EQ(wrong.stats.prebound_loads, 2 * classes * 16) << "one logit a block";
}

TEST(SegmentWindowsEmulated, PreboundWithoutItsScratchIsRefused) {
  const int64_t classes = 12;
  std::mt19937 rng(7);
  const std::vector<float> logits = logits_of(1, classes, rng);
  Photo photo;
  zsseg::SegmentWindowsParams p = photo.params(logits, classes);
  std::vector<int32_t> labels(47 * 63, -7);
  std::vector<float> scores(47 * 63, -7.f), scratch(static_cast<std::size_t>(2 * 2 * classes * 16));
  p.labels = labels.data();
  p.scores = scores.data();
  p.kernel = static_cast<int>(Variant::kOrderedPrebound);
  EXPECT_EQ(zsseg::segment_windows_scratch_floats(p, p.kernel), static_cast<int64_t>(scratch.size()));
  EXPECT_EQ(zsseg::segment_windows_cuda_emulated(p, nullptr), cudaErrorInvalidValue) << "no scratch";
  p.scratch = scratch.data();
  p.scratch_floats = static_cast<int64_t>(scratch.size()) - 1;
  EXPECT_EQ(zsseg::segment_windows_cuda_emulated(p, nullptr), cudaErrorInvalidValue) << "one float short";
  p.scratch_floats = static_cast<int64_t>(scratch.size());
  EXPECT_EQ(zsseg::segment_windows_cuda_emulated(p, nullptr), 0);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(std::count(labels.begin(), labels.end(), -7), 0);
  EXPECT_EQ(zsseg::segment_windows_scratch_floats(p, static_cast<int>(Variant::kOrdered)), 0) << "others: none";
}

}  // namespace
