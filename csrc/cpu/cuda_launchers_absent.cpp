// The CUDA launchers for a build without CUDA (no nvcc, or -DZS_WITH_CUDA=OFF): the bindings name them, so the
// module must link, and a call reports "built without CUDA" through check_launch instead of an undefined symbol
// at import. The bindings refuse device arrays before reaching here; this is the last line, not the first.
// With CUDA, csrc/cuda/*.cu define them instead.
#ifndef ZSSEG_WITH_CUDA
#include "zsseg/bias_check.h"
#include "zsseg/preprocess.h"
#include "zsseg/relation_descriptor.h"
#include "zsseg/segment.h"
#include "zsseg/segment_windows.h"
#include "zsseg/similarity.h"
#include "zsseg/upsample.h"

namespace zsseg {

namespace {
// Any non-zero status: cuda_error_string() of a build without CUDA says "zsseg_rt was built without CUDA".
constexpr CudaStatus kBuiltWithoutCuda = 1;
}  // namespace

// Every launcher of this build: the same refusal.
#define ZS_ABSENT_LAUNCHER(NAME, PARAMS)   \
  CudaStatus NAME(const PARAMS&, Stream) { \
    return kBuiltWithoutCuda;              \
  }

ZS_ABSENT_LAUNCHER(bias_check_cuda, BiasCheckParams)
ZS_ABSENT_LAUNCHER(preprocess_cuda, PreprocessParams)
ZS_ABSENT_LAUNCHER(relation_descriptor_cuda, RelationDescriptorParams)
ZS_ABSENT_LAUNCHER(segment_cuda, SegmentParams)
ZS_ABSENT_LAUNCHER(segment_windows_cuda, SegmentWindowsParams)
ZS_ABSENT_LAUNCHER(similarity_cuda, SimilarityParams)
ZS_ABSENT_LAUNCHER(upsample_cuda, UpsampleParams)

#undef ZS_ABSENT_LAUNCHER

}  // namespace zsseg
#endif  // ZSSEG_WITH_CUDA
