// The emulated CUDA runtime itself (csrc/emu/cuda_emu_runtime.h): work runs asynchronously on per-stream workers,
// the legacy stream's implicit synchronisation, host synchronisations, the race detector, the stream-ordered pool,
// stream capture into graphs that run only when launched, the calls illegal during a capture, and the mutations
// that make the emulator commit a class of ordering bug. What a GPU does is what these tests expect.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <atomic>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cuda/launch.cuh"
#include "emu/cuda_emu.h"
#include "emu_test_utils.h"

namespace {

__global__ void fill(float* out, int n, float value) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = value;
}

__global__ void add_one(const float* in, float* out, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = in[i] + 1.0f;
}

constexpr int kN = 64;

void launch_fill(float* out, float value, cudaStream_t stream) {
  ZS_LAUNCH(fill, dim3(1), dim3(kN), stream, out, kN, value);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
}

cudaStream_t make_stream(unsigned flags = cudaStreamNonBlocking) {
  cudaStream_t s = nullptr;
  EXPECT_EQ(cudaStreamCreateWithFlags(&s, flags), cudaSuccess);
  return s;
}

float* device_floats() {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, sizeof(float) * kN), cudaSuccess);
  std::memset(p, 0, sizeof(float) * kN);
  return static_cast<float*>(p);
}

bool event_done(cudaEvent_t e) {
  const cudaError_t status = cudaEventQuery(e);
  EXPECT_TRUE(status == cudaSuccess || status == cudaErrorNotReady) << cudaGetErrorString(status);
  return status == cudaSuccess;
}

class AsyncRuntime : public ::testing::Test {
 protected:
  void SetUp() override {
    zs_emu::reset_runtime();
    zs_emu::set_mutations(0);
  }
  void TearDown() override {
    zs_emu::set_mutations(0);
    cudaDeviceSynchronize();
    zs_emu::reset_runtime();
  }
};

// ---- asynchrony and the legacy stream ---------------------------------------------------------------------------
TEST_F(AsyncRuntime, ALaunchReturnsBeforeItsGridRuns) {
  cudaStream_t s = make_stream();
  float* out = device_floats();
  {
    zs_emu::StreamHold running(s);  // the stream is busy
    launch_fill(out, 3.0f, s);
    EXPECT_EQ(out[0], 0.0f);  // enqueued, not run
  }
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(out[kN - 1], 3.0f);
  cudaFree(out);
  cudaStreamDestroy(s);
}

TEST_F(AsyncRuntime, TheLegacyStreamWaitsForBlockingStreamsButNotForNonBlockingOnes) {
  cudaStream_t blocking = make_stream(cudaStreamDefault);
  cudaStream_t non_blocking = make_stream(cudaStreamNonBlocking);
  cudaEvent_t on_legacy = nullptr;
  ASSERT_EQ(cudaEventCreateWithFlags(&on_legacy, cudaEventDisableTiming), cudaSuccess);
  {
    zs_emu::StreamHold busy(non_blocking);
    {
      zs_emu::StreamHold busy_blocking(blocking);
      ASSERT_EQ(cudaEventRecord(on_legacy, cudaStreamLegacy), cudaSuccess);
      zs_emu::settle();
      EXPECT_FALSE(event_done(on_legacy));  // behind the blocking stream's work
    }
    EXPECT_TRUE(event_done(on_legacy));  // ... and not behind the non-blocking one's (still held)
  }
  cudaEventDestroy(on_legacy);
  cudaStreamDestroy(blocking);
  cudaStreamDestroy(non_blocking);
}

