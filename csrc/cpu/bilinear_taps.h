// Bilinear taps and the two-row blend of the CPU resize kernels (upsample, segment, segment_windows), defined once
// so that their upsampled values stay bit for bit the same (the per-element arithmetic is zsseg/bilinear.h's).
#pragma once
#include <cstdint>
#include <vector>

#include "cpu_dispatch.h"
#include "zsseg/bilinear.h"

namespace zsseg {
namespace cpu {

// The taps of every output index of one axis (out_size indices over in_size source indices).
inline std::vector<BilinearTap> make_taps(int64_t in_size, int64_t out_size) {
  std::vector<BilinearTap> taps(static_cast<size_t>(out_size));
  const float scale = bilinear_scale(in_size, out_size);
  for (int64_t i = 0; i < out_size; ++i) taps[static_cast<size_t>(i)] = bilinear_tap(scale, i, in_size);
  return taps;
}

// Column taps as separate arrays so that the row loops vectorise (gathers on AVX2).
struct ColumnTaps {
  std::vector<int32_t> i0, i1;  // [columns]
  std::vector<float> w0, w1;    // [columns]
};

inline ColumnTaps column_taps(const std::vector<BilinearTap>& taps) {
  ColumnTaps cols;
  for (const BilinearTap& t : taps) {
    cols.i0.push_back(t.i0), cols.i1.push_back(t.i1), cols.w0.push_back(t.w0), cols.w1.push_back(t.w1);
  }
  return cols;
}

// The bilinear value of column x from its two source rows (already offset to the first source column), torch's
// blend order: columns first, then rows.
ZS_CPU_INLINE float blend_at(const float* row0, const float* row1, float wy0, float wy1, const int32_t* i0,
                             const int32_t* i1, const float* w0, const float* w1, int64_t x) {
  return blend2(row0[i0[x]], row0[i1[x]], w0[x], w1[x]) * wy0 + blend2(row1[i0[x]], row1[i1[x]], w0[x], w1[x]) * wy1;
}

}  // namespace cpu
}  // namespace zsseg
