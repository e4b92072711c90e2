// Stream-ordered output memory, completion events, deferred release of inputs and the device probe of the binding
// layer (csrc/cuda/stream_order.h, csrc/cuda/device_probe.h), on the emulated runtime: what would need a GPU to
// observe (an allocation that synchronises the device, a free before the kernel finished, a caller's stream used
// after it was destroyed) is counted or caught by AddressSanitizer here.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "cuda/device_probe.h"
#include "cuda/launch.cuh"
#include "cuda/stream_order.h"
#include "emu/cuda_emu.h"
#include "emu_test_utils.h"

namespace {

using zsseg::stream_order::DeferredRelease;
using zsseg::stream_order::ReadyEvent;
using zsseg::stream_order::StreamBuffer;

__global__ void fill(float* out, int n, float value) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = value;
}

__global__ void probe() {}

class StreamOrder : public ::testing::Test {
 protected:
  void SetUp() override { zs_emu::reset_runtime(); }
  void TearDown() override {
    cudaDeviceSynchronize();
    zs_emu::reset_runtime();
  }
};

// What a binding does for one output: allocate on the launch stream, launch, record the ready event.
std::shared_ptr<StreamBuffer> produce(cudaStream_t stream, int n, float value) {
  std::shared_ptr<StreamBuffer> buffer;
  EXPECT_EQ(StreamBuffer::allocate(sizeof(float) * n, 0, stream, &buffer), cudaSuccess);
  ZS_LAUNCH(fill, dim3((n + 63) / 64), dim3(64), stream, static_cast<float*>(buffer->data()), n, value);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  auto ready = std::make_shared<ReadyEvent>();
  EXPECT_EQ(ready->record(stream, 0), cudaSuccess);
  buffer->set_ready(ready);
  return buffer;
}

TEST_F(StreamOrder, OutputsAreAllocatedAndFreedStreamOrderedWithoutAnyDeviceSync) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  {
    auto buffer = produce(stream, 100, 2.5f);
    EXPECT_TRUE(buffer->pooled());
  }
  const zs_emu::RuntimeStats& stats = zs_emu::runtime_stats();
  EXPECT_EQ(stats.async_malloc, 1);
  EXPECT_EQ(stats.async_free, 1);
  EXPECT_EQ(stats.sync_malloc, 0);  // the old DeviceBuffer: cudaMalloc ...
  EXPECT_EQ(stats.sync_free, 0);    // ... and cudaFree (a device-wide sync) per output
  EXPECT_EQ(stats.blocking_waits, 0);
  EXPECT_EQ(zs_emu::live_allocations(), 0u);
  cudaStreamDestroy(stream);
}

TEST_F(StreamOrder, TheOutputHoldsTheKernelsResultOnceItsReadyEventHasPassed) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  auto buffer = produce(stream, 100, 2.5f);
  ASSERT_EQ(buffer->ready()->synchronize(), cudaSuccess);  // launches are asynchronous: wait for the event
  EXPECT_EQ(static_cast<float*>(buffer->data())[99], 2.5f);
  buffer.reset();
  cudaStreamDestroy(stream);
}

TEST_F(StreamOrder, MemoryIsNotReturnedBeforeTheProducingWorkHasFinished) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  zs_emu::StreamHold running(stream);  // the kernel is still running on the GPU
  void* data = nullptr;
  {
    auto buffer = produce(stream, 10, 1.0f);
    data = buffer->data();
    EXPECT_FALSE(buffer->ready()->done());
  }  // the last reference is dropped while the kernel runs
  EXPECT_TRUE(zs_emu::is_live(data));
  EXPECT_EQ(zs_emu::runtime_stats().blocking_waits, 0);  // and the host did not wait for it
  running.release();
  EXPECT_FALSE(zs_emu::is_live(data));
  cudaStreamDestroy(stream);
}

TEST_F(StreamOrder, TheCallersStreamMayBeDestroyedRightAfterTheCall) {
  // The old DeviceArray kept the raw stream handle and used it in __dlpack__ / numpy(): a use after
  // cudaStreamDestroy, a heap-use-after-free of the emulated stream under AddressSanitizer.
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  auto buffer = produce(stream, 16, 4.0f);
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  cudaStream_t consumer = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&consumer, cudaStreamNonBlocking), cudaSuccess);
  EXPECT_EQ(buffer->ready()->order_before(consumer), cudaSuccess);  // __dlpack__(stream=consumer)
  EXPECT_EQ(buffer->ready()->synchronize(), cudaSuccess);           // numpy()
  EXPECT_EQ(static_cast<float*>(buffer->data())[15], 4.0f);
  buffer.reset();
  EXPECT_EQ(zs_emu::live_allocations(), 0u);
  cudaStreamDestroy(consumer);
}