TEST_F(AsyncRuntime, BlockingStreamsWaitForTheLegacyStream) {
  cudaStream_t blocking = make_stream(cudaStreamDefault);
  cudaStream_t non_blocking = make_stream(cudaStreamNonBlocking);
  cudaEvent_t after_blocking = nullptr, after_non_blocking = nullptr;
  cudaEventCreateWithFlags(&after_blocking, cudaEventDisableTiming);
  cudaEventCreateWithFlags(&after_non_blocking, cudaEventDisableTiming);
  {
    zs_emu::StreamHold legacy_busy(cudaStreamLegacy);
    ASSERT_EQ(cudaEventRecord(after_blocking, blocking), cudaSuccess);
    ASSERT_EQ(cudaEventRecord(after_non_blocking, non_blocking), cudaSuccess);
    zs_emu::settle();
    EXPECT_FALSE(event_done(after_blocking));
    EXPECT_TRUE(event_done(after_non_blocking));
  }
  EXPECT_TRUE(event_done(after_blocking));
  cudaEventDestroy(after_blocking);
  cudaEventDestroy(after_non_blocking);
  cudaStreamDestroy(blocking);
  cudaStreamDestroy(non_blocking);
}

TEST_F(AsyncRuntime, StreamSynchronizeWaitsForThatStreamAndDeviceSynchronizeForEveryStream) {
  cudaStream_t a = make_stream(), b = make_stream(), c = make_stream();
  float* x = device_floats();
  float* y = device_floats();
  zs_emu::StreamHold busy(c);
  launch_fill(x, 1.0f, a);
  launch_fill(y, 2.0f, b);
  ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);  // returns although c is still busy
  EXPECT_EQ(x[kN - 1], 1.0f);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // every stream: b's work, c's held work (the GPU finishes it)
  EXPECT_EQ(y[kN - 1], 2.0f);
  cudaFree(x);
  cudaFree(y);
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
  cudaStreamDestroy(c);
}

TEST_F(AsyncRuntime, SynchronousCudaMemcpyDoesNotWaitForNonBlockingStreams) {
  cudaStream_t s = make_stream();
  float* x = device_floats();
  std::vector<float> host(kN, -5.0f);
  zs_emu::StreamHold busy(s);
  launch_fill(x, 7.0f, s);  // pending on a non-blocking stream
  ASSERT_EQ(cudaMemcpy(host.data(), x, sizeof(float) * kN, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(host[0], 0.0f);  // the copy on the legacy stream did not wait: the old content
  busy.release();
  const auto reports = emu_test::take_reports();  // and the detector saw the unordered read and write
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].kind, "race");
  cudaFree(x);
  cudaStreamDestroy(s);
}

// ---- the race detector ------------------------------------------------------------------------------------------
TEST_F(AsyncRuntime, AReadNotOrderedAfterAWriteOnAnotherStreamIsARace) {
  cudaStream_t a = make_stream(), b = make_stream();
  float* x = device_floats();
  float* y = device_floats();
  launch_fill(x, 1.0f, a);
  ZS_LAUNCH(add_one, dim3(1), dim3(kN), b, x, y, kN);
  cudaDeviceSynchronize();
  const auto reports = emu_test::take_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].kind, "race");
  EXPECT_NE(reports[0].message.find("add_one"), std::string::npos) << reports[0].message;
  EXPECT_NE(reports[0].message.find("fill"), std::string::npos) << reports[0].message;
  cudaFree(x);
  cudaFree(y);
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
}

TEST_F(AsyncRuntime, AnEventOrAHostSynchronisationOrdersTheAccesses) {
  cudaStream_t a = make_stream(), b = make_stream();
  float* x = device_floats();
  float* y = device_floats();
  cudaEvent_t written = nullptr;
  cudaEventCreateWithFlags(&written, cudaEventDisableTiming);
  for (int round = 0; round < 5; ++round) {
    launch_fill(x, static_cast<float>(round), a);
    cudaEventRecord(written, a);
    cudaStreamWaitEvent(b, written, 0);
    ZS_LAUNCH(add_one, dim3(1), dim3(kN), b, x, y, kN);  // ordered by the event
    cudaStreamSynchronize(b);
    EXPECT_EQ(y[kN - 1], static_cast<float>(round) + 1.0f);
    cudaEventRecord(written, b);
    cudaStreamWaitEvent(a, written, 0);  // the next fill of x waits for the read
  }
  launch_fill(x, 9.0f, a);
  cudaStreamSynchronize(a);  // the host saw it: work enqueued afterwards is ordered after it
  ZS_LAUNCH(add_one, dim3(1), dim3(kN), b, x, y, kN);
  cudaStreamSynchronize(b);
  EXPECT_EQ(y[0], 10.0f);
  EXPECT_TRUE(emu_test::take_reports().empty());
  cudaEventDestroy(written);
  cudaFree(x);
  cudaFree(y);
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
}

