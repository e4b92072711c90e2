// The emulation layer itself: barriers really order the threads of a block, shared memory is per block, the
// grid is covered once, a bad launch configuration is reported as CUDA does.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "emu/cuda_emu.h"

#include "cuda/launch.cuh"

namespace {

// Each thread writes its index into shared memory, waits, then reads its neighbour's: wrong without a barrier.
__global__ void rotate_through_shared(int* out) {
  __shared__ int slots[64];
  slots[threadIdx.x] = static_cast<int>(blockIdx.x * 1000 + threadIdx.x);
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = slots[(threadIdx.x + 1) % blockDim.x];
}

__global__ void count_visits(std::int64_t total, int* visits) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    visits[i] += 1;
  }
}

__global__ void divergent_barrier(int* unused) {
  if (threadIdx.x == 0) return;  // thread 0 skips the barrier: undefined behaviour on a GPU
  __syncthreads();
  unused[threadIdx.x] = 1;
}

TEST(EmulationLayer, SyncthreadsOrdersSharedMemoryPerBlock) {
  std::vector<int> out(3 * 64, -1);
  ZS_LAUNCH(rotate_through_shared, dim3(3), dim3(64), nullptr, out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // launches are asynchronous
  for (int b = 0; b < 3; ++b) {
    for (int t = 0; t < 64; ++t) EXPECT_EQ(out[b * 64 + t], b * 1000 + (t + 1) % 64) << b << " " << t;
  }
}

TEST(EmulationLayer, GridStrideCoversEveryIndexOnce) {
  std::vector<int> visits(1000, 0);
  ZS_LAUNCH(count_visits, dim3(3), dim3(32), nullptr, static_cast<std::int64_t>(visits.size()), visits.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (int v : visits) ASSERT_EQ(v, 1);
}

TEST(EmulationLayer, BadConfigurationIsALaunchError) {
  std::vector<int> visits(4, 0);
  ZS_LAUNCH(count_visits, dim3(1), dim3(2048), nullptr, static_cast<std::int64_t>(4), visits.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // the error is cleared once read, as in CUDA
  ZS_LAUNCH(count_visits, dim3(1, 70000), dim3(32), nullptr, static_cast<std::int64_t>(4), visits.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  for (int v : visits) EXPECT_EQ(v, 0);
}

TEST(EmulationLayer, DivergentSyncthreadsAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<int> unused(32, 0);
  EXPECT_DEATH(
      {
        ZS_LAUNCH(divergent_barrier, dim3(1), dim3(32), nullptr, unused.data());
        cudaDeviceSynchronize();  // the kernel runs on its stream's worker thread
      },
      "divergent barrier");
}

// A warp that skips the barrier the others wait at (each warp on a host thread of its own in the concurrent
// schedule, all of a block's threads on one in the serial ones): found in every schedule.
__global__ void warp_skips_the_barrier(int* unused) {
  if (threadIdx.x >= 32) return;
  __syncthreads();
  unused[threadIdx.x] = 1;
}

TEST(EmulationLayer, AWarpSkippingABarrierAbortsInEverySchedule) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<int> unused(96, 0);
  for (zs_emu::BlockSchedule schedule : {zs_emu::BlockSchedule::kConcurrent, zs_emu::BlockSchedule::kSerialForward,
                                         zs_emu::BlockSchedule::kSerialReverse}) {
    EXPECT_DEATH(
        {
          zs_emu::BlockScheduleScope scope(schedule);
          ZS_LAUNCH(warp_skips_the_barrier, dim3(1), dim3(96), nullptr, unused.data());
          cudaDeviceSynchronize();
        },
        "divergent barrier in block: '(__syncthreads\\(\\)|end of kernel)' and '(__syncthreads\\(\\)|end of kernel)'")
        << static_cast<int>(schedule);
  }
}

TEST(EmulationLayer, HalfRoundsToNearestEven) {
  EXPECT_EQ(__half2float(__float2half_rn(1.0f + 1.0f / 2048.0f)), 1.0f);                   // tie -> even (1.0)
  EXPECT_EQ(__half2float(__float2half_rn(1.0f + 3.0f / 2048.0f)), 1.0f + 2.0f / 1024.0f);  // tie -> even
  EXPECT_EQ(__half2float(__float2half_rn(65520.0f)), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(__half2float(__float2half_rn(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(__float2half_rn(-0.0f).bits, 0x8000u);
}

}  // namespace
