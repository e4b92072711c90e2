// What the emulated runtime's race detector sees beyond a kernel's pointer arguments and single operations (issue
// 50, review #3-#5): pointers inside a struct parameter (through an emu_accesses overload, and a report when a
// struct carries a tracked pointer without one), the nodes of one graph launch against each other, the host's
// accesses to page-locked memory, a kernel that throws (a sticky device fault), and the library's mutation hooks
// (csrc/cuda/emu_hooks.h). Each case has its ordered control that reports nothing.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/emu_hooks.h"
#include "cuda/launch.cuh"
#include "emu/cuda_emu.h"
#include "emu_test_utils.h"

namespace coverage {

constexpr int kN = 64;

struct Tracked {  // a struct parameter with an overload: its pointers are the kernel's accesses
  const float* in;
  float* out;
  int n;
};
void emu_accesses(const Tracked& p, std::vector<zs_emu::Access>& out) {
  out.push_back(zs_emu::Access{p.in, sizeof(float) * p.n, false});
  out.push_back(zs_emu::Access{p.out, sizeof(float) * p.n, true});
}
struct Untracked {  // a struct parameter carrying a pointer, with no overload
  int n;
  float* out;
};
struct PointerFree {  // nothing to track: needs no overload
  int n;
  float value;
  double scale;
};

__global__ void copy_tracked(Tracked p) {
  for (int i = static_cast<int>(threadIdx.x); i < p.n; i += static_cast<int>(blockDim.x)) p.out[i] = p.in[i];
}
__global__ void fill_untracked(Untracked p) {
  for (int i = static_cast<int>(threadIdx.x); i < p.n; i += static_cast<int>(blockDim.x)) p.out[i] = 1.0f;
}
__global__ void fill_pointer_free(PointerFree p, float* out) {
  for (int i = static_cast<int>(threadIdx.x); i < p.n; i += static_cast<int>(blockDim.x)) out[i] = p.value;
}
__global__ void fill(float* out, int n, float value) {
  for (int i = static_cast<int>(threadIdx.x); i < n; i += static_cast<int>(blockDim.x)) out[i] = value;
}
__global__ void fault(int /*unused*/) {
  throw std::runtime_error("trap");
}

}  // namespace coverage

namespace {

constexpr int kCoverageN = coverage::kN;  // its own name: the glue compiles as unity sources (CMakeLists.txt)

class DetectorCoverage : public ::testing::Test {
 protected:
  void SetUp() override {
    zs_emu::reset_runtime();
    zs_emu::set_mutations(0);
    ASSERT_EQ(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&x), sizeof(float) * kCoverageN), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&y), sizeof(float) * kCoverageN), cudaSuccess);
    std::memset(x, 0, sizeof(float) * kCoverageN);
    std::memset(y, 0, sizeof(float) * kCoverageN);
  }
  void TearDown() override {
    zs_emu::set_mutations(0);
    zs_emu::reset_device_error();
    cudaDeviceSynchronize();
    cudaFree(x);
    cudaFree(y);
    cudaStreamDestroy(a);
    cudaStreamDestroy(b);
    zs_emu::reset_runtime();
  }
  // b waits for what a has enqueued so far
  void order_b_after_a() {
    cudaEvent_t e = nullptr;
    ASSERT_EQ(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), cudaSuccess);
    ASSERT_EQ(cudaEventRecord(e, a), cudaSuccess);
    ASSERT_EQ(cudaStreamWaitEvent(b, e, 0), cudaSuccess);
    cudaEventDestroy(e);
  }
  static std::vector<std::string> kinds(const std::vector<zs_emu::Report>& reports) {
    std::vector<std::string> out;
    for (const auto& r : reports) out.push_back(r.kind);
    return out;
  }
  cudaStream_t a = nullptr, b = nullptr;
  float* x = nullptr;
  float* y = nullptr;
};

// ---- struct parameters --------------------------------------------------------------------------------------
TEST_F(DetectorCoverage, AStructParametersPointersAreTrackedThroughItsOverload) {
  for (bool ordered : {false, true}) {
    ZS_LAUNCH(coverage::copy_tracked, dim3(1), dim3(32), a, coverage::Tracked{x, y, kCoverageN});  // writes y
    if (ordered) order_b_after_a();
    ZS_LAUNCH(coverage::fill, dim3(1), dim3(32), b, y, kCoverageN, 2.0f);  // writes y too
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    cudaDeviceSynchronize();
    const auto reports = emu_test::take_reports();
    if (ordered) {
      EXPECT_TRUE(reports.empty()) << reports.front().message;
    } else {
      ASSERT_EQ(kinds(reports), std::vector<std::string>{"race"});
      EXPECT_NE(reports[0].message.find("copy_tracked"), std::string::npos) << reports[0].message;
    }
  }
}

