// Test hooks of the CPU segment_windows (csrc/cpu/segment_windows.cpp), for cpp_tests: force one form of the sigmoid
// path and read which form ran. Nothing in the library calls these; the default (kAuto) is what the op runs. Plain
// C++ (the CUDA launcher has its own hooks: csrc/cuda/segment_windows_testing.cuh).
#pragma once
#include <cstdint>

namespace zsseg {
namespace segment_windows_cpu_testing {

enum class Path {
  kAuto,       // default: the bounded path where it applies (windows on a grid, every logit finite and |x| <= 1e30)
               // and pays, else the tile path where it pays, else the streaming path
  kBounded,    // the bounded path where it applies, even where it does not pay (else as kAuto)
  kTiles,      // the tile path (tile bounds only), even where it does not pay
  kStreaming,  // no pruning
};

// Process-wide; read when the op is called.
void force_path(Path path);
Path forced_path();

// What the sigmoid path did since the last reset.
struct Stats {
  int64_t bounded = 0, tiled = 0, streamed = 0;  // calls that ran each form
  int64_t tiles = 0, pairs = 0, kept = 0;        // over the bound passes run: tiles, tile-class pairs, pairs kept
  int64_t probed = 0;  // the bounded path's tiles that evaluated probes (classes computed exactly to prune others)
};
Stats stats();
void reset_stats();

}  // namespace segment_windows_cpu_testing
}  // namespace zsseg
