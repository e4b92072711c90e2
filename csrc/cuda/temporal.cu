// CUDA kernels of the video filter's ops (see zsseg/temporal.h): one thread per pixel (grid-stride) running the
// per-pixel functions the CPU kernels run; the products and sums rounded one by one (__fmul_rn / __fadd_rn in the
// shared functions), so the values are the CPU kernels'. Nothing synchronises; enqueued on `stream`.
#include "resize_common.cuh"
#include "zsseg/temporal.h"

namespace zsseg {

#if defined(ZS_CUDA_EMULATION)
// The emulated runtime's race detector sees the pointers inside a struct parameter through these (cuda_emu.h).
inline void emu_accesses(const TemporalBlendParams& p, std::vector<zs_emu::Access>& out) {
  const auto plane = static_cast<std::size_t>(p.height * p.width), states = plane * p.classes;
  out.push_back(zs_emu::Access{p.current, states * 4, false});
  out.push_back(zs_emu::Access{p.previous, states * 4, false});
  out.push_back(zs_emu::Access{p.previous_jitter, plane * 4, false});
  out.push_back(zs_emu::Access{p.doubt, plane * 4, false});
  out.push_back(zs_emu::Access{p.valid, plane, false});
  out.push_back(zs_emu::Access{p.state, states * 4, true});
  out.push_back(zs_emu::Access{p.jitter, plane * 4, true});
  out.push_back(zs_emu::Access{p.noise, plane * 4, true});
  out.push_back(zs_emu::Access{p.measured, 4, true});
}
inline void emu_accesses(const TemporalHoldParams& p, std::vector<zs_emu::Access>& out) {
  const auto frame = static_cast<std::size_t>(p.height * p.width),
             plane = static_cast<std::size_t>(p.state_height * p.state_width);
  out.push_back(zs_emu::Access{p.labels, frame * 4, true});
  out.push_back(zs_emu::Access{p.scores, frame * 4, true});
  out.push_back(zs_emu::Access{p.state, plane * p.classes * 4, false});
  out.push_back(zs_emu::Access{p.noise, plane * 4, false});
  out.push_back(zs_emu::Access{p.anchor_labels, frame * 4, false});
  out.push_back(zs_emu::Access{p.flow, frame * 8, false});
  out.push_back(zs_emu::Access{p.valid, frame, false});
  if (p.measured != nullptr) out.push_back(zs_emu::Access{p.measured, 4, false});
}
inline void emu_accesses(const TemporalPropagateParams& p, std::vector<zs_emu::Access>& out) {
  const auto frame = static_cast<std::size_t>(p.height * p.width);
  out.push_back(zs_emu::Access{p.anchor_labels, frame * 4, false});
  out.push_back(zs_emu::Access{p.anchor_scores, frame * 4, false});
  out.push_back(zs_emu::Access{p.flow, frame * 8, false});
  if (p.fill != nullptr) {
    out.push_back(zs_emu::Access{p.fill, static_cast<std::size_t>(p.fill_height * p.fill_width) * 4, false});
    out.push_back(zs_emu::Access{p.rows_down, static_cast<std::size_t>(p.height) * 4, false});
    out.push_back(zs_emu::Access{p.cols_down, static_cast<std::size_t>(p.width) * 4, false});
    out.push_back(zs_emu::Access{p.rows_up, static_cast<std::size_t>(p.fill_height) * 4, false});
    out.push_back(zs_emu::Access{p.cols_up, static_cast<std::size_t>(p.fill_width) * 4, false});
  }
  out.push_back(zs_emu::Access{p.labels, frame * 4, true});
  out.push_back(zs_emu::Access{p.scores, frame * 4, true});
}
#endif

namespace {

constexpr int kMeasuredThreads = 256;

// One block: whether any state pixel has a measured jitter (no atomics: a shared-memory OR, one plain store).
__global__ void __launch_bounds__(kMeasuredThreads) temporal_measured_kernel(TemporalBlendParams p) {
  __shared__ int32_t any[kMeasuredThreads];
  const int64_t plane = p.height * p.width;
  int32_t mine = 0;
  for (int64_t i = threadIdx.x; i < plane && mine == 0; i += blockDim.x) mine = temporal_measured(p, i) ? 1 : 0;
  any[threadIdx.x] = mine;
  __syncthreads();
  for (int half = kMeasuredThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) any[threadIdx.x] |= any[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) *p.measured = any[0];
}

__global__ void temporal_blend_kernel(TemporalBlendParams p) {
  const int64_t plane = p.height * p.width;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < plane;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    temporal_blend_pixel(p, i);
  }
}

__global__ void temporal_hold_kernel(TemporalHoldParams p) {
  if (p.measured != nullptr && *p.measured == 0) return;
  const int64_t total = p.height * p.width;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    temporal_hold_pixel(p, i / p.width, i % p.width);
  }
}

