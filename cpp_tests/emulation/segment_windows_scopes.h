// The segment_windows launcher's process-wide test modes (csrc/cuda/segment_windows_testing.cuh), set for a scope
// and restored after it: the class pruning mode and the sigmoid path's kernel variant (the candidates a GPU lease
// times; every one must give the CPU op's decisions). Include after the emulation's headers (emu/kernels_emulated.h).
#pragma once
#include <cstdint>
#include <vector>

#include "cuda/segment_windows_testing.cuh"

namespace emu_test {

class PruningScope {
 public:
  explicit PruningScope(zsseg::segment_windows_testing::Pruning mode)
      : old_(zsseg::segment_windows_testing::pruning()) {
    zsseg::segment_windows_testing::set_pruning(mode);
  }
  ~PruningScope() { zsseg::segment_windows_testing::set_pruning(old_); }
  PruningScope(const PruningScope&) = delete;
  PruningScope& operator=(const PruningScope&) = delete;

 private:
  zsseg::segment_windows_testing::Pruning old_;
};

class VariantScope {
 public:
  explicit VariantScope(int variant) : old_(zsseg::segment_windows_testing::variant()) {
    zsseg::segment_windows_testing::set_variant(static_cast<zsseg::segment_windows_testing::Variant>(variant));
  }
  ~VariantScope() { zsseg::segment_windows_testing::set_variant(old_); }
  VariantScope(const VariantScope&) = delete;
  VariantScope& operator=(const VariantScope&) = delete;

 private:
  zsseg::segment_windows_testing::Variant old_;
};

// The kernel variants a case runs under a grid cap: every one at the real cap; at the tiny cap (grid-stride loops:
// the same tile loop in every variant) the default, the chained column form, ordered and warps (its own tile loop).
// pruned_only: the variants that run the bound pass (not warps).
inline std::vector<int> kernel_variants(std::int64_t grid_cap, bool pruned_only = false) {
  using zsseg::segment_windows_testing::Variant;
  std::vector<int> kernels{static_cast<int>(Variant::kTiled), static_cast<int>(Variant::kColumnsChain),
                           static_cast<int>(Variant::kOrdered), static_cast<int>(Variant::kOrderedPrebound)};
  if (grid_cap > 2) kernels.push_back(static_cast<int>(Variant::kColumns));
  if (!pruned_only) kernels.push_back(static_cast<int>(Variant::kWarps));
  return kernels;
}

// segment_windows_cuda_emulated(p) with the scratch the kernel it runs needs (p.kernel, else the process-wide one:
// ordered_prebound's bounds), then a synchronisation (the scratch is freed after it); returns the launch's status.
inline zsseg::CudaStatus segment_windows_with_scratch(zsseg::SegmentWindowsParams p) {
  const int32_t kernel = p.kernel >= 0 ? p.kernel : static_cast<int32_t>(zsseg::segment_windows_testing::variant());
  std::vector<float> scratch(static_cast<std::size_t>(zsseg::segment_windows_scratch_floats(p, kernel)));
  p.scratch = scratch.empty() ? nullptr : scratch.data();
  p.scratch_floats = static_cast<int64_t>(scratch.size());
  const zsseg::CudaStatus status = zsseg::segment_windows_cuda_emulated(p, nullptr);
  const cudaError_t synced = cudaDeviceSynchronize();
  return status != 0 ? status : static_cast<zsseg::CudaStatus>(synced);
}

}  // namespace emu_test
