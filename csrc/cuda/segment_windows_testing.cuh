// Test hooks of the CUDA segment_windows launcher (csrc/cuda/segment_windows.cu): plain C++, no CUDA types, so
// that the emulated kernel tests (cpp_tests/emulation) can switch the tiled kernel's class pruning and read what
// it did. Nothing in the library calls these; the default is what the op always runs (pruning on).
#pragma once
#include <cstdint>

namespace zsseg {
namespace segment_windows_testing {
// The emulated build (csrc/emu, which defines ZS_CUDA_EMULATION before this header) and a CUDA build give their
// hooks different symbols, so one program may link both. An emulated test includes this header after the
// emulation's headers (emu/kernels_emulated.h).
#if defined(ZS_CUDA_EMULATION)
inline namespace emulated {
#else
inline namespace device {
#endif

enum class Pruning {
  kOn,          // default: per tile, classes whose upper bound is below another class's lower bound are skipped
  kBoundsOnly,  // the bound pass runs (and selects the same arithmetic) but every class is evaluated
  kOff,         // no bound pass: the generic arithmetic for every tile (what runs when classes > 1024)
};

// Process-wide; set it before a launch (the launcher reads it when the op is called).
void set_pruning(Pruning mode);
Pruning pruning();

// What the sigmoid path's bound pass did since the last reset, summed over tiles: counted by the emulated build
// only (a GPU build returns zeros: counting there would cost an atomic per tile).
struct PruneStats {
  int64_t tiles = 0;       // tiles that ran the bound pass
  int64_t classes = 0;     // classes considered (tiles x C)
  int64_t kept = 0;        // classes evaluated
  int64_t fast_tiles = 0;  // tiles whose logits were all finite and |x| <= 1e30 (the fast arithmetic)
};
PruneStats prune_stats();
void reset_prune_stats();

}  // inline namespace
}  // namespace segment_windows_testing
}  // namespace zsseg
