// CUDA bilinear resize (torch align_corners=False), fp32 math, with the optional calibration f(v) - class_bias[c]
// (f = sigmoid or identity) applied before the store.
#include "resize_common.cuh"
#include "zsseg/upsample.h"

namespace zsseg {
namespace {

using cuda_detail::load_as_float;
using cuda_detail::store_pack;

// A thread owns V consecutive output columns of kRows consecutive rows of one plane at a time (grid: x = column
// groups, y = row chunks, z = planes; each a grid-stride loop). Its V horizontal taps are computed once; down the rows
// it keeps the two source rows' horizontal blends h0 = blend2(row i0), h1 = blend2(row i1) and reloads them only when
// the vertical tap moves (every 16th row at 32 -> 512), so an output costs one vertical blend (FMUL + FFMA) and 1/V
// of a V-wide store: blend4's expression tree (rows outer, the same taps and weights), so the values are the ones
// the per-pixel form gave. The vertical tap is computed per row (the same for the whole block: block-uniform
// branches). V = 4 (one 16-byte store of fp32, 8 of fp16) where the output's rows are aligned to it, else V = 1.
// The first GPU run measured the one-thread-per-element form at 2.03x torch (four 64-bit divisions and two taps per
// element); the H100 of 2026-11-26 the previous form (a thread per column, taps per element) at 1.09x: ~82 SASS
// instructions per element, issue-bound at ~125 us for C=171 32x32 -> 512x512, whose one real cost is the 179 MB
// output write (~60 us at ~3 TB/s).
constexpr int kRows = 16;
constexpr int kColumnThreads = 128;

template <typename T, int V>
struct Columns {
  int32_t i0[V], i1[V];
  float w0[V], w1[V];
};

// h[j] = blend2(row[i0[j]], row[i1[j]], w0[j], w1[j]): row r's horizontal blend at the thread's V columns.
template <typename T, int V>
__device__ __forceinline__ void blend_row(const T* __restrict__ row, const Columns<T, V>& c, float (&h)[V]) {
#pragma unroll
  for (int j = 0; j < V; ++j)
    h[j] = blend2(load_as_float(row + c.i0[j]), load_as_float(row + c.i1[j]), c.w0[j], c.w1[j]);
}

template <typename T, int V>
__global__ void __launch_bounds__(kColumnThreads, 8)
    upsample_kernel(const T* __restrict__ input, T* __restrict__ output, ResizeGeometry g, float scale_y, float scale_x,
                    bool apply_sigmoid, const float* __restrict__ class_bias) {
  const int64_t planes = g.batch * g.channels;
  const int64_t plane_in = g.in_height * g.in_width;
  const int64_t plane_out = g.out_height * g.out_width;
  const int64_t crop_offset = g.crop_top * g.in_width + g.crop_left;
  const int64_t groups = (g.out_width + V - 1) / V;
  // every size fits int32 (no array holds more than 2^31 - 1 elements): 32-bit tap arithmetic
  const int32_t out_height = static_cast<int32_t>(g.out_height), in_width = static_cast<int32_t>(g.in_width);
  const int32_t crop_height = static_cast<int32_t>(g.crop_height), crop_width = static_cast<int32_t>(g.crop_width);
  for (int64_t group = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; group < groups;
       group += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t x0 = group * V;
    Columns<T, V> c;
#pragma unroll
    for (int j = 0; j < V; ++j) {  // V = 1: x0 < out_width; V = 4: out_width % 4 == 0, so every column exists
      const BilinearTap tx = bilinear_tap_in<int32_t>(scale_x, static_cast<int32_t>(x0 + j), crop_width);
      c.i0[j] = tx.i0, c.i1[j] = tx.i1, c.w0[j] = tx.w0, c.w1[j] = tx.w1;
    }
    for (int32_t y0 = static_cast<int32_t>(blockIdx.y) * kRows; y0 < out_height; y0 += gridDim.y * kRows) {
      const int32_t y_end = y0 + kRows < out_height ? y0 + kRows : out_height;
      for (int64_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
        const T* in_plane = input + plane * plane_in + crop_offset;
        T* out_row = output + plane * plane_out + y0 * g.out_width + x0;
        const float bias = class_bias != nullptr ? __ldg(class_bias + plane % g.channels) : 0.f;
        float h0[V] = {}, h1[V] = {};
        int32_t row0 = -1, row1 = -1;  // the source rows h0 and h1 hold
        for (int32_t y = y0; y < y_end; ++y, out_row += g.out_width) {
          const BilinearTap ty = bilinear_tap_in<int32_t>(scale_y, y, crop_height);
          if (ty.i0 != row0 || ty.i1 != row1) {  // the same y for the whole block: a uniform branch
            if (ty.i0 == row1) {
#pragma unroll
              for (int j = 0; j < V; ++j) h0[j] = h1[j];  // moved down one source row
            } else {
              blend_row(in_plane + ty.i0 * in_width, c, h0);
            }
            blend_row(in_plane + ty.i1 * in_width, c, h1);
            row0 = ty.i0, row1 = ty.i1;
          }
          float v[V];
#pragma unroll
          for (int j = 0; j < V; ++j) {
            v[j] = h0[j] * ty.w0 + h1[j] * ty.w1;      // blend4: blend2(row i0) * w0y + blend2(row i1) * w1y
            if (apply_sigmoid) v[j] = logistic(v[j]);  // fp32 expf; NaN propagates, saturates to exactly 0 / 1
            if (class_bias != nullptr) v[j] -= bias;
          }
          store_pack<T, V>(out_row, v);
        }
      }
    }
  }
}

template <typename T, int V>
CudaStatus launch_columns(const UpsampleParams& p, cudaStream_t stream) {
  const ResizeGeometry& g = p.geometry;
  const auto capped = [](int64_t n) {
    return static_cast<unsigned int>(n < 1 ? 1 : (n > ZS_CUDA_GRID_CAP ? ZS_CUDA_GRID_CAP : n));
  };
  const int64_t groups = (g.out_width + V - 1) / V;
  // A block is at most kColumnThreads threads along the row: fewer (whole warps) for narrow outputs.
  const int threads = static_cast<int>(groups >= kColumnThreads ? kColumnThreads : (groups + 31) / 32 * 32);
  const dim3 grid(capped((groups + threads - 1) / threads), capped((g.out_height + kRows - 1) / kRows),
                  capped(g.batch * g.channels));
  // (a template-id with a comma cannot be a macro argument; the emulated build counts launches by this name)
  auto* const upsample_columns_kernel = &upsample_kernel<T, V>;
  ZS_LAUNCH(upsample_columns_kernel, grid, threads, stream, static_cast<const T*>(p.input), static_cast<T*>(p.output),
            g, bilinear_scale(g.crop_height, g.out_height), bilinear_scale(g.crop_width, g.out_width), p.apply_sigmoid,
            p.class_bias);
  return static_cast<CudaStatus>(cudaGetLastError());
}

template <typename T>
CudaStatus launch(const UpsampleParams& p, cudaStream_t stream) {
  // 4 columns a thread where every row starts on a 4-element boundary of an aligned output (out_width % 4 == 0).
  const bool packed = p.geometry.out_width % 4 == 0 && reinterpret_cast<uintptr_t>(p.output) % (4 * sizeof(T)) == 0;
  return packed ? launch_columns<T, 4>(p, stream) : launch_columns<T, 1>(p, stream);
}

}  // namespace

ZS_DTYPE_ENTRY_POINT(upsample_cuda, UpsampleParams)

}  // namespace zsseg
