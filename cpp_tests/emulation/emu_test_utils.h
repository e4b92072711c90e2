// Helpers for the tests of the CUDA kernels run on the host (csrc/emu): random data, fp16 round trips, and the
// grid caps every case runs under (the real 65535, and a tiny one so that grid-stride loops wrap).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "emu/cuda_emu.h"

namespace emu_test {

// The reports the emulated runtime made so far (taking them: a test that provokes one on purpose takes it before it
// ends, or emu_reports_listener.cpp fails the test). Waits for the streams to settle first.
inline std::vector<zs_emu::Report> take_reports() {
  zs_emu::settle();
  return zs_emu::take_reports();
}

// 65535: the launchers' real cap; 2: every grid-stride loop and every strided grid dimension wraps.
inline const std::vector<std::int64_t>& grid_caps() {
  static const std::vector<std::int64_t> caps{65535, 2};
  return caps;
}

inline std::vector<float> random_floats(std::size_t count, std::mt19937& rng, float low, float high) {
  std::uniform_real_distribution<float> dist(low, high);
  std::vector<float> values(count);
  for (float& v : values) v = dist(rng);
  return values;
}

// Rounds every value to fp16 in place (so the fp32 CPU op sees exactly what the fp16 kernel reads) and returns
// the fp16 copy.
inline std::vector<__half> round_to_half(std::vector<float>& values) {
  std::vector<__half> halves(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    halves[i] = __float2half_rn(values[i]);
    values[i] = __half2float(halves[i]);
  }
  return halves;
}

inline std::vector<float> to_floats(const std::vector<__half>& halves) {
  std::vector<float> values(halves.size());
  for (std::size_t i = 0; i < halves.size(); ++i) values[i] = __half2float(halves[i]);
  return values;
}

}  // namespace emu_test
