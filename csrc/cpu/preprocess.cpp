// CPU image pre-processing (see zsseg/preprocess.h): OpenMP over the output rows of all windows; column taps are
// computed once per window, row taps once per row. Identity rescales read the image directly.
#include <vector>

#include "zsseg/preprocess.h"

namespace zsseg {

void preprocess_cpu(const PreprocessParams& p) {
  const int32_t crop = p.crop;
  float* out = static_cast<float*>(p.output);
  const bool identity = p.scaled_height == p.in_height && p.scaled_width == p.in_width;
  std::vector<LinearU8Tap> columns(static_cast<size_t>(p.scaled_width));
  for (int32_t x = 0; x < p.scaled_width; ++x) columns[x] = linear_u8_column_tap(x, p.in_width, p.scaled_width);
  const int64_t rows = static_cast<int64_t>(p.num_windows) * 3 * crop;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t y = static_cast<int32_t>(r % crop);
    const int32_t c = static_cast<int32_t>((r / crop) % 3);
    const PreprocessWindow& w = p.windows[r / (3 * crop)];
    float* dst = out + r * crop;
    const int32_t height = w.y2 - w.y1, width = w.x2 - w.x1;
    if (y >= height) {
      for (int32_t x = 0; x < crop; ++x) dst[x] = 0.f;
      continue;
    }
    const int32_t sy = w.y1 + y;
    const int32_t ch = preprocess_source_channel(c, p.in_channels, p.bgr);
    const float mean = p.mean[c], stdev = p.std[c];
    if (identity) {
      const uint8_t* src = p.image + (static_cast<int64_t>(sy) * p.in_width + w.x1) * p.in_channels + ch;
      for (int32_t x = 0; x < width; ++x) dst[x] = (static_cast<float>(src[x * p.in_channels]) - mean) / stdev;
    } else {
      const LinearU8Tap ty = linear_u8_row_tap(sy, p.in_height, p.scaled_height);
      for (int32_t x = 0; x < width; ++x) {
        const int32_t v = resized_u8(p.image, p.in_width, p.in_channels, ch, ty, columns[w.x1 + x]);
        dst[x] = (static_cast<float>(v) - mean) / stdev;
      }
    }
    for (int32_t x = width; x < crop; ++x) dst[x] = 0.f;
  }
}

}  // namespace zsseg