// ---- pool memory ------------------------------------------------------------------------------------------------
TEST_F(AsyncRuntime, APoolBlockIsReusedAtOnceOnItsStreamAndFilledWhenFreed) {
  cudaStream_t s = make_stream();
  void* first = nullptr;
  ASSERT_EQ(cudaMallocAsync(&first, 256, s), cudaSuccess);
  launch_fill(static_cast<float*>(first), 5.0f, s);
  ASSERT_EQ(cudaFreeAsync(first, s), cudaSuccess);
  void* second = nullptr;
  ASSERT_EQ(cudaMallocAsync(&second, 256, s), cudaSuccess);  // stream order covers the free: reused at once
  EXPECT_EQ(second, first);
  cudaStreamSynchronize(s);
  std::int32_t bits = 0;
  std::memcpy(&bits, second, sizeof(bits));
  EXPECT_EQ(bits, -1);  // the freed block was filled (NaN as float, -1 as int): a stale read shows
  EXPECT_EQ(zs_emu::runtime_stats().pool_reuses, 1);
  EXPECT_EQ(zs_emu::runtime_stats().pool_os_allocations, 1);
  cudaFreeAsync(second, s);
  cudaStreamDestroy(s);
}

TEST_F(AsyncRuntime, AnotherStreamGetsAPendingFreeOnlyWithAWaitForIt) {
  cudaStream_t s = make_stream(), t = make_stream();
  void* block = nullptr;
  ASSERT_EQ(cudaMallocAsync(&block, 512, s), cudaSuccess);
  cudaEvent_t after = nullptr;
  cudaEventCreateWithFlags(&after, cudaEventDisableTiming);
  {
    zs_emu::StreamHold busy(s);
    ASSERT_EQ(cudaFreeAsync(block, s), cudaSuccess);  // pending behind the held work
    void* again = nullptr;
    ASSERT_EQ(cudaMallocAsync(&again, 512, t), cudaSuccess);
    EXPECT_EQ(again, block);  // handed out with a dependency on the free inserted into t
    EXPECT_EQ(zs_emu::runtime_stats().pool_reuse_dependencies, 1);
    cudaEventRecord(after, t);
    zs_emu::settle();
    EXPECT_FALSE(event_done(after));  // t waits for s's free
    cudaFreeAsync(again, t);
  }
  EXPECT_TRUE(event_done(after));
  cudaEventDestroy(after);
  cudaStreamDestroy(s);
  cudaStreamDestroy(t);
}

TEST_F(AsyncRuntime, TheReleaseThresholdDecidesWhetherASynchronisationGivesFreedMemoryBack) {
  cudaStream_t s = make_stream();
  cudaMemPool_t pool = nullptr;
  ASSERT_EQ(cudaDeviceGetDefaultMemPool(&pool, 0), cudaSuccess);
  for (std::uint64_t threshold : {std::uint64_t{0}, std::uint64_t{1} << 20}) {
    ASSERT_EQ(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), cudaSuccess);
    zs_emu::runtime_stats() = zs_emu::RuntimeStats();
    for (int i = 0; i < 3; ++i) {
      void* p = nullptr;
      ASSERT_EQ(cudaMallocAsync(&p, 4096, s), cudaSuccess);
      ASSERT_EQ(cudaFreeAsync(p, s), cudaSuccess);
      ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    }
    if (threshold == 0) {  // the runtime's default: returned at every synchronisation, mapped again next time
      EXPECT_EQ(zs_emu::runtime_stats().pool_os_allocations, 3);
      EXPECT_EQ(zs_emu::runtime_stats().pool_os_releases, 3);
    } else {
      EXPECT_LE(zs_emu::runtime_stats().pool_os_allocations, 1);
      EXPECT_EQ(zs_emu::runtime_stats().pool_os_releases, 0);
    }
  }
  std::uint64_t zero = 0;
  cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &zero);
  cudaStreamDestroy(s);
}

