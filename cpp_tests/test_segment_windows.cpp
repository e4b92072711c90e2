// GoogleTest: CPU fused multi-window post-processing vs the unfused composition of the CPU ops (upsample_cpu per
// window with the fused calibration, an fp32 merge in window order, segment_cpu without calibration): equal
// labels and scores, on random shapes with 1..4 windows per direction, padded windows, C = 1 and NaN; and with
// logits where one class dominates each region (the class-pruning paths: most classes skipped per tile), logits
// like a random-weight model's (classes within 1e-3 of each other: only the bounded path's per-pixel bounds prune),
// all classes equal (nothing to prune), equal pairs (ties), NaN and huge logits among them, windows that are not a
// grid. Every case runs each form of the sigmoid path (bounded, tiles, streaming; forced through
// segment_windows_cpu_testing) and the automatic choice, and checks which form ran.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "zsseg/segment.h"
#include "zsseg/segment_windows.h"
#include "zsseg/segment_windows_cpu_testing.h"
#include "zsseg/upsample.h"

namespace {

using zsseg::WindowPlacement;
using zsseg::segment_windows_cpu_testing::Path;

class PathScope {  // forces a form of the sigmoid path for the scope's lifetime
 public:
  explicit PathScope(Path path) : old_(zsseg::segment_windows_cpu_testing::forced_path()) {
    zsseg::segment_windows_cpu_testing::force_path(path);
  }
  ~PathScope() { zsseg::segment_windows_cpu_testing::force_path(old_); }
  PathScope(const PathScope&) = delete;
  PathScope& operator=(const PathScope&) = delete;