TEST_F(DetectorCoverage, AStructCarryingATrackedPointerWithoutAnOverloadIsReported) {
  ZS_LAUNCH(coverage::fill_untracked, dim3(1), dim3(32), a, coverage::Untracked{kCoverageN, x});
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  cudaDeviceSynchronize();
  const auto reports = emu_test::take_reports();
  ASSERT_EQ(kinds(reports), std::vector<std::string>{"misuse"});
  EXPECT_NE(reports[0].message.find("fill_untracked"), std::string::npos) << reports[0].message;
  EXPECT_NE(reports[0].message.find("no emu_accesses overload"), std::string::npos) << reports[0].message;
}

TEST_F(DetectorCoverage, AStructWithoutPointersNeedsNoOverload) {
  ZS_LAUNCH(coverage::fill_pointer_free, dim3(1), dim3(32), a, coverage::PointerFree{kCoverageN, 3.0f, 0.5}, x);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);
  EXPECT_EQ(x[kCoverageN - 1], 3.0f);
  EXPECT_TRUE(emu_test::take_reports().empty());
}

// ---- graph nodes against each other ----------------------------------------------------------------------------
TEST_F(DetectorCoverage, UnorderedWritersInTwoNodesOfOneGraphAreARaceAndOrderedOnesAreNot) {
  for (bool ordered : {false, true}) {
    cudaEvent_t fork = nullptr, middle = nullptr, join_back = nullptr;
    cudaEventCreateWithFlags(&fork, cudaEventDisableTiming);
    cudaEventCreateWithFlags(&middle, cudaEventDisableTiming);
    cudaEventCreateWithFlags(&join_back, cudaEventDisableTiming);
    ASSERT_EQ(cudaStreamBeginCapture(a, cudaStreamCaptureModeGlobal), cudaSuccess);
    cudaEventRecord(fork, a);
    cudaStreamWaitEvent(b, fork, 0);  // b joins the capture: a fork
    ZS_LAUNCH(coverage::fill, dim3(1), dim3(32), a, x, kCoverageN, 3.0f);
    if (ordered) {  // b's write after a's
      cudaEventRecord(middle, a);
      cudaStreamWaitEvent(b, middle, 0);
    }
    ZS_LAUNCH(coverage::fill, dim3(1), dim3(32), b, x, kCoverageN, 4.0f);
    ZS_LAUNCH(coverage::fill, dim3(1), dim3(32), b, y, kCoverageN, 5.0f);  // y: one writer, never a race
    cudaEventRecord(join_back, b);
    cudaStreamWaitEvent(a, join_back, 0);  // joined back before the capture ends
    cudaGraph_t graph = nullptr;
    ASSERT_EQ(cudaStreamEndCapture(a, &graph), cudaSuccess);
    cudaGraphExec_t exec = nullptr;
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, a), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);
    const auto reports = emu_test::take_reports();
    if (ordered) {
      EXPECT_TRUE(reports.empty()) << reports.front().message;
      EXPECT_EQ(x[0], 4.0f);
    } else {
      ASSERT_EQ(kinds(reports), std::vector<std::string>{"race"});
      EXPECT_NE(reports[0].message.find("(node 0) and 'coverage::fill' (node 1) both write"), std::string::npos)
          << reports[0].message;
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaEventDestroy(fork);
    cudaEventDestroy(middle);
    cudaEventDestroy(join_back);
  }
}