TEST_F(AsyncRuntime, AKernelOnFreedPoolMemoryIsReported) {
  cudaMemPool_t pool = nullptr;
  ASSERT_EQ(cudaDeviceGetDefaultMemPool(&pool, 0), cudaSuccess);
  std::uint64_t keep = std::uint64_t{1} << 30, zero = 0;  // the freed block stays in the pool (not unmapped)
  cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
  cudaStream_t s = make_stream(), t = make_stream();
  void* block = nullptr;
  ASSERT_EQ(cudaMallocAsync(&block, sizeof(float) * kN, s), cudaSuccess);
  ASSERT_EQ(cudaFreeAsync(block, s), cudaSuccess);
  cudaStreamSynchronize(s);
  launch_fill(static_cast<float*>(block), 1.0f, t);  // no allocation owns it any more
  cudaStreamSynchronize(t);
  const auto reports = emu_test::take_reports();
  ASSERT_FALSE(reports.empty());
  EXPECT_EQ(reports[0].kind, "use-after-free");
  cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &zero);
  cudaStreamDestroy(s);
  cudaStreamDestroy(t);
}

// ---- capture and graphs -----------------------------------------------------------------------------------------
struct Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~Graph() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
  }
};

TEST_F(AsyncRuntime, CapturedWorkRunsOnlyWhenTheGraphIsLaunched) {
  cudaStream_t s = make_stream();
  float* x = device_floats();
  Graph g;
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  launch_fill(x, 4.0f, s);
  ASSERT_EQ(cudaStreamEndCapture(s, &g.graph), cudaSuccess);
  std::size_t nodes = 0;
  cudaGraphGetNodes(g.graph, nullptr, &nodes);
  EXPECT_EQ(nodes, 1u);
  cudaDeviceSynchronize();
  EXPECT_EQ(x[0], 0.0f);  // nothing ran at capture
  ASSERT_EQ(cudaGraphInstantiate(&g.exec, g.graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(g.exec, s), cudaSuccess);
  cudaStreamSynchronize(s);
  EXPECT_EQ(x[kN - 1], 4.0f);
  cudaFree(x);
  cudaStreamDestroy(s);
}

TEST_F(AsyncRuntime, AReplayUsesTheAddressesCapturedAndReadsSourcesAsTheyAreThen) {
  cudaStream_t s = make_stream();
  float* captured = device_floats();
  float* moved = device_floats();
  void* pinned = nullptr;
  ASSERT_EQ(cudaHostAlloc(&pinned, sizeof(float) * kN, cudaHostAllocMapped), cudaSuccess);
  float* frame = static_cast<float*>(pinned);
  for (int i = 0; i < kN; ++i) frame[i] = 1.0f;
  Graph g;
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(captured, frame, sizeof(float) * kN, cudaMemcpyHostToDevice, s), cudaSuccess);
  ASSERT_EQ(cudaStreamEndCapture(s, &g.graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&g.exec, g.graph, 0), cudaSuccess);
  for (int i = 0; i < kN; ++i) frame[i] = 2.0f;  // the frame changes after the capture
  cudaGraphLaunch(g.exec, s);
  cudaStreamSynchronize(s);
  EXPECT_EQ(captured[0], 2.0f);  // the copy node reads the source at replay
  EXPECT_EQ(moved[0], 0.0f);     // and writes where it was captured to write, whatever the code uses now
  cudaFreeHost(pinned);
  cudaFree(captured);
  cudaFree(moved);
  cudaStreamDestroy(s);
}

enum class Illegal { Malloc, SyncCapturingStream, SyncDevice, QueryCapturedEvent, WaitOutsideEvent, LegacyRecord };

class IllegalDuringCapture : public AsyncRuntime, public ::testing::WithParamInterface<Illegal> {};

