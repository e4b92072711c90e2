// The emulated block's serial schedules (csrc/emu/cuda_emu_block.h): one thread at a time between barriers, in
// thread order or in reverse. A legal GPU schedule that makes a missing barrier deterministic: the result then
// depends on the order. Then the kernels: segment_windows' tiled kernels give the same bits in both orders,
// including a tile that no window reaches (review c783dbf #8: stage_merged had no barrier after zeroing such a
// tile's merged values, and stage 2 read other threads' entries before they were written).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "emu/kernels_emulated.h"
#include "emu_test_utils.h"
#include "segment_windows_scopes.h"

#include "cuda/launch.cuh"

// after the emulation's headers (ZS_CUDA_EMULATION selects the emulated build's hooks)
#include "cuda/segment_windows_testing.cuh"

namespace {

using zs_emu::BlockSchedule;

// Each thread writes its index, then reads its right neighbour's slot: with the barrier always the neighbour's
// index; without it, what the slot held before whenever the neighbour has not run yet.
template <bool Barrier>
__global__ void read_neighbour(int* out) {
  __shared__ int slots[64];
  slots[threadIdx.x] = static_cast<int>(blockIdx.x * 1000 + threadIdx.x);
  if (Barrier) __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = slots[(threadIdx.x + 1) % blockDim.x];
}

// A warp-wide sum by butterfly shuffles (every lane ends with the warp's total).
__global__ void warp_sums(const float* in, float* out) {
  float v = in[blockIdx.x * blockDim.x + threadIdx.x];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

__global__ void shuffle_in_a_partial_warp(float* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}

template <class Launch>
std::vector<int> run_in(BlockSchedule schedule, std::size_t size, const Launch& launch) {
  zs_emu::BlockScheduleScope scope(schedule);
  std::vector<int> out(size, -1);
  launch(out.data());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // launches are asynchronous: run inside the scope
  return out;
}

TEST(BlockSchedule, SerialOrdersExposeAMissingBarrier) {
  const auto with = [](int* out) { ZS_LAUNCH(read_neighbour<true>, dim3(2), dim3(64), nullptr, out); };
  const auto without = [](int* out) { ZS_LAUNCH(read_neighbour<false>, dim3(2), dim3(64), nullptr, out); };
  for (BlockSchedule schedule :
       {BlockSchedule::kConcurrent, BlockSchedule::kSerialForward, BlockSchedule::kSerialReverse}) {
    const std::vector<int> out = run_in(schedule, 128, with);
    for (int b = 0; b < 2; ++b) {
      for (int t = 0; t < 64; ++t) ASSERT_EQ(out[b * 64 + t], b * 1000 + (t + 1) % 64) << b << " " << t;
    }
  }
  // No barrier: in thread order every thread but the last reads a slot its neighbour has not written yet (the
  // previous block's value), in reverse order every thread but the first reads the new one.
  const std::vector<int> forward = run_in(BlockSchedule::kSerialForward, 128, without);
  const std::vector<int> reverse = run_in(BlockSchedule::kSerialReverse, 128, without);
  EXPECT_NE(forward, reverse);
  EXPECT_EQ(reverse[64 + 5], 1006);  // block 1, thread 5: its neighbour ran before it
  EXPECT_EQ(forward[64 + 5], 6);     // block 1, thread 5: still block 0's value
}

TEST(BlockSchedule, WarpShufflesExchangeLanesInEverySchedule) {
  std::vector<float> in(256);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 97);
  for (BlockSchedule schedule :
       {BlockSchedule::kConcurrent, BlockSchedule::kSerialForward, BlockSchedule::kSerialReverse}) {
    zs_emu::BlockScheduleScope scope(schedule);
    std::vector<float> out(256, -1.f);
    ZS_LAUNCH(warp_sums, dim3(2), dim3(128), nullptr, in.data(), out.data());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    for (int w = 0; w < 8; ++w) {
      float total = 0.f;
      for (int lane = 0; lane < 32; ++lane) total += in[static_cast<std::size_t>(w * 32 + lane)];
      for (int lane = 0; lane < 32; ++lane) ASSERT_EQ(out[static_cast<std::size_t>(w * 32 + lane)], total) << w;
    }
  }
}

TEST(BlockSchedule, AShuffleOfAPartialWarpAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<float> out(16, 0.f);
  EXPECT_DEATH(
      {
        ZS_LAUNCH(shuffle_in_a_partial_warp, dim3(1), dim3(16), nullptr, out.data());
        cudaDeviceSynchronize();
      },
      "partial warp");
}

// ---- segment_windows' tiled kernels ----------------------------------------------------------------------------

struct Outputs {
  std::vector<int32_t> labels;
  std::vector<float> scores;
  bool operator==(const Outputs& o) const {
    return labels == o.labels &&
           std::memcmp(scores.data(), o.scores.data(), scores.size() * sizeof(float)) == 0;  // NaN bits too
  }
};

Outputs run_segment_windows(zsseg::SegmentWindowsParams p, BlockSchedule schedule) {
  zs_emu::BlockScheduleScope scope(schedule);
  const std::size_t count = static_cast<std::size_t>(p.out_height * p.out_width);
  Outputs out{std::vector<int32_t>(count, -7), std::vector<float>(count, -7.f)};
  p.labels = out.labels.data();
  p.scores = out.scores.data();
  EXPECT_EQ(emu_test::segment_windows_with_scratch(p), 0);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return out;
}

// One window over the left half of a 16 x 64 rescaled image, output 12 x 40 (blends with weights in (0, 1):
// a stale tap counts), tiles of 16 x 8: the tiles at x >= 32 meet no window (slots == 0), the ones before them on
// each row hold merged values of the window first (shared memory is one static instance in the emulation, and one
// block runs every tile: what a stale read sees). The binding refuses such windows (they do not cover the image);
// the kernel must still give the uncovered pixels merged value 0, and every pixel the same bits in both orders.
// The sigmoid path with pruning on takes the fast path there (it had its barrier); identity, softmax and the
// sigmoid with pruning off take the generic one (run_tile, the softmax kernel), which had none.
TEST(BlockSchedule, SegmentWindowsTileWithoutAWindowIsTheSameInBothOrders) {
  using zsseg::segment_windows_testing::Pruning;
  const int64_t classes = 5, grid = 4, height = 16, width = 64, out_h = 12, out_w = 40;
  const std::vector<zsseg::WindowPlacement> windows{{0, 16, 0, 32}};
  std::mt19937 rng(31);
  const std::vector<float> logits =
      emu_test::random_floats(static_cast<std::size_t>(classes * grid * grid), rng, -3.f, 3.f);
  const std::vector<float> bias{0.05f, 0.f, 0.1f, 0.f, 0.02f};
  zs_emu::GridCapScope one_block(1);  // one block runs every tile, in order: the covered ones first on each row
  for (int variant = 0; variant < 4; ++variant) {  // identity + bias, sigmoid (pruning off) + bias, softmax, sigmoid
    const bool softmax = variant == 2, sigmoid = variant == 1 || variant == 3;
    emu_test::PruningScope pruning(variant == 1 ? Pruning::kOff : Pruning::kOn);
    zsseg::SegmentWindowsParams p;
    p.logits = logits.data();
    p.num_windows = 1;
    p.classes = classes;
    p.in_height = p.in_width = grid;
    p.windows = windows.data();
    p.head_height = 16;
    p.head_width = 32;
    p.scaled_height = height;
    p.scaled_width = width;
    p.out_height = out_h;
    p.out_width = out_w;
    p.class_bias = softmax ? nullptr : bias.data();
    p.apply_sigmoid = sigmoid;
    p.softmax = softmax;
    const Outputs forward = run_segment_windows(p, BlockSchedule::kSerialForward);
    const Outputs reverse = run_segment_windows(p, BlockSchedule::kSerialReverse);
    EXPECT_TRUE(forward == reverse) << "variant " << variant << ": a shared-memory read races with its write";
    // every pixel whose taps are all uncovered (output x >= 20: rescaled columns >= 32): merged 0 for every
    // class, so class 0 wins the tie with 0 (softmax: 1/C each)
    const float uncovered_score = softmax ? 1.f / static_cast<float>(classes) : 0.f;
    for (const Outputs* out : {&forward, &reverse}) {
      std::size_t wrong = 0;
      for (int64_t y = 0; y < out_h; ++y) {
        for (int64_t x = 20; x < out_w; ++x) {
          const std::size_t i = static_cast<std::size_t>(y * out_w + x);
          // (the fast path's merged value there is the bias, subtracted again at the output: 0 +- 1 ulp, so its
          // labels are the near-ties' and only the score is checked)
          const bool label_ok = variant == 3 || out->labels[i] == 0;
          wrong += !label_ok || !(std::fabs(out->scores[i] - uncovered_score) <= 1e-6f) ? 1 : 0;
        }
      }
      EXPECT_EQ(wrong, 0u) << "variant " << variant << (out == &forward ? " forward" : " reverse")
                           << ": uncovered pixels whose label is not 0 or score not " << uncovered_score;
    }
  }
}

// Sliding windows (two side by side, 16x head upsampling; three rows of overlap at one place) in every path of the
// tiled kernels: fast (sigmoid, pruned), generic (sigmoid unpruned, identity), softmax: the same bits in both
// orders, so no shared-memory read in them races with a write.
TEST(BlockSchedule, SegmentWindowsKernelsGiveTheSameBitsInBothOrders) {
  using zsseg::segment_windows_testing::Pruning;
  using zsseg::segment_windows_testing::Variant;
  const int64_t grid = 4;
  const std::vector<zsseg::WindowPlacement> windows{{0, 64, 0, 64}, {0, 64, 21, 85}, {20, 64, 10, 74}};
  std::mt19937 rng(32);
  // sigmoid pruned (2 windows), same unpruned, identity, softmax, sigmoid over 3 windows (generic: not the fast
  // path's layout); then the column-form kernel variants on the sigmoid cases with 30 classes (two passes of 22:
  // what one pass writes while the other is read), warps (8 warps' class ranges combined after its barrier) and
  // ordered (its first chunk chosen, then the list compacted in place after the tile's bound)
  struct Case {
    int mode, kernel;
    int64_t classes;
  };
  std::vector<Case> cases;
  for (int mode = 0; mode < 5; ++mode) cases.push_back({mode, static_cast<int>(Variant::kTiled), 11});
  for (int kernel : {static_cast<int>(Variant::kColumns), static_cast<int>(Variant::kColumnsChain),
                     static_cast<int>(Variant::kWarps), static_cast<int>(Variant::kOrdered),
                     static_cast<int>(Variant::kOrderedPrebound)}) {
    for (int mode : {0, 1, 4}) cases.push_back({mode, kernel, 30});
  }
  zs_emu::GridCapScope two_blocks(2);
  for (const Case& c : cases) {
    const std::vector<float> logits =
        emu_test::random_floats(static_cast<std::size_t>(3 * c.classes * grid * grid), rng, -5.f, 5.f);
    std::vector<float> bias(static_cast<std::size_t>(c.classes));
    for (std::size_t k = 0; k < bias.size(); ++k) bias[k] = k % 2 == 0 ? 0.1f : 0.f;
    emu_test::PruningScope pruning(c.mode == 1 ? Pruning::kOff : Pruning::kOn);
    emu_test::VariantScope kernel(c.kernel);
    zsseg::SegmentWindowsParams p;
    p.logits = logits.data();
    p.num_windows = c.mode == 4 ? 3 : 2;
    p.classes = c.classes;
    p.in_height = p.in_width = grid;
    p.windows = windows.data();
    p.head_height = p.head_width = 64;
    p.scaled_height = 64;
    p.scaled_width = 85;
    p.out_height = 47;
    p.out_width = 63;
    p.class_bias = bias.data();
    p.apply_sigmoid = c.mode != 2;
    p.softmax = c.mode == 3;
    const Outputs forward = run_segment_windows(p, BlockSchedule::kSerialForward);
    const Outputs reverse = run_segment_windows(p, BlockSchedule::kSerialReverse);
    EXPECT_TRUE(forward == reverse) << "mode " << c.mode << ", kernel variant " << c.kernel;
    EXPECT_EQ(std::count(forward.labels.begin(), forward.labels.end(), -7), 0) << "mode " << c.mode;
  }
}

}  // namespace
