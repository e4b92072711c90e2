// The CUDA launchers of csrc/cuda/ compiled for the host under the emulation layer (cuda_emu.h): same
// signatures as the real ones, with `_emulated` appended; every pointer is host memory and the launch runs
// synchronously. Only for tests (cpp_tests/emulation/), never linked into the Python module.
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

CudaStatus bias_check_cuda_emulated(const BiasCheckParams& params, Stream stream);
CudaStatus pamr_cuda_emulated(const PamrParams& params, Stream stream);
CudaStatus preprocess_cuda_emulated(const PreprocessParams& params, Stream stream);
CudaStatus relation_descriptor_cuda_emulated(const RelationDescriptorParams& params, Stream stream);
CudaStatus segment_cuda_emulated(const SegmentParams& params, Stream stream);
CudaStatus segment_windows_cuda_emulated(const SegmentWindowsParams& params, Stream stream);
CudaStatus similarity_cuda_emulated(const SimilarityParams& params, Stream stream);
CudaStatus upsample_cuda_emulated(const UpsampleParams& params, Stream stream);
CudaStatus warp_cuda_emulated(const WarpParams& params, Stream stream);

}  // namespace zsseg