// ---- host accesses to page-locked memory ------------------------------------------------------------------------
TEST_F(DetectorCoverage, AHostReadOfMappedMemoryBeforeTheWriterIsSynchronisedIsARace) {
  float* mapped = nullptr;
  ASSERT_EQ(cudaHostAlloc(reinterpret_cast<void**>(&mapped), sizeof(float) * kCoverageN, cudaHostAllocMapped),
            cudaSuccess);
  std::memset(mapped, 0, sizeof(float) * kCoverageN);
  for (bool synchronised : {true, false}) {
    {
      zs_emu::StreamHold running(a);  // the kernel has not run when the host reads (the read comes first)
      ZS_LAUNCH(coverage::fill, dim3(1), dim3(32), a, mapped, kCoverageN, 7.0f);
      if (synchronised) running.release();
      if (synchronised) ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);
      zs_emu::host_access(mapped, sizeof(float) * kCoverageN, false, "host read of the results");
    }
    ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);
    const auto reports = emu_test::take_reports();
    if (synchronised) {
      EXPECT_TRUE(reports.empty()) << reports.front().message;
    } else {
      ASSERT_EQ(kinds(reports), std::vector<std::string>{"race"});
      EXPECT_NE(reports[0].message.find("host read of the results"), std::string::npos) << reports[0].message;
    }
  }
  // the other order: the kernel ran, the host did not synchronise before it read
  ZS_LAUNCH(coverage::fill, dim3(1), dim3(32), a, mapped, kCoverageN, 8.0f);
  zs_emu::settle();
  zs_emu::host_access(mapped, sizeof(float) * kCoverageN, false, "host read of the results");
  ASSERT_EQ(kinds(emu_test::take_reports()), std::vector<std::string>{"race"});
  ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);
  // a host write of memory a pending copy reads: a race; work enqueued after the write is ordered after it
  {
    zs_emu::StreamHold running(a);
    cudaMemcpyAsync(x, mapped, sizeof(float) * kCoverageN, cudaMemcpyHostToDevice, a);
    zs_emu::host_access(mapped, sizeof(float) * kCoverageN, true, "host write of the next frame");
  }
  ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);
  ASSERT_EQ(kinds(emu_test::take_reports()), std::vector<std::string>{"race"});
  zs_emu::host_access(mapped, sizeof(float) * kCoverageN, true, "host write of the next frame");
  cudaMemcpyAsync(x, mapped, sizeof(float) * kCoverageN, cudaMemcpyHostToDevice, a);
  ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);
  EXPECT_TRUE(emu_test::take_reports().empty());
  cudaFreeHost(mapped);
}

// ---- a kernel that throws: a sticky device fault ---------------------------------------------------------------
// Both orders a machine may give: the stream's worker runs the kernel after the launch's check (held here until the
// check is made), or before it (settled here before it; as a GPU may fault before cudaGetLastError is called, that
// call then returns the fault: it is sticky).
class KernelFault : public DetectorCoverage, public ::testing::WithParamInterface<bool> {};
TEST_P(KernelFault, AKernelThatThrowsIsReportedAndItsFaultIsSticky) {
  const bool ran_first = GetParam();
  if (ran_first) {
    ZS_LAUNCH(coverage::fault, dim3(1), dim3(1), a, 0);
    zs_emu::settle();
    EXPECT_EQ(zs_emu::last_error(), cudaSuccess);           // the launch's own error: the launch itself was fine
    EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);  // the fault that already happened
  } else {
    zs_emu::StreamHold held(a);
    ZS_LAUNCH(coverage::fault, dim3(1), dim3(1), a, 0);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);  // the launch itself is fine: the fault comes when it runs
  }
  EXPECT_EQ(cudaStreamSynchronize(a), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaStreamSynchronize(b), cudaErrorLaunchFailure);  // the whole device, not the stream
  EXPECT_EQ(cudaDeviceSynchronize(), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);  // sticky: not cleared
  ZS_LAUNCH(coverage::fill, dim3(1), dim3(32), b, x, kCoverageN, 9.0f);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);  // a later launch fails and does not run
  EXPECT_EQ(cudaMemsetAsync(x, 0, sizeof(float) * kCoverageN, b), cudaErrorLaunchFailure);
  const auto reports = emu_test::take_reports();
  ASSERT_EQ(kinds(reports), std::vector<std::string>{"kernel-error"});
  EXPECT_NE(reports[0].message.find("trap"), std::string::npos) << reports[0].message;
  EXPECT_EQ(x[0], 0.0f);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);  // the memset's failure, this thread's last error
  zs_emu::reset_device_error();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);                            // no longer sticky
  ZS_LAUNCH(coverage::fill, dim3(1), dim3(32), b, x, kCoverageN, 9.0f);  // after the reset, kernels run again
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(b), cudaSuccess);
  EXPECT_EQ(x[0], 9.0f);
}
INSTANTIATE_TEST_SUITE_P(Orders, KernelFault, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "RanFirst" : "CheckedFirst"; });

// ---- the library's mutation hooks ------------------------------------------------------------------------------
TEST_F(DetectorCoverage, TheLibrarysMutationHooksFollowTheEmulatorsMutations) {
  EXPECT_FALSE(ZS_LIBRARY_MUTATED(kLibSkipInputWait));
  zs_emu::set_mutations(zs_emu::parse_mutations("lib_skip_input_wait,lib_skip_release_wait"));
  EXPECT_TRUE(ZS_LIBRARY_MUTATED(kLibSkipInputWait));
  EXPECT_TRUE(ZS_LIBRARY_MUTATED(kLibSkipReleaseWait));
  EXPECT_FALSE(ZS_LIBRARY_MUTATED(kLibSkipReaderRecord));
  zs_emu::set_mutations(0);
  EXPECT_FALSE(ZS_LIBRARY_MUTATED(kLibSkipReleaseWait));
}

}  // namespace