 private:
  Path old_;
};

std::vector<WindowPlacement> sliding(int64_t h, int64_t w, int64_t crop, int64_t stride) {
  const int64_t hg = std::max<int64_t>(h - crop + stride - 1, 0) / stride + 1;
  const int64_t wg = std::max<int64_t>(w - crop + stride - 1, 0) / stride + 1;
  std::vector<WindowPlacement> out;
  for (int64_t i = 0; i < hg; ++i) {
    for (int64_t j = 0; j < wg; ++j) {
      const int64_t y2 = std::min(i * stride + crop, h), x2 = std::min(j * stride + crop, w);
      out.push_back({static_cast<int32_t>(std::max<int64_t>(y2 - crop, 0)), static_cast<int32_t>(y2),
                     static_cast<int32_t>(std::max<int64_t>(x2 - crop, 0)), static_cast<int32_t>(x2)});
    }
  }
  return out;
}

struct Case {
  int64_t classes, grid, head, scaled_h, scaled_w, out_h, out_w;
  bool with_nan;
  int kind = 0;  // 0 normal(0, 3); 1 a winner per 2x2 cells at +4, the rest normal(-6, 1); 2 all classes equal;
                 // 3 dominated, odd classes copy the even one below (ties); 4 dominated with a 1e31 logit;
                 // 5 like a random-weight model's: normal(0.01, 0.0015) per class offset plus normal(0, 0.0015);
                 // 6 as 5, odd classes copy the even one below (ties); 7 as 5 with biases uniform in [0, 2e-3) (a
                 // calibration's size, so that classes with different biases compete); 8 every map constant, class c
                 // at 0.01 + c 1e-9 (distinct logits, equal sigmoids: ties between classes whose bounds differ)
  int64_t stride = 0;                      // the windows' stride (0: 3/4 of the head)
  std::vector<WindowPlacement> windows{};  // explicit windows instead of the sliding ones
};

// Which forms ran during one call: the form the call ended in, and its bound pass's kept fraction.
struct Ran {
  Path form = Path::kAuto;
  double kept = 1.0;   // kept / pairs of the bound passes run
  int64_t probed = 0;  // tiles of the bounded path that evaluated probes
};

Ran forms_since(const zsseg::segment_windows_cpu_testing::Stats& before) {
  const auto now = zsseg::segment_windows_cpu_testing::stats();
  Ran ran;
  ran.form = now.bounded > before.bounded     ? Path::kBounded
             : now.tiled > before.tiled       ? Path::kTiles
             : now.streamed > before.streamed ? Path::kStreaming
                                              : Path::kAuto;  // kAuto: none counted (identity calibration)
  if (now.pairs > before.pairs) ran.kept = double(now.kept - before.kept) / double(now.pairs - before.pairs);
  ran.probed = now.probed - before.probed;
  return ran;
}

// Checks every form against the unfused composition; returns what the automatic choice ran.
Ran check(const Case& c, std::mt19937& rng) {
  const int64_t stride = c.stride > 0 ? c.stride : (c.head * 3 / 4 > 0 ? c.head * 3 / 4 : 1);
  const auto windows = c.windows.empty() ? sliding(c.scaled_h, c.scaled_w, c.head, stride) : c.windows;
  const int64_t n = static_cast<int64_t>(windows.size());
  std::normal_distribution<float> normal(0.f, 3.f), low(-6.f, 1.f), offset(0.01f, 0.0015f), noise(0.f, 0.0015f);
  std::vector<float> logits(static_cast<size_t>(n * c.classes * c.grid * c.grid));
  const int64_t plane = c.grid * c.grid;
  for (float& v : logits) v = c.kind == 0 || c.kind == 2 ? normal(rng) : low(rng);
  if (c.kind == 8) {
    for (int64_t k = 0; k < n * c.classes; ++k) {
      std::fill(logits.begin() + k * plane, logits.begin() + (k + 1) * plane, 0.01f + 1e-9f * float(k % c.classes));
    }
  }
  if (c.kind == 5 || c.kind == 6 || c.kind == 7) {
    for (int64_t k = 0; k < n * c.classes; ++k) {
      const float base = offset(rng);
      for (int64_t e = 0; e < plane; ++e) logits[static_cast<size_t>(k * plane + e)] = base + noise(rng);
    }
  }
  if (c.kind == 1 || c.kind == 3 || c.kind == 4) {
    std::uniform_int_distribution<int64_t> pick(0, c.classes - 1);
    for (int64_t k = 0; k < n; ++k) {
      for (int64_t y = 0; y < c.grid; ++y) {
        for (int64_t x = 0; x < c.grid; ++x) {
          if (y % 2 == 0 && x % 2 == 0) {
            const int64_t winner = pick(rng);
            for (int64_t yy = y; yy < std::min(y + 2, c.grid); ++yy) {
              for (int64_t xx = x; xx < std::min(x + 2, c.grid); ++xx) {
                logits[static_cast<size_t>((k * c.classes + winner) * plane + yy * c.grid + xx)] = 4.f;
              }
            }
          }
        }
      }
    }
  }
  for (int64_t k = 0; k < n; ++k) {
    for (int64_t cl = 1; cl < c.classes; ++cl) {
      if (c.kind == 2 || ((c.kind == 3 || c.kind == 6) && cl % 2 == 1)) {
        const int64_t from = c.kind == 2 ? 0 : cl - 1;
        std::copy(logits.begin() + (k * c.classes + from) * plane, logits.begin() + (k * c.classes + from + 1) * plane,
                  logits.begin() + (k * c.classes + cl) * plane);
      }
    }
  }
  if (c.with_nan) logits[logits.size() / 2] = std::numeric_limits<float>::quiet_NaN();
  if (c.kind == 4) logits[logits.size() / 3] = 1e31f;
  std::vector<float> bias(static_cast<size_t>(c.classes));
  for (int64_t k = 0; k < c.classes; ++k)
    bias[k] = (k % 3 == 0 && c.kind != 2 && c.kind != 3 && c.kind != 6 && c.kind != 8) ? 0.1f : 0.f;
  std::uniform_real_distribution<float> small(0.f, 2e-3f);
  if (c.kind == 7) {
    for (float& b : bias) b = small(rng);
  }

  // unfused: per-window calibrated scores at the head size, cut, fp32 merge, then segment without calibration
  std::vector<float> total(static_cast<size_t>(c.classes * c.scaled_h * c.scaled_w), 0.f);
  std::vector<float> count(static_cast<size_t>(c.scaled_h * c.scaled_w), 0.f);
  std::vector<float> window(static_cast<size_t>(c.classes * c.head * c.head));
  for (int64_t k = 0; k < n; ++k) {
    zsseg::UpsampleParams up;
    up.input = logits.data() + k * c.classes * c.grid * c.grid;
    up.output = window.data();
    up.geometry = zsseg::ResizeGeometry{1, c.classes, c.grid, c.grid, 0, 0, c.grid, c.grid, c.head, c.head};
    up.apply_sigmoid = true;
    up.class_bias = bias.data();
    zsseg::upsample_cpu(up);
    const WindowPlacement& w = windows[static_cast<size_t>(k)];
    for (int64_t cl = 0; cl < c.classes; ++cl) {
      for (int64_t y = w.y1; y < w.y2; ++y) {
        for (int64_t x = w.x1; x < w.x2; ++x) {
          total[(cl * c.scaled_h + y) * c.scaled_w + x] += window[(cl * c.head + (y - w.y1)) * c.head + (x - w.x1)];
        }
      }
    }
    for (int64_t y = w.y1; y < w.y2; ++y) {
      for (int64_t x = w.x1; x < w.x2; ++x) count[y * c.scaled_w + x] += 1.f;
    }
  }
  if (n > 1) {
    for (int64_t cl = 0; cl < c.classes; ++cl) {
      for (int64_t i = 0; i < c.scaled_h * c.scaled_w; ++i) total[cl * c.scaled_h * c.scaled_w + i] /= count[i];
    }
  }
  std::vector<int32_t> labels_ref(static_cast<size_t>(c.out_h * c.out_w)), labels(labels_ref.size());
  std::vector<float> scores_ref(labels_ref.size()), scores(labels_ref.size());
  zsseg::SegmentParams seg;
  seg.logits = total.data();
  seg.apply_sigmoid = false;
  seg.labels = labels_ref.data();
  seg.scores = scores_ref.data();
  seg.geometry =
      zsseg::ResizeGeometry{1, c.classes, c.scaled_h, c.scaled_w, 0, 0, c.scaled_h, c.scaled_w, c.out_h, c.out_w};
  zsseg::segment_cpu(seg);

  zsseg::SegmentWindowsParams p;
  p.logits = logits.data();
  p.num_windows = n, p.classes = c.classes, p.in_height = c.grid, p.in_width = c.grid;
  p.windows = windows.data();
  p.head_height = p.head_width = c.head;
  p.scaled_height = c.scaled_h, p.scaled_width = c.scaled_w, p.out_height = c.out_h, p.out_width = c.out_w;
  p.class_bias = bias.data();
  p.labels = labels.data();
  p.scores = scores.data();
  Ran automatic;
  for (Path path : {Path::kAuto, Path::kBounded, Path::kTiles, Path::kStreaming}) {
    SCOPED_TRACE("form " + std::to_string(static_cast<int>(path)) + ", C = " + std::to_string(c.classes) + ", kind " +
                 std::to_string(c.kind));
    std::fill(labels.begin(), labels.end(), -7);
    std::fill(scores.begin(), scores.end(), -7.f);
    const auto before = zsseg::segment_windows_cpu_testing::stats();
    {
      PathScope scope(path);
      EXPECT_TRUE(zsseg::segment_windows_cpu(p));
    }
    const Ran ran = forms_since(before);
    if (path == Path::kAuto) automatic = ran;
    if (path == Path::kStreaming || c.classes == 1) EXPECT_EQ(ran.form, c.classes == 1 ? Path::kStreaming : path);
    if (path == Path::kTiles && c.classes > 1) EXPECT_EQ(ran.form, Path::kTiles);
    size_t differ = labels.size();  // the first pixel whose label or score differs (NaN equals NaN)
    for (size_t i = 0; i < labels.size() && differ == labels.size(); ++i) {
      const bool same_score = std::isnan(scores_ref[i]) ? std::isnan(scores[i]) : scores[i] == scores_ref[i];
      if (labels[i] != labels_ref[i] || !same_score) differ = i;
    }
    EXPECT_EQ(differ, labels.size()) << "label " << labels[differ % labels.size()] << " vs "
                                     << labels_ref[differ % labels.size()] << ", score "
                                     << scores[differ % labels.size()] << " vs " << scores_ref[differ % labels.size()];
  }
  return automatic;
}

TEST(SegmentWindowsCpu, EqualsTheUnfusedComposition) {
  std::mt19937 rng(7);
  const Case cases[] = {
      {5, 4, 32, 32, 70, 30, 66, false},              // two windows side by side, downsampled output
      {3, 3, 16, 50, 50, 77, 81, false},              // 3x3 windows, upsampled output
      {1, 2, 8, 8, 8, 5, 5, false},                   // one window, C = 1
      {7, 5, 24, 20, 60, 21, 59, false},              // windows smaller than the head (zero-padded inputs)
      {4, 4, 32, 64, 100, 60, 90, true},              // NaN in one window
      {171, 4, 64, 64, 85, 375 / 5, 500 / 5, false},  // the photo case, scaled down
      {40, 8, 128, 128, 170, 300, 400, false, 1},     // dominated: pruned paths
      {40, 8, 128, 128, 170, 300, 400, true, 1},      // dominated, a NaN
      {12, 8, 128, 170, 128, 90, 67, false, 3},       // dominated with equal pairs, windows stacked, downsampled
      {20, 8, 128, 128, 170, 150, 200, false, 4},     // dominated, a huge logit
      {16, 4, 64, 64, 85, 75, 100, false, 2},         // all classes equal: nothing to prune
  };
  for (const Case& c : cases) check(c, rng);
}

// The bounded path (per-pixel bounds) on the logits it is for: classes close together, as a random-weight model's.
TEST(SegmentWindowsCpu, BoundedPathPrunesCloseClassesExactly) {
  std::mt19937 rng(11);
  // the benchmark photo's geometry at 1/4: two windows side by side, 16x head upsampling, a downsampled output
  const Ran photo = check({171, 8, 128, 128, 170, 94, 125, false, 5}, rng);
  EXPECT_EQ(photo.form, Path::kBounded);
  EXPECT_LT(photo.kept, 0.05) << "per-pixel bounds leave about one class per tile";
  // windows stacked, an upsampled output, 2 x 2 windows
  EXPECT_EQ(check({37, 6, 96, 150, 96, 170, 110, false, 5}, rng).form, Path::kBounded);
  EXPECT_EQ(check({23, 4, 64, 100, 110, 80, 90, false, 5}, rng).form, Path::kBounded);
  // stride a third of the head: up to 3 x 3 windows at a pixel (counts 1..9, up to 27 x taps per pixel)
  EXPECT_EQ(check({19, 6, 48, 100, 110, 77, 95, false, 5, 16}, rng).form, Path::kBounded);
  // dominated logits (a winner per 2 x 2 cells): at the regions' boundaries the bounds leave many classes, and
  // probes (classes evaluated exactly first) raise the lower bounds
  const Ran dominated = check({40, 8, 128, 128, 170, 300, 400, false, 1}, rng);
  EXPECT_EQ(dominated.form, Path::kBounded);
  EXPECT_GT(dominated.probed, 0);
  EXPECT_LT(dominated.kept, 0.25) << "without probes the bounds keep about half the classes here";
  // small biases of every size: classes with different biases compete in the per-pixel bounds
  const Ran calibrated = check({64, 8, 128, 128, 170, 94, 125, false, 7}, rng);
  EXPECT_EQ(calibrated.form, Path::kBounded);
  EXPECT_LT(calibrated.kept, 0.2);
}

TEST(SegmentWindowsCpu, BoundedPathKeepsTiesAndStepsAsideWhereItDoesNotApply) {
  std::mt19937 rng(12);
  // all classes equal: every class ties everywhere, nothing is pruned (forced, the bounded path lists them all)
  const Ran equal = check({16, 4, 64, 64, 85, 75, 100, false, 2}, rng);
  EXPECT_EQ(equal.form, Path::kStreaming) << "nothing to prune: the streaming path";
  // equal pairs among close classes: the pairs' twins are kept (a tie is not pruned), the lower index wins
  const Ran pairs = check({30, 8, 128, 128, 170, 94, 125, false, 6}, rng);
  EXPECT_EQ(pairs.form, Path::kBounded);
  EXPECT_LT(pairs.kept, 0.2);
  check({12, 8, 128, 170, 128, 90, 67, false, 3}, rng);  // dominated pairs
  // distinct logits whose sigmoids tie: the bounds must not separate equal values, the lowest index wins
  check({24, 4, 64, 64, 85, 47, 63, false, 8}, rng);
  // a NaN or a huge logit: not tame, the tile path (or streaming) runs
  EXPECT_NE(check({40, 8, 128, 128, 170, 300, 400, true, 1}, rng).form, Path::kBounded);
  EXPECT_NE(check({20, 8, 128, 128, 170, 150, 200, false, 4}, rng).form, Path::kBounded);
  // windows that are not a grid (the window count does not factor): not the bounded path
  Case odd{9, 4, 32, 32, 60, 40, 70, false, 5};
  odd.windows = {{0, 32, 0, 32}, {0, 32, 28, 60}, {0, 20, 10, 42}};
  EXPECT_NE(check(odd, rng).form, Path::kBounded);
  // the same window twice (a grid cell twice): not the bounded path
  Case twice{9, 4, 32, 32, 60, 40, 70, false, 5};
  twice.windows = {{0, 32, 0, 32}, {0, 32, 28, 60}, {0, 32, 28, 60}};
  EXPECT_NE(check(twice, rng).form, Path::kBounded);
}

TEST(SegmentWindowsCpu, ReportsUncoveredPixels) {
  const std::vector<float> logits(2 * 1 * 2 * 2, 0.f);
  const WindowPlacement windows[] = {{0, 4, 0, 4}, {0, 4, 5, 9}};  // column 4 uncovered
  std::vector<int32_t> labels(9 * 4);
  std::vector<float> scores(9 * 4);
  zsseg::SegmentWindowsParams p;
  p.logits = logits.data();
  p.num_windows = 2, p.classes = 1, p.in_height = 2, p.in_width = 2;
  p.windows = windows;
  p.head_height = p.head_width = 4;
  p.scaled_height = 4, p.scaled_width = 9, p.out_height = 4, p.out_width = 9;
  p.labels = labels.data();
  p.scores = scores.data();
  EXPECT_FALSE(zsseg::segment_windows_cpu(p));
}

}  // namespace
