// The CUDA launchers of csrc/cuda/ compiled for the host under the emulation layer (cuda_emu.h), as the tests of
// cpp_tests/emulation call them: `_emulated` appended to the real names, so that a test reads as what it runs.
// The kernels themselves are the object library zsseg_emulated (CMakeLists.txt), the same objects _C_emulated
// links: compiled once, with the names of a CUDA build. Every pointer is host memory; a launch runs on the emulated
// stream's worker. Only for tests, never included by the library.
#pragma once
#include "zsseg/bias_check.h"
#include "zsseg/common.h"
#include "zsseg/pamr.h"
#include "zsseg/preprocess.h"
#include "zsseg/relation_descriptor.h"
#include "zsseg/segment.h"
#include "zsseg/segment_windows.h"
#include "zsseg/similarity.h"
#include "zsseg/upsample.h"
#include "zsseg/warp.h"

namespace zsseg {

// NAME_emulated(params, stream) is NAME(params, stream): the launcher of the emulated build.
#define ZS_EMULATED_LAUNCHER(NAME, PARAMS)                                 \
  inline CudaStatus NAME##_emulated(const PARAMS& params, Stream stream) { \
    return NAME(params, stream);                                           \
  }

ZS_EMULATED_LAUNCHER(bias_check_cuda, BiasCheckParams)
ZS_EMULATED_LAUNCHER(pamr_cuda, PamrParams)
ZS_EMULATED_LAUNCHER(preprocess_cuda, PreprocessParams)
ZS_EMULATED_LAUNCHER(relation_descriptor_cuda, RelationDescriptorParams)
ZS_EMULATED_LAUNCHER(segment_cuda, SegmentParams)
ZS_EMULATED_LAUNCHER(segment_windows_cuda, SegmentWindowsParams)
ZS_EMULATED_LAUNCHER(similarity_cuda, SimilarityParams)
ZS_EMULATED_LAUNCHER(upsample_cuda, UpsampleParams)
ZS_EMULATED_LAUNCHER(warp_cuda, WarpParams)

#undef ZS_EMULATED_LAUNCHER

}  // namespace zsseg
