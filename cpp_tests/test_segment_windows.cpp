// GoogleTest: CPU fused multi-window post-processing vs the unfused composition of the CPU ops (upsample_cpu per
// window with the fused calibration, an fp32 merge in window order, segment_cpu without calibration): equal
// labels and scores, on random shapes with 1..4 windows per direction, padded windows, C = 1 and NaN; and with
// logits where one class dominates each region (the class-pruning path: most classes skipped per tile), all
// classes equal (nothing to prune: the streaming path), equal pairs (ties), NaN and huge logits among them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "zsseg/segment.h"
#include "zsseg/segment_windows.h"
#include "zsseg/upsample.h"

namespace {

using zsseg::WindowPlacement;

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
                 // 3 dominated, odd classes copy the even one below (ties); 4 dominated with a 1e31 logit
};

void check(const Case& c, std::mt19937& rng) {
  const auto windows = sliding(c.scaled_h, c.scaled_w, c.head, c.head * 3 / 4 > 0 ? c.head * 3 / 4 : 1);
  const int64_t n = static_cast<int64_t>(windows.size());
  std::normal_distribution<float> normal(0.f, 3.f), low(-6.f, 1.f);
  std::vector<float> logits(static_cast<size_t>(n * c.classes * c.grid * c.grid));
  const int64_t plane = c.grid * c.grid;
  for (float& v : logits) v = c.kind == 0 || c.kind == 2 ? normal(rng) : low(rng);
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
      if (c.kind == 2 || (c.kind == 3 && cl % 2 == 1)) {
        const int64_t from = c.kind == 2 ? 0 : cl - 1;
        std::copy(logits.begin() + (k * c.classes + from) * plane, logits.begin() + (k * c.classes + from + 1) * plane,
                  logits.begin() + (k * c.classes + cl) * plane);
      }
    }
  }
  if (c.with_nan) logits[logits.size() / 2] = std::numeric_limits<float>::quiet_NaN();
  if (c.kind == 4) logits[logits.size() / 3] = 1e31f;
  std::vector<float> bias(static_cast<size_t>(c.classes));
  for (int64_t k = 0; k < c.classes; ++k) bias[k] = (k % 3 == 0 && c.kind != 2 && c.kind != 3) ? 0.1f : 0.f;

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
  ASSERT_TRUE(zsseg::segment_windows_cpu(p));
  for (size_t i = 0; i < labels.size(); ++i) {
    ASSERT_EQ(labels[i], labels_ref[i]) << "pixel " << i;
    if (std::isnan(scores_ref[i])) {
      ASSERT_TRUE(std::isnan(scores[i])) << "pixel " << i;
    } else {
      ASSERT_EQ(scores[i], scores_ref[i]) << "pixel " << i;
    }
  }
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
      {40, 8, 128, 128, 170, 300, 400, false, 1},     // dominated: the pruned path (output tiles of 16 x 64)
      {40, 8, 128, 128, 170, 300, 400, true, 1},      // dominated, a NaN
      {12, 8, 128, 170, 128, 90, 67, false, 3},       // dominated with equal pairs, windows stacked, downsampled
      {20, 8, 128, 128, 170, 150, 200, false, 4},     // dominated, a huge logit
      {16, 4, 64, 64, 85, 75, 100, false, 2},         // all classes equal: nothing to prune
  };
  for (const Case& c : cases) check(c, rng);
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