TEST_F(StreamOrder, ConsumersAreOrderedAfterTheReadyEventNotAfterTheWholeDevice) {
  cudaStream_t producer = nullptr, consumer = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&producer, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&consumer, cudaStreamNonBlocking), cudaSuccess);
  zs_emu::StreamHold running(producer);
  auto buffer = produce(producer, 8, 3.0f);
  ASSERT_EQ(buffer->ready()->order_before(consumer), cudaSuccess);
  ReadyEvent consumer_work;
  ASSERT_EQ(consumer_work.record(consumer, 0), cudaSuccess);
  EXPECT_FALSE(consumer_work.done());  // the consumer's work waits for the producer's
  running.release();
  EXPECT_TRUE(consumer_work.done());
  EXPECT_EQ(zs_emu::runtime_stats().blocking_waits, 0);
  buffer.reset();
  cudaStreamDestroy(producer);
  cudaStreamDestroy(consumer);
}

TEST_F(StreamOrder, WithoutMemoryPoolsTheBufferFallsBackToCudaMalloc) {
  zs_emu::DeviceConfig config;
  config.memory_pools = false;
  zs_emu::reset_runtime(config);
  {
    auto buffer = produce(nullptr, 4, 1.0f);
    EXPECT_FALSE(buffer->pooled());
  }
  EXPECT_EQ(zs_emu::runtime_stats().sync_malloc, 1);
  EXPECT_EQ(zs_emu::runtime_stats().sync_free, 1);
  EXPECT_EQ(zs_emu::runtime_stats().async_malloc, 0);
  EXPECT_EQ(zs_emu::live_allocations(), 0u);
}

TEST_F(StreamOrder, ABufferWhoseLaunchNeverHappenedIsStillReleasedAfterItsAllocation) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  zs_emu::StreamHold running(stream);  // the allocation itself is still queued on the stream
  void* data = nullptr;
  {
    std::shared_ptr<StreamBuffer> buffer;
    ASSERT_EQ(StreamBuffer::allocate(64, 0, stream, &buffer), cudaSuccess);
    data = buffer->data();
  }  // e.g. an argument error after the allocation: no launch, no completion event
  EXPECT_TRUE(zs_emu::is_live(data));  // ordered after the allocation, not freed under it
  running.release();
  EXPECT_FALSE(zs_emu::is_live(data));
  EXPECT_EQ(zs_emu::runtime_stats().sync_free, 0);
  EXPECT_EQ(zs_emu::runtime_stats().pool_free, 0);
  cudaStreamDestroy(stream);
}

// Issue 25: cudaFree of pool memory does not wait for the device, so an exported buffer released with it (the old
// "shared" path) was returned to the pool while its kernel could still write it; and every export forced that
// path. Now the release waits for the launch's event and for the consumer's stream, stream-ordered.
TEST_F(StreamOrder, AnExportedBufferIsReleasedAfterItsKernelAndItsConsumerWithoutADeviceWideWait) {
  cudaStream_t stream = nullptr;
  cudaStream_t consumer = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&consumer, cudaStreamNonBlocking), cudaSuccess);
  auto kernel = std::make_unique<zs_emu::StreamHold>(stream);  // our kernel still writes the buffer
  void* data = nullptr;
  {
    auto buffer = produce(stream, 100, 1.f);
    data = buffer->data();
    buffer->add_consumer(consumer);  // exported to a library working on `consumer`
    buffer->add_consumer(cudaStreamLegacy);
  }
  EXPECT_TRUE(zs_emu::is_live(data));
  kernel.reset();
  EXPECT_FALSE(zs_emu::is_live(data));
  EXPECT_EQ(zs_emu::runtime_stats().async_free, 1);
  EXPECT_EQ(zs_emu::runtime_stats().sync_free, 0);
  EXPECT_EQ(zs_emu::runtime_stats().pool_free, 0);
  EXPECT_EQ(zs_emu::runtime_stats().blocking_waits, 0);
  cudaStreamDestroy(consumer);
  cudaStreamDestroy(stream);
}

TEST_F(StreamOrder, TheReleaseWaitsForConsumerWorkQueuedBeforeIt) {
  cudaStream_t consumer = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&consumer, cudaStreamNonBlocking), cudaSuccess);
  void* data = nullptr;
  {
    zs_emu::StreamHold reading(consumer);  // consumer work pending when the last reference goes
    {
      auto buffer = produce(nullptr, 8, 1.f);
      data = buffer->data();
      buffer->add_consumer(consumer);
    }
    EXPECT_TRUE(zs_emu::is_live(data));
  }
  EXPECT_FALSE(zs_emu::is_live(data));
  cudaStreamDestroy(consumer);
}