TEST_P(IllegalDuringCapture, FailsAndInvalidatesTheCapture) {
  cudaStream_t s = make_stream(cudaStreamDefault);  // blocking: the legacy stream may not be used meanwhile
  cudaEvent_t inside = nullptr, outside = nullptr;
  cudaEventCreateWithFlags(&inside, cudaEventDisableTiming);
  cudaEventCreateWithFlags(&outside, cudaEventDisableTiming);
  cudaEventRecord(outside, s);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  cudaEventRecord(inside, s);
  void* p = nullptr;
  cudaError_t status = cudaSuccess;
  switch (GetParam()) {
    case Illegal::Malloc:
      status = cudaMalloc(&p, 16);
      EXPECT_EQ(status, cudaErrorStreamCaptureUnsupported);
      break;
    case Illegal::SyncCapturingStream:
      status = cudaStreamSynchronize(s);
      EXPECT_EQ(status, cudaErrorStreamCaptureUnsupported);
      break;
    case Illegal::SyncDevice:
      status = cudaDeviceSynchronize();
      EXPECT_EQ(status, cudaErrorStreamCaptureUnsupported);
      break;
    case Illegal::QueryCapturedEvent:  // a captured event; also a query barred in the global capture mode
      status = cudaEventQuery(inside);
      EXPECT_TRUE(status == cudaErrorCapturedEvent || status == cudaErrorStreamCaptureUnsupported) << status;
      break;
    case Illegal::WaitOutsideEvent:
      status = cudaStreamWaitEvent(s, outside, 0);
      EXPECT_EQ(status, cudaErrorStreamCaptureIsolation);
      break;
    case Illegal::LegacyRecord:
      status = cudaEventRecord(outside, cudaStreamLegacy);
      EXPECT_EQ(status, cudaErrorStreamCaptureImplicit);
      break;
  }
  cudaGetLastError();
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  cudaStreamIsCapturing(s, &capture);
  EXPECT_EQ(capture, cudaStreamCaptureStatusInvalidated);
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(graph, nullptr);
  cudaGetLastError();
  cudaEventDestroy(inside);
  cudaEventDestroy(outside);
  cudaStreamDestroy(s);
}
INSTANTIATE_TEST_SUITE_P(Calls, IllegalDuringCapture,
                         ::testing::Values(Illegal::Malloc, Illegal::SyncCapturingStream, Illegal::SyncDevice,
                                           Illegal::QueryCapturedEvent, Illegal::WaitOutsideEvent,
                                           Illegal::LegacyRecord));

TEST_F(AsyncRuntime, LegalDuringCaptureExternalWaitsRelaxedThreadsNonBlockingLegacyUse) {
  cudaStream_t s = make_stream(cudaStreamNonBlocking);
  cudaEvent_t outside = nullptr;
  cudaEventCreateWithFlags(&outside, cudaEventDisableTiming);
  cudaEventRecord(outside, s);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  EXPECT_EQ(cudaStreamWaitEvent(s, outside, cudaEventWaitExternal), cudaSuccess);
  EXPECT_EQ(cudaEventRecord(outside, cudaStreamLegacy), cudaSuccess);  // s is non-blocking: legacy use is legal
  cudaPointerAttributes attributes;
  EXPECT_EQ(cudaPointerGetAttributes(&attributes, &attributes), cudaSuccess);
  std::thread other([] {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, 16), cudaErrorStreamCaptureUnsupported);  // global mode: another thread is barred too
    cudaGetLastError();
  });
  other.join();
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);  // ... and that broke it
  cudaGetLastError();
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  std::thread relaxed([] {
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    cudaThreadExchangeStreamCaptureMode(&mode);
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, 16), cudaSuccess);  // a relaxed thread may
    cudaFree(p);
    cudaThreadExchangeStreamCaptureMode(&mode);
  });
  relaxed.join();
  EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  cudaGraphDestroy(graph);
  cudaEventDestroy(outside);
  cudaStreamDestroy(s);
}

