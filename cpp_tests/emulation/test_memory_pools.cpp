// Memory pools of one's own (cudaMemPoolCreate, cudaMallocFromPoolAsync, cudaMemPoolDestroy) in the emulated
// runtime, and the library's use of one (review c783dbf #11a): c783dbf raised the release threshold of the device's
// DEFAULT pool, shared by the whole process (torch's cudaMallocAsync backend; on a Jetson, memory it keeps is CPU
// RAM). The library now allocates from a pool of its own and leaves the default pool as it is.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

#include "cuda/stream_order.h"
#include "emu/cuda_emu.h"
#include "emu_test_utils.h"

namespace {

class MemoryPools : public ::testing::Test {
 protected:
  void SetUp() override { zs_emu::reset_runtime(); }
  void TearDown() override {
    cudaDeviceSynchronize();
    zs_emu::reset_runtime();
  }
  static cudaStream_t make_stream() {
    cudaStream_t s = nullptr;
    EXPECT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    return s;
  }
  static cudaMemPool_t make_pool(int device = 0) {
    cudaMemPoolProps props = {};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    cudaMemPool_t pool = nullptr;
    EXPECT_EQ(cudaMemPoolCreate(&pool, &props), cudaSuccess);
    return pool;
  }
  static std::uint64_t attribute(cudaMemPool_t pool, cudaMemPoolAttr attr) {
    std::uint64_t value = 0;
    EXPECT_EQ(cudaMemPoolGetAttribute(pool, attr, &value), cudaSuccess);
    return value;
  }
  static cudaMemPool_t default_pool() {
    cudaMemPool_t pool = nullptr;
    EXPECT_EQ(cudaDeviceGetDefaultMemPool(&pool, 0), cudaSuccess);
    return pool;
  }
};

TEST_F(MemoryPools, ACreatedPoolHasItsOwnMemoryAndThreshold) {
  cudaStream_t s = make_stream();
  cudaMemPool_t own = make_pool();
  cudaMemPool_t shared = default_pool();
  EXPECT_NE(own, shared);
  const std::uint64_t shared_used = attribute(shared, cudaMemPoolAttrUsedMemCurrent);
  const std::uint64_t shared_reserved = attribute(shared, cudaMemPoolAttrReservedMemCurrent);
  EXPECT_EQ(attribute(own, cudaMemPoolAttrReleaseThreshold), 0u);  // as the runtime creates one
  void* p = nullptr;
  ASSERT_EQ(cudaMallocFromPoolAsync(&p, 4096, own, s), cudaSuccess);
  EXPECT_EQ(attribute(own, cudaMemPoolAttrUsedMemCurrent), 4096u);
  EXPECT_EQ(attribute(shared, cudaMemPoolAttrUsedMemCurrent), shared_used);
  ASSERT_EQ(cudaFreeAsync(p, s), cudaSuccess);  // pool memory of any pool is freed the same way
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  // threshold 0: the synchronisation gave the block back to the system; the default pool never held it
  EXPECT_EQ(attribute(own, cudaMemPoolAttrReservedMemCurrent), 0u);
  EXPECT_EQ(zs_emu::runtime_stats().pool_os_releases, 1);
  EXPECT_EQ(attribute(shared, cudaMemPoolAttrReservedMemCurrent), shared_reserved);
  // a threshold on the created pool keeps its freed memory, and only its own
  std::uint64_t keep = std::uint64_t{1} << 20;
  ASSERT_EQ(cudaMemPoolSetAttribute(own, cudaMemPoolAttrReleaseThreshold, &keep), cudaSuccess);
  ASSERT_EQ(cudaMallocFromPoolAsync(&p, 4096, own, s), cudaSuccess);
  ASSERT_EQ(cudaFreeAsync(p, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(attribute(own, cudaMemPoolAttrReservedMemCurrent), 4096u);
  EXPECT_EQ(attribute(shared, cudaMemPoolAttrReleaseThreshold), 0u);
  EXPECT_EQ(cudaMemPoolDestroy(own), cudaSuccess);
  cudaStreamDestroy(s);
}

TEST_F(MemoryPools, DestroyingAPoolReleasesItsMemoryOnceFreed) {
  cudaStream_t s = make_stream();
  cudaMemPool_t own = make_pool();
  void* p = nullptr;
  ASSERT_EQ(cudaMallocFromPoolAsync(&p, 256, own, s), cudaSuccess);
  EXPECT_EQ(cudaMemPoolDestroy(own), cudaSuccess);  // returns at once with an allocation outstanding
  EXPECT_TRUE(zs_emu::is_live(p));                  // still the caller's
  ASSERT_EQ(cudaFreeAsync(p, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);  // freed and idle: back to the system
  EXPECT_FALSE(zs_emu::is_live(p));
  EXPECT_EQ(zs_emu::runtime_stats().pool_os_releases, 1);
  // misuse: allocating from it, destroying it again; the default pool cannot be destroyed
  EXPECT_EQ(cudaMallocFromPoolAsync(&p, 256, own, s), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemPoolDestroy(own), cudaErrorInvalidValue);
  const auto reports = emu_test::take_reports();
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].kind, "misuse");
  EXPECT_EQ(reports[1].kind, "misuse");
  EXPECT_EQ(cudaMemPoolDestroy(default_pool()), cudaErrorInvalidValue);
  cudaGetLastError();
  cudaMemPoolProps bad = {};  // no location
  cudaMemPool_t none = nullptr;
  EXPECT_EQ(cudaMemPoolCreate(&none, &bad), cudaErrorInvalidValue);
  cudaGetLastError();
  cudaStreamDestroy(s);
}

// c783dbf: StreamBuffer::allocate raised the default pool's release threshold to 256 MiB and allocated from it.
TEST_F(MemoryPools, TheLibrarysOutputsLeaveTheDefaultPoolAsItIs) {
  cudaStream_t s = make_stream();
  cudaMemPool_t shared = default_pool();
  const std::uint64_t threshold = attribute(shared, cudaMemPoolAttrReleaseThreshold);
  const std::uint64_t used = attribute(shared, cudaMemPoolAttrUsedMemCurrent);
  {
    std::shared_ptr<zsseg::stream_order::StreamBuffer> buffer;
    ASSERT_EQ(zsseg::stream_order::StreamBuffer::allocate(1 << 16, 0, s, &buffer), cudaSuccess);
    EXPECT_TRUE(buffer->pooled());
    EXPECT_EQ(attribute(shared, cudaMemPoolAttrUsedMemCurrent), used);  // not from the default pool
    cudaMemPool_t own = zsseg::stream_order::library_pool(0);
    ASSERT_NE(own, nullptr);
    EXPECT_GE(attribute(own, cudaMemPoolAttrUsedMemCurrent), 1u << 16);
    EXPECT_EQ(attribute(own, cudaMemPoolAttrReleaseThreshold), zsseg::stream_order::kPoolReleaseThreshold);
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(attribute(shared, cudaMemPoolAttrReleaseThreshold), threshold);
  EXPECT_EQ(threshold, 0u);  // nobody else in this process sets it
  cudaStreamDestroy(s);
}

}  // namespace
