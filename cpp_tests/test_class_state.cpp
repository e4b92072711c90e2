// GoogleTest: class_state's resize to the state size (zsseg/temporal.h: area_span, area_linear_span,
// class_state_pixel) against cv2.resize(INTER_AREA) itself, whose values are written here (OpenCV 4.14 and 5.0 give
// the same: python_tests/ops/test_temporal_ops.py checks the kernel against the installed OpenCV on random sizes).
// Where neither axis enlarges: the area average (computeResizeAreaTab). Where either axis enlarges (a small-input
// bundle's 480x640 frame at stride 4: its 64x85 rescaled image, a 120x160 state; the GPU probe P9 at b235fde met
// it): cv::resize's linear coefficients on both axes. Along an enlarging axis they are the area overlaps up to float
// rounding; along a reducing one (the other axis enlarges) they are another rule altogether.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "zsseg/temporal.h"

namespace {

using zsseg::AreaSpan;

// The dense [dst, src] weights of one axis.
std::vector<std::vector<float>> weights(int64_t src, int64_t dst, bool linear, bool columns) {
  std::vector<std::vector<float>> out(dst, std::vector<float>(src, 0.f));
  for (int64_t d = 0; d < dst; ++d) {
    const AreaSpan s = linear ? zsseg::area_linear_span(d, src, dst, columns) : zsseg::area_span(d, src, dst);
    for (int64_t a = 0; a < s.count; ++a) {
      const int64_t i = zsseg::area_index(s, a);
      EXPECT_GE(i, 0);
      EXPECT_LT(i, src);
      out[d][i] += zsseg::area_weight(s, a);
    }
  }
  return out;
}

TEST(ClassStateResize, WhichRule) {
  EXPECT_FALSE(zsseg::area_enlarges(64, 85, 16, 22));  // a smaller state: the area average
  EXPECT_FALSE(zsseg::area_enlarges(8, 8, 8, 8));
  EXPECT_TRUE(zsseg::area_enlarges(64, 85, 120, 160));  // P9's geometry
  EXPECT_TRUE(zsseg::area_enlarges(8, 8, 9, 2));        // one axis larger: the linear coefficients on both
  EXPECT_TRUE(zsseg::area_enlarges(8, 8, 2, 9));
}

TEST(ClassStateResize, LinearCoefficientsAreOpenCVs) {
  // cv2.resize(np.eye(5, dtype=np.float32), (13, 5), interpolation=cv2.INTER_AREA), column by column
  const float f06 = 0x1.333334p-1f, f04 = 0x1.99999ap-2f, f02m = 0x1.999998p-3f, f08 = 0x1.99999ap-1f,
              f02 = 0x1.99999ap-3f, f04m = 0x1.999998p-2f;
  const std::vector<std::vector<float>> opencv{
      {1, 0, 0, 0, 0},      {1, 0, 0, 0, 0}, {f06, f04, 0, 0, 0}, {0, 1, 0, 0, 0}, {0, 1, 0, 0, 0},
      {0, f02m, f08, 0, 0}, {0, 0, 1, 0, 0}, {0, 0, f08, f02, 0}, {0, 0, 0, 1, 0}, {0, 0, 0, 1, 0},
      {0, 0, 0, f04m, f06}, {0, 0, 0, 0, 1}, {0, 0, 0, 0, 1}};
  EXPECT_EQ(weights(5, 13, true, true), opencv);
  EXPECT_EQ(weights(5, 13, true, false), opencv);
  // the last columns read the last source column alone; the last rows the clamped pair (both weights on it)
  const AreaSpan last_column = zsseg::area_linear_span(12, 5, 13, true),
                 last_row = zsseg::area_linear_span(12, 5, 13, false);
  EXPECT_EQ(last_column.count, 1);
  EXPECT_EQ(zsseg::area_index(last_column, 0), 4);
  EXPECT_EQ(last_row.count, 2);
  EXPECT_EQ(zsseg::area_index(last_row, 0), 4);
  EXPECT_EQ(zsseg::area_index(last_row, 1), 4);
}

TEST(ClassStateResize, OneAxisLargerTakesTheLinearCoefficientsOnBoth) {
  // 8x8 -> 9x2 (the rows enlarge): cv2.resize reduces the columns 8 -> 2 with its linear coefficients, not the area
  // average (what the kernel computed before, where the binding let such a state through)
  const std::vector<std::vector<float>> opencv{{0.25f, 0.75f, 0, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 0.25f, 0.75f, 0, 0}};
  EXPECT_EQ(weights(8, 2, true, true), opencv);
  const std::vector<std::vector<float>> area{{0.25f, 0.25f, 0.25f, 0.25f, 0, 0, 0, 0},
                                             {0, 0, 0, 0, 0.25f, 0.25f, 0.25f, 0.25f}};
  EXPECT_EQ(weights(8, 2, false, true), area);  // the control: the area spans are another rule
}

TEST(ClassStateResize, AreaAverageUnchanged) {
  // 6 -> 4: cell 1.5; cv2.resize(np.eye(6), (4, 6), INTER_AREA) gives 2/3, 1/3 | 1/3, 2/3 ...
  const auto w = weights(6, 4, false, true);
  EXPECT_FLOAT_EQ(w[0][0], 2.f / 3.f);
  EXPECT_FLOAT_EQ(w[0][1], 1.f / 3.f);
  EXPECT_FLOAT_EQ(w[1][1], 1.f / 3.f);
  EXPECT_FLOAT_EQ(w[1][2], 2.f / 3.f);
  EXPECT_FLOAT_EQ(w[3][5], 2.f / 3.f);
}

TEST(ClassStateResize, CpuKernelGivesOpenCVsEnlargement) {
  // one window over a 2x3 rescaled image, the logits at its size (the bilinear step is the identity), no sigmoid,
  // no bias: the state is the resize alone. cv2.resize(m, (4, 5), interpolation=cv2.INTER_AREA), bit for bit.
  const std::vector<float> logits{1, 2, 4, 8, 16, 32};
  const zsseg::WindowPlacement window{0, 2, 0, 3};
  std::vector<float> state(5 * 4, -1.f);
  zsseg::ClassStateParams p;
  p.logits = logits.data();
  p.num_windows = 1, p.classes = 1, p.in_height = 2, p.in_width = 3;
  p.windows = &window;
  p.head_height = 2, p.head_width = 3, p.scaled_height = 2, p.scaled_width = 3;
  p.state_height = 5, p.state_width = 4;
  p.apply_sigmoid = false;
  p.state = state.data();
  zsseg::class_state_cpu(p);
  const float a = 0x1.aaaaacp+0f, b = 0x1.555554p+1f, c = 0x1.e00002p+2f, e = 0x1.7ffffep+3f, g = 0x1.aaaaacp+3f,
              h = 0x1.555554p+4f;
  const std::vector<float> opencv{1, a, b, 4, 1, a, b, 4, 4.5f, c, e, 18, 8, g, h, 32, 8, g, h, 32};
  EXPECT_EQ(state, opencv);
}

}  // namespace