TEST_F(AsyncRuntime, AStreamThatWaitsForACapturedEventJoinsTheCaptureAndMustJoinBack) {
  cudaStream_t origin = make_stream(), side = make_stream();
  float* x = device_floats();
  float* y = device_floats();
  cudaEvent_t fork = nullptr, join_back = nullptr;
  cudaEventCreateWithFlags(&fork, cudaEventDisableTiming);
  cudaEventCreateWithFlags(&join_back, cudaEventDisableTiming);
  for (bool joined : {true, false}) {
    ASSERT_EQ(cudaStreamBeginCapture(origin, cudaStreamCaptureModeGlobal), cudaSuccess);
    launch_fill(x, 3.0f, origin);
    cudaEventRecord(fork, origin);
    ASSERT_EQ(cudaStreamWaitEvent(side, fork, 0), cudaSuccess);  // side joins the capture
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(side, &status);
    EXPECT_EQ(status, cudaStreamCaptureStatusActive);
    ZS_LAUNCH(add_one, dim3(1), dim3(kN), side, x, y, kN);
    if (joined) {
      cudaEventRecord(join_back, side);
      cudaStreamWaitEvent(origin, join_back, 0);
    }
    Graph g;
    const cudaError_t end = cudaStreamEndCapture(origin, &g.graph);
    cudaGetLastError();
    if (!joined) {
      EXPECT_EQ(end, cudaErrorStreamCaptureUnjoined);
      continue;
    }
    ASSERT_EQ(end, cudaSuccess);
    cudaStreamIsCapturing(side, &status);
    EXPECT_EQ(status, cudaStreamCaptureStatusNone);
    ASSERT_EQ(cudaGraphInstantiate(&g.exec, g.graph, 0), cudaSuccess);
    cudaGraphLaunch(g.exec, origin);
    cudaStreamSynchronize(origin);
    EXPECT_EQ(y[0], 4.0f);
  }
  cudaEventDestroy(fork);
  cudaEventDestroy(join_back);
  cudaFree(x);
  cudaFree(y);
  cudaStreamDestroy(origin);
  cudaStreamDestroy(side);
}

struct Tagged {
  std::vector<int>* log;
  int tag;
};
void record_tag(void* data) {
  auto* t = static_cast<Tagged*>(data);
  t->log->push_back(t->tag);
}

TEST_F(AsyncRuntime, IndependentGraphBranchesRunInVaryingOrder) {
  cudaStream_t origin = make_stream(), side = make_stream();
  std::vector<int> log;
  Tagged first{&log, 1}, second{&log, 2};
  cudaEvent_t fork = nullptr, join_back = nullptr;
  cudaEventCreateWithFlags(&fork, cudaEventDisableTiming);
  cudaEventCreateWithFlags(&join_back, cudaEventDisableTiming);
  ASSERT_EQ(cudaStreamBeginCapture(origin, cudaStreamCaptureModeGlobal), cudaSuccess);
  cudaEventRecord(fork, origin);
  cudaStreamWaitEvent(side, fork, 0);
  cudaLaunchHostFunc(origin, record_tag, &first);  // two branches with no order between them
  cudaLaunchHostFunc(side, record_tag, &second);
  cudaEventRecord(join_back, side);
  cudaStreamWaitEvent(origin, join_back, 0);
  Graph g;
  ASSERT_EQ(cudaStreamEndCapture(origin, &g.graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&g.exec, g.graph, 0), cudaSuccess);
  std::set<int> firsts;
  for (int launch = 0; launch < 32; ++launch) {
    log.clear();
    cudaGraphLaunch(g.exec, origin);
    cudaStreamSynchronize(origin);
    ASSERT_EQ(log.size(), 2u);
    firsts.insert(log[0]);
  }
  EXPECT_EQ(firsts.size(), 2u);  // both orders happened: a missing dependency inside a graph can show
  cudaEventDestroy(fork);
  cudaEventDestroy(join_back);
  cudaStreamDestroy(origin);
  cudaStreamDestroy(side);
}

