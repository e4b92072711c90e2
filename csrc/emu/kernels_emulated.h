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

inline CudaStatus bias_check_cuda_emulated(const BiasCheckParams& params, Stream stream) {
  return bias_check_cuda(params, stream);
}
inline CudaStatus pamr_cuda_emulated(const PamrParams& params, Stream stream) {
  return pamr_cuda(params, stream);
}
inline CudaStatus preprocess_cuda_emulated(const PreprocessParams& params, Stream stream) {
  return preprocess_cuda(params, stream);
}
inline CudaStatus relation_descriptor_cuda_emulated(const RelationDescriptorParams& params, Stream stream) {
  return relation_descriptor_cuda(params, stream);
}
inline CudaStatus segment_cuda_emulated(const SegmentParams& params, Stream stream) {
  return segment_cuda(params, stream);
}
inline CudaStatus segment_windows_cuda_emulated(const SegmentWindowsParams& params, Stream stream) {
  return segment_windows_cuda(params, stream);
}
inline CudaStatus similarity_cuda_emulated(const SimilarityParams& params, Stream stream) {
  return similarity_cuda(params, stream);
}
inline CudaStatus upsample_cuda_emulated(const UpsampleParams& params, Stream stream) {
  return upsample_cuda(params, stream);
}
inline CudaStatus warp_cuda_emulated(const WarpParams& params, Stream stream) {
  return warp_cuda(params, stream);
}

}  // namespace zsseg