TEST_F(StreamOrder, PoolMemoryFreedWithCudaFreeIsNotSynchronised) {
  // The emulation behaves as the runtime does (the reason for the rules above).
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  zs_emu::StreamHold running(stream);
  void* pooled = nullptr;
  void* plain = nullptr;
  ASSERT_EQ(cudaMallocAsync(&pooled, 16, stream), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&plain, 16), cudaSuccess);
  ASSERT_EQ(cudaFree(pooled), cudaSuccess);
  EXPECT_FALSE(zs_emu::is_live(pooled));  // returned at once, pending work or not
  EXPECT_EQ(zs_emu::runtime_stats().pool_free, 1);
  ASSERT_EQ(cudaFree(plain), cudaSuccess);  // waits for the device (forces the held work)
  EXPECT_EQ(zs_emu::runtime_stats().sync_free, 1);
  // the stream reached its allocation after the memory had been returned: what a GPU would silently get wrong
  const auto reports = emu_test::take_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].kind, "use-after-free");
  cudaStreamDestroy(stream);
}

struct Counted {
  int* alive;
  explicit Counted(int* counter) : alive(counter) { ++*alive; }
  Counted(Counted&& other) noexcept : alive(other.alive) { other.alive = nullptr; }
  Counted& operator=(Counted&&) = delete;
  ~Counted() {
    if (alive) --*alive;
  }
};

TEST_F(StreamOrder, InputsStayAliveUntilTheWorkReadingThemIsDone) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  DeferredRelease<Counted> keep;
  int alive = 0;
  {
    zs_emu::StreamHold running(stream);
    auto ready = std::make_shared<ReadyEvent>();
    ASSERT_EQ(ready->record(stream, 0), cudaSuccess);
    keep.keep_until(ready, Counted(&alive));
    EXPECT_EQ(keep.sweep(), 1u);  // the kernel still reads the input: kept
    EXPECT_EQ(alive, 1);
    EXPECT_EQ(zs_emu::runtime_stats().blocking_waits, 0);
  }  // the kernel finishes
  EXPECT_EQ(keep.sweep(), 0u);
  EXPECT_EQ(alive, 0);
  cudaStreamDestroy(stream);
}

// A payload whose destructor uses the queue again (a Python object whose __del__ calls an op): it must be
// destroyed outside the queue's lock, or this deadlocks.
struct Reentrant {
  DeferredRelease<Reentrant>* queue;
  int* destroyed;
  Reentrant(DeferredRelease<Reentrant>* q, int* d) : queue(q), destroyed(d) {}
  Reentrant(Reentrant&& other) noexcept : queue(other.queue), destroyed(other.destroyed) { other.queue = nullptr; }
  Reentrant& operator=(Reentrant&&) = delete;
  ~Reentrant() {
    if (queue == nullptr) return;
    queue->size();
    queue->sweep();
    ++*destroyed;
  }
};

TEST_F(StreamOrder, DeferredPayloadsAreDestroyedOutsideTheLock) {
  DeferredRelease<Reentrant> keep;
  int destroyed = 0;
  auto ready = std::make_shared<ReadyEvent>();
  ASSERT_EQ(ready->record(nullptr, 0), cudaSuccess);
  keep.keep_until(ready, Reentrant(&keep, &destroyed));
  ASSERT_EQ(ready->synchronize(), cudaSuccess);
  EXPECT_EQ(keep.sweep(), 0u);
  EXPECT_EQ(destroyed, 1);
}

TEST_F(StreamOrder, TheReleaseStreamIsCreatedOncePerDevice) {
  cudaStream_t first = zsseg::stream_order::release_stream(0);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(zsseg::stream_order::release_stream(0), first);
  EXPECT_EQ(zsseg::stream_order::release_stream(-1), nullptr);
}

TEST_F(StreamOrder, ProbeReportsADeviceWithoutKernelImage) {
  zs_emu::DeviceConfig config;
  config.device_count = 2;
  config.kernel_image = {cudaSuccess, cudaErrorNoKernelImageForDevice};
  zs_emu::reset_runtime(config);
  const zsseg::DeviceProbe result = zsseg::probe_devices(probe);
  // Probing only the current device (device 0), as before, reported 2 usable devices here.
  EXPECT_EQ(result.count, 0);
  EXPECT_EQ(result.status, cudaErrorNoKernelImageForDevice);
  EXPECT_EQ(result.failed_device, 1);
  int current = -1;
  cudaGetDevice(&current);
  EXPECT_EQ(current, 0);  // the caller's device is restored
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST_F(StreamOrder, ProbeCountsDevicesThatCanRunTheKernels) {
  zs_emu::DeviceConfig config;
  config.device_count = 3;
  zs_emu::reset_runtime(config);
  const zsseg::DeviceProbe result = zsseg::probe_devices(probe);
  EXPECT_EQ(result.count, 3);
  EXPECT_EQ(result.status, cudaSuccess);
  EXPECT_EQ(result.failed_device, -1);
  config.device_count = 0;
  zs_emu::reset_runtime(config);
  const zsseg::DeviceProbe none = zsseg::probe_devices(probe);
  EXPECT_EQ(none.count, 0);
  EXPECT_EQ(none.status, cudaErrorNoDevice);
}

}  // namespace