// ---- handles ----------------------------------------------------------------------------------------------------
TEST_F(AsyncRuntime, UsingADestroyedStreamIsReportedAndFails) {
  cudaStream_t s = make_stream();
  cudaEvent_t e = nullptr;
  cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
  cudaStreamDestroy(s);
  EXPECT_EQ(cudaEventRecord(e, s), cudaErrorInvalidResourceHandle);
  cudaGetLastError();
  const auto reports = emu_test::take_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].kind, "misuse");
  cudaEventDestroy(e);
}

// ---- mutations: the emulator commits the bug, and it shows ------------------------------------------------------
TEST_F(AsyncRuntime, MutationDropEventWaitUnordersTheConsumer) {
  zs_emu::set_mutations(zs_emu::kDropEventWait);
  cudaStream_t a = make_stream(), b = make_stream();
  float* x = device_floats();
  float* y = device_floats();
  cudaEvent_t written = nullptr;
  cudaEventCreateWithFlags(&written, cudaEventDisableTiming);
  launch_fill(x, 1.0f, a);
  cudaEventRecord(written, a);
  cudaStreamWaitEvent(b, written, 0);  // dropped
  ZS_LAUNCH(add_one, dim3(1), dim3(kN), b, x, y, kN);
  cudaDeviceSynchronize();
  const auto reports = emu_test::take_reports();
  ASSERT_FALSE(reports.empty());
  EXPECT_EQ(reports[0].kind, "race");
  cudaEventDestroy(written);
  cudaFree(x);
  cudaFree(y);
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
}

TEST_F(AsyncRuntime, MutationFreeBeforeConsumerFreesUnderTheReader) {
  zs_emu::set_mutations(zs_emu::kFreeBeforeConsumer);
  cudaStream_t a = make_stream(), b = make_stream();
  void* block = nullptr;
  float* y = device_floats();
  ASSERT_EQ(cudaMallocAsync(&block, sizeof(float) * kN, a), cudaSuccess);
  launch_fill(static_cast<float*>(block), 1.0f, a);
  cudaEvent_t written = nullptr;
  cudaEventCreateWithFlags(&written, cudaEventDisableTiming);
  cudaEventRecord(written, a);
  cudaStreamWaitEvent(b, written, 0);
  ZS_LAUNCH(add_one, dim3(1), dim3(kN), b, static_cast<float*>(block), y, kN);
  cudaEventRecord(written, b);
  cudaStreamWaitEvent(a, written, 0);
  cudaFreeAsync(block, a);  // ordered after the read; the mutation frees at once
  cudaDeviceSynchronize();
  EXPECT_FALSE(emu_test::take_reports().empty());
  cudaEventDestroy(written);
  cudaFree(y);
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
}

TEST_F(AsyncRuntime, MutationSkipHostWaitReadsBeforeTheWorkRan) {
  zs_emu::set_mutations(zs_emu::kSkipHostWait);
  cudaStream_t s = make_stream();
  float* x = device_floats();
  launch_fill(x, 6.0f, s);
  cudaStreamSynchronize(s);  // returns at once
  EXPECT_EQ(x[0], 0.0f);
  zs_emu::set_mutations(0);
  cudaStreamSynchronize(s);
  EXPECT_EQ(x[0], 6.0f);
  cudaFree(x);
  cudaStreamDestroy(s);
}

TEST_F(AsyncRuntime, MutationWrongLaunchStreamLeavesTheStreamsEventsBehindTheKernel) {
  zs_emu::set_mutations(zs_emu::kWrongLaunchStream);
  cudaStream_t s = make_stream();
  float* x = device_floats();
  launch_fill(x, 8.0f, s);
  cudaEvent_t done = nullptr;
  cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
  cudaEventRecord(done, s);
  cudaEventSynchronize(done);  // covers nothing: the kernel went elsewhere
  std::vector<float> host(kN, 0.0f);
  cudaMemcpyAsync(host.data(), x, sizeof(float) * kN, cudaMemcpyDeviceToHost, s);
  zs_emu::set_mutations(0);
  cudaDeviceSynchronize();
  EXPECT_FALSE(emu_test::take_reports().empty());  // the copy raced with the kernel
  cudaEventDestroy(done);
  cudaFree(x);
  cudaStreamDestroy(s);
}

}  // namespace