__global__ void temporal_propagate_kernel(TemporalPropagateParams p) {
  const int64_t total = p.height * p.width;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    temporal_propagate_pixel(p, i / p.width, i % p.width);
  }
}

// class_state: the window placements by value (host memory in the params).
struct StateWindows {
  WindowPlacement w[kMaxStateWindows];
};

template <typename T>
__global__ void class_state_kernel(const T* __restrict__ logits, StateWindows table, ClassStateDims d,
                                   const float* __restrict__ class_bias, float* __restrict__ state) {
  const int64_t total = d.classes * d.state_h * d.state_w, plane = d.in_h * d.in_w;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = i % d.state_w, row = (i / d.state_w) % d.state_h, c = i / (d.state_w * d.state_h);
    const float bias = class_bias != nullptr ? class_bias[c] : 0.f;
    const auto read = [&](int64_t k, const BilinearTap& ty, const BilinearTap& tx) {
      return cuda_detail::bilinear_at(logits + (k * d.classes + c) * plane, d.in_w, ty, tx);
    };
    state[i] = class_state_pixel(d, table.w, bias, row, j, read);
  }
}

template <typename T>
CudaStatus launch_class_state(const ClassStateParams& p, cudaStream_t s) {
  StateWindows table{};
  for (int64_t k = 0; k < p.num_windows; ++k) table.w[k] = p.windows[k];
  ZS_LAUNCH(class_state_kernel<T>, cuda_detail::blocks_for(p.classes * p.state_height * p.state_width),
            cuda_detail::kThreadsPerBlock, s, static_cast<const T*>(p.logits), table, class_state_dims(p), p.class_bias,
            p.state);
  return static_cast<CudaStatus>(cudaGetLastError());
}

}  // namespace

CudaStatus temporal_blend_cuda(const TemporalBlendParams& p, Stream stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  ZS_LAUNCH(temporal_measured_kernel, dim3(1), dim3(kMeasuredThreads), s, p);
  ZS_LAUNCH(temporal_blend_kernel, cuda_detail::blocks_for(p.height * p.width), cuda_detail::kThreadsPerBlock, s, p);
  return static_cast<CudaStatus>(cudaGetLastError());
}

CudaStatus temporal_hold_cuda(const TemporalHoldParams& p, Stream stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  ZS_LAUNCH(temporal_hold_kernel, cuda_detail::blocks_for(p.height * p.width), cuda_detail::kThreadsPerBlock, s, p);
  return static_cast<CudaStatus>(cudaGetLastError());
}

CudaStatus temporal_propagate_cuda(const TemporalPropagateParams& p, Stream stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  ZS_LAUNCH(temporal_propagate_kernel, cuda_detail::blocks_for(p.height * p.width), cuda_detail::kThreadsPerBlock, s,
            p);
  return static_cast<CudaStatus>(cudaGetLastError());
}

CudaStatus class_state_cuda(const ClassStateParams& p, Stream stream) {
  if (p.num_windows < 1 || p.num_windows > kMaxStateWindows) return static_cast<CudaStatus>(cudaErrorInvalidValue);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  return p.dtype == DType::Float16 ? launch_class_state<__half>(p, s) : launch_class_state<float>(p, s);
}

}  // namespace zsseg
