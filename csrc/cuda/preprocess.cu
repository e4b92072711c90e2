// CUDA image pre-processing (see zsseg/preprocess.h): one thread per output element, the same integer resize
// arithmetic as the CPU path (shared ZS_HD functions), fp32 normalisation, fp32 or fp16 store.
#include "resize_common.cuh"
#include "zsseg/preprocess.h"

namespace zsseg {

#if defined(ZS_CUDA_EMULATION)
// The emulated runtime's race detector sees the pointers a kernel is given, not those inside a struct parameter:
// what preprocess_kernel reads and writes through its PreprocessParams (csrc/emu/cuda_emu.h, param_accesses).
inline void emu_accesses(const PreprocessParams& p, std::vector<zs_emu::Access>& out) {
  const auto frame = static_cast<std::size_t>(p.in_height) * p.in_width * p.in_channels;
  const std::size_t element = p.dtype == DType::Float16 ? 2 : 4;
  const auto batch = static_cast<std::size_t>(p.num_windows) * 3 * p.crop * p.crop * element;
  out.push_back(zs_emu::Access{p.image, frame, false});
  out.push_back(zs_emu::Access{p.output, batch, true});
}
#endif

namespace {

using cuda_detail::store_from_float;

template <typename T>
__global__ void preprocess_kernel(PreprocessParams p) {
  const int64_t plane = static_cast<int64_t>(p.crop) * p.crop;
  const int64_t total = static_cast<int64_t>(p.num_windows) * 3 * plane;
  T* out = static_cast<T*>(p.output);
  const bool identity = p.scaled_height == p.in_height && p.scaled_width == p.in_width;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t x = static_cast<int32_t>(i % p.crop);
    const int32_t y = static_cast<int32_t>((i / p.crop) % p.crop);
    const int32_t c = static_cast<int32_t>((i / plane) % 3);
    const PreprocessWindow w = p.windows[i / (3 * plane)];
    float value = 0.f;
    if (y < w.y2 - w.y1 && x < w.x2 - w.x1) {
      const int32_t sy = w.y1 + y, sx = w.x1 + x;
      const int32_t ch = preprocess_source_channel(c, p.in_channels, p.bgr);
      int32_t v;
      if (identity) {
        v = p.image[(static_cast<int64_t>(sy) * p.in_width + sx) * p.in_channels + ch];
      } else {
        v = resized_u8(p.image, p.in_width, p.in_channels, ch, linear_u8_row_tap(sy, p.in_height, p.scaled_height),
                       linear_u8_column_tap(sx, p.in_width, p.scaled_width));
      }
      value = __fdiv_rn(static_cast<float>(v) - p.mean[c], p.std[c]);  // IEEE division, as on the CPU
    }
    store_from_float(out + i, value);
  }
}

}  // namespace

CudaStatus preprocess_cuda(const PreprocessParams& params, Stream stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t total = static_cast<int64_t>(params.num_windows) * 3 * params.crop * params.crop;
  if (params.dtype == DType::Float16) {
    ZS_LAUNCH(preprocess_kernel<__half>, cuda_detail::blocks_for(total), cuda_detail::kThreadsPerBlock, s, params);
  } else {
    ZS_LAUNCH(preprocess_kernel<float>, cuda_detail::blocks_for(total), cuda_detail::kThreadsPerBlock, s, params);
  }
  return static_cast<CudaStatus>(cudaGetLastError());
}

}  // namespace zsseg
