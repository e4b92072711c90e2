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

CudaStatus bias_check_cuda(const BiasCheckParams&, Stream) {
  return kBuiltWithoutCuda;
}
CudaStatus preprocess_cuda(const PreprocessParams&, Stream) {
  return kBuiltWithoutCuda;
}
CudaStatus relation_descriptor_cuda(const RelationDescriptorParams&, Stream) {
  return kBuiltWithoutCuda;
}
CudaStatus segment_cuda(const SegmentParams&, Stream) {
  return kBuiltWithoutCuda;
}
CudaStatus segment_windows_cuda(const SegmentWindowsParams&, Stream) {
  return kBuiltWithoutCuda;
}
CudaStatus similarity_cuda(const SimilarityParams&, Stream) {
  return kBuiltWithoutCuda;
}
CudaStatus upsample_cuda(const UpsampleParams&, Stream) {
  return kBuiltWithoutCuda;
}

}  // namespace zsseg
#endif  // ZSSEG_WITH_CUDA
