// Window placements of the multi-window ops (segment_windows, class_state): parsed and checked once, here.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "array_args.h"
#include "resize_args.h"
#include "zsseg/segment_windows.h"

namespace zsseg_py {

inline constexpr std::int64_t kMaxSide = 1 << 20;

// True when the windows cover every pixel of the height x width image (sweep over the row bands).
inline bool windows_cover(const std::vector<zsseg::WindowPlacement>& windows, std::int64_t height, std::int64_t width) {
  std::vector<std::int64_t> cuts{0, height};
  for (const auto& w : windows) cuts.push_back(w.y1), cuts.push_back(w.y2);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  for (std::size_t b = 0; b + 1 < cuts.size(); ++b) {
    const std::int64_t y = cuts[b];
    if (y >= height) break;
    std::vector<std::pair<std::int64_t, std::int64_t>> spans;
    for (const auto& w : windows) {
      if (w.y1 <= y && y < w.y2) spans.emplace_back(w.x1, w.x2);
    }
    std::sort(spans.begin(), spans.end());
    std::int64_t reach = 0;
    for (const auto& s : spans) {
      if (s.first > reach) return false;
      reach = std::max(reach, s.second);
    }
    if (reach < width) return false;
  }
  return true;
}

inline std::int64_t positive(const ArgParser& args, std::int64_t v, const std::string& what) {
  if (v < 1 || v > kMaxSide)
    args.fail_value(what + " must be in 1.." + std::to_string(kMaxSide) + ", got " + std::to_string(v));
  return v;
}

// The sizes the multi-window ops take: head_size, scaled_size and the op's own (`size_name`: output_size,
// state_size), each (height, width), then every side checked in 1..kMaxSide.
struct WindowSizes {
  std::vector<std::int64_t> head, scaled, size;
};

inline WindowSizes parse_window_sizes(const ArgParser& args, py::handle head_size, py::handle scaled_size,
                                      py::handle size, const char* size_name) {
  WindowSizes s{parse_int_tuple(args, head_size, "head_size", 2, "(height, width)"),
                parse_int_tuple(args, scaled_size, "scaled_size", 2, "(height, width)"),
                parse_int_tuple(args, size, size_name, 2, "(height, width)")};
  for (int i = 0; i < 2; ++i) {
    positive(args, s.head[i], "head_size");
    positive(args, s.scaled[i], "scaled_size");
    positive(args, s.size[i], size_name);
  }
  return s;
}

inline std::vector<zsseg::WindowPlacement> parse_windows(const ArgParser& args, py::handle windows_obj,
                                                         const std::vector<std::int64_t>& scaled,
                                                         const std::vector<std::int64_t>& head) {
  if (!py::isinstance<py::sequence>(windows_obj) || py::isinstance<py::str>(windows_obj)) {
    args.fail_type("windows must be a sequence of (y1, y2, x1, x2), got " +
                   py::str(py::type::of(windows_obj).attr("__name__")).cast<std::string>());
  }
  std::vector<zsseg::WindowPlacement> windows;
  for (py::handle item : sequence_items(windows_obj)) {  // the tuple lives until the loop ends
    const std::string name = "windows[" + std::to_string(windows.size()) + "]";
    const auto w = parse_int_tuple(args, item, name.c_str(), 4, "(y1, y2, x1, x2)");
    if (w[0] < 0 || w[1] > scaled[0] || w[0] >= w[1] || w[2] < 0 || w[3] > scaled[1] || w[2] >= w[3] ||
        w[1] - w[0] > head[0] || w[3] - w[2] > head[1]) {
      args.fail_value(name + " = " + tuple_str(w) + " must lie inside the rescaled image " + tuple_str(scaled) +
                      " and be at most the head size " + tuple_str(head));
    }
    windows.push_back({static_cast<std::int32_t>(w[0]), static_cast<std::int32_t>(w[1]),
                       static_cast<std::int32_t>(w[2]), static_cast<std::int32_t>(w[3])});
  }
  return windows;
}

}  // namespace zsseg_py
