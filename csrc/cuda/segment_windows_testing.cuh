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
  kOn,                 // default: per tile, classes whose upper bound is below another class's lower bound are skipped
  kBoundsOnly,         // the bound pass runs (and selects the same arithmetic) but every class is evaluated
  kOff,                // no bound pass: the generic arithmetic for every tile (what runs when classes > 1024)
  kPreboundCellsOnly,  // kOn, and (a control: wrong bounds, so wrong labels) the ordered_prebound kernel's first
                       // launch takes each block's first logit alone instead of its 2 x 2 cells
};

// Process-wide; set it before a launch (the launcher reads it when the op is called).
void set_pruning(Pruning mode);
Pruning pruning();

// The sigmoid path's tiled kernel, one of the candidates that a GPU lease times against each other (the
// winner becomes the default and the others go). Every variant gives the CPU op's labels and scores up to fp32
// rounding (the emulation tests run each); they differ in how the tame tiles' merged values are made and in the
// occupancy they ask for. Process-wide, read by the launcher at each call, like the pruning mode.
enum class Variant {
  kTiled,         // default: 8 classes per pass, a thread per (column, row segment), __launch_bounds__(256, 2)
  kColumns,       // a thread per (column, two classes) walks the whole footprint column, rows blended into the output
                  // rows as it goes (stage 2 blends columns only); 22 classes per pass; __launch_bounds__(256, 4)
  kColumnsChain,  // kColumns, and within a run of rows whose exponent is affine (a power-of-two head scale, every
                  // logit of the tile within +-40) 2^t is chained by multiplication: one ex2 per 4 rows
  kWarps,         // no pruning, no barrier in the class loop: a block per output tile, its warps splitting the classes,
                  // a lane per footprint column then per output column (segment_windows_warps.cu); the tiled default
                  // where a footprint meets more than 4 windows
  kOrdered,       // kTiled, and on its fast tiles branch and bound (segment_windows_ordered.cuh): the chunk of the 8
                  // highest upper bounds first, then only the classes whose upper bound reaches the tile's smallest
                  // best value, in class order; __launch_bounds__(256, 2)
  kOrderedPrebound,  // kOrdered, its bound pass reading a first launch's per-block bounds of the logits (2 x 2
                     // cells each: segment_windows_prebound.cuh) instead of every logit of the tile's footprint
};
constexpr int kVariants = 6;
void set_variant(Variant variant);
Variant variant();

// What the sigmoid path's bound pass did since the last reset, summed over tiles: counted by the emulated build
// only (a GPU build returns zeros: counting there would cost an atomic per tile).
struct PruneStats {
  int64_t tiles = 0;           // tiles that ran the bound pass
  int64_t classes = 0;         // classes considered (tiles x C)
  int64_t kept = 0;            // classes evaluated
  int64_t fast_tiles = 0;      // tiles whose logits were all finite and |x| <= 1e30 (the fast arithmetic)
  int64_t chained_rows = 0;    // Variant::kColumnsChain: footprint rows (per window) whose 2^t was chained
  int64_t warp_tiles = 0;      // Variant::kWarps: output tiles its kernel ran (0: the launcher ran another)
  int64_t bound_loads = 0;     // global loads of the tiles' bound passes (a logit, or a prebound block's pair)
  int64_t prebound_loads = 0;  // Variant::kOrderedPrebound: the logits its first launch read (every logit <= 4x)
};
PruneStats prune_stats();
void reset_prune_stats();

}  // inline namespace
}  // namespace segment_windows_testing
}  // namespace zsseg
