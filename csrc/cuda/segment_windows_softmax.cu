// CUDA segment_windows, the softmax kernel (tiled; see segment_windows.cu): the three passes over the names each
// recompute the merged values of a chunk (stages 0 and 1) and blend them at the output pixels (stage 2).
#include "segment_windows_tiles.cuh"

namespace zsseg {
namespace sw_cuda {
inline namespace ZS_SW_BUILD {  // emulated / device: segment_windows_tiles.cuh
namespace {

// ---- 2: output blends and argmax -------------------------------------------------------------------------------

// The four taps of one output pixel in the footprint: offsets into smem.merged[c] packed in 16 bits each (the
// footprint holds <= kFootprintCap values) and the two upper weights (the lower ones are 1 - w1, as bilinear_tap
// computes them). Four registers, live across stage 1.
struct PixelTaps {
  uint32_t top, bottom;  // (i0y, i0x) | (i0y, i1x) << 16 ; (i1y, i0x) | (i1y, i1x) << 16
  float w1y, w1x;
};

__device__ __forceinline__ PixelTaps pixel_taps(const Dims& d, const TileSmem& s, int32_t y, int32_t x) {
  const BilinearTap ty = bilinear_tap(d.out_scale_y, y, d.scaled_h);
  const BilinearTap tx = bilinear_tap(d.out_scale_x, x, d.scaled_w);
  const uint32_t r0 = static_cast<uint32_t>((ty.i0 - s.fy0) * s.fw), r1 = static_cast<uint32_t>((ty.i1 - s.fy0) * s.fw);
  const uint32_t c0 = static_cast<uint32_t>(tx.i0 - s.fx0), c1 = static_cast<uint32_t>(tx.i1 - s.fx0);
  return PixelTaps{(r0 + c0) | (r0 + c1) << 16, (r1 + c0) | (r1 + c1) << 16, ty.w1, tx.w1};
}

// Stage 2 for one pixel and the chunk's classes (all kChunk when N == kChunk; else the first n): the output
// blend (columns, then rows) from shared memory, then `update(v, c)`.
template <int N, class Update>
__device__ __forceinline__ void for_chunk(const float (*merged)[kFootprintCap], const PixelTaps& t, int32_t n,
                                          Update&& update) {
  const uint32_t o00 = t.top & 0xffffu, o01 = t.top >> 16, o10 = t.bottom & 0xffffu, o11 = t.bottom >> 16;
  const float w0y = 1.f - t.w1y, w0x = 1.f - t.w1x;
#pragma unroll
  for (int c = 0; c < N; ++c) {
    if (N == kChunk || c < n) {
      const float* m = merged[c];
      update(blend2(blend2(m[o00], m[o01], w0x, t.w1x), blend2(m[o10], m[o11], w0x, t.w1x), w0y, t.w1y), c);
    }
  }
}

template <class Update>
__device__ __forceinline__ void for_chunk_any(const float (*merged)[kFootprintCap], const PixelTaps& t, int32_t n,
                                              Update&& update) {
  if (n == kChunk) {
    for_chunk<kChunk>(merged, t, n, update);
  } else {
    for_chunk<kChunk - 1>(merged, t, n, update);
  }
}

// Softmax variant: the three passes over the names each recompute the merged values (no sigmoid: cheap) instead
// of storing them. No class_drop on CUDA (the binding refuses it).
template <typename T>
__global__ void __launch_bounds__(kThreads, 2)
    segment_windows_softmax_kernel(const T* __restrict__ logits, WindowTable table, Dims d,
                                   const float* __restrict__ class_bias, const int32_t* __restrict__ class_of,
                                   int32_t* __restrict__ labels, float* __restrict__ scores) {
  __shared__ TileSmem s;
  for (int32_t tile_y = static_cast<int32_t>(blockIdx.y); tile_y < d.tiles_y; tile_y += gridDim.y) {
    for (int32_t tile_x = static_cast<int32_t>(blockIdx.x); tile_x < d.tiles_x; tile_x += gridDim.x) {
      const Tile tile = tile_at(d, tile_y, tile_x);
      prepare_tile(table, d, tile.y0, tile.x0, tile.th, tile.tw, s);
      SoftmaxState st[kPixelsPerThread];
      PixelTaps taps[kPixelsPerThread];
      const SegmentOfThread seg(table, s);
#pragma unroll
      for (int i = 0; i < kPixelsPerThread; ++i) {
        st[i].current = class_of != nullptr ? __ldg(class_of) : 0;
        taps[i] = pixel_taps(d, s, tile.has(i) ? tile.y(i) : tile.y0, tile.has(i) ? tile.x(i) : tile.x0);
      }
      for (int pass = 1; pass <= 3; ++pass) {
        for (int32_t c0 = 0; c0 < d.classes; c0 += kChunk) {
          const int32_t chunk = d.classes - c0 < kChunk ? d.classes - c0 : kChunk;
          stage_merged<kIdentity>(logits, table, d, static_cast<const float*>(nullptr), ChunkClasses{c0, chunk, false},
                                  d.logit_scale, seg, s);
#pragma unroll
          for (int i = 0; i < kPixelsPerThread; ++i) {
            if (!tile.has(i) || (pass > 1 && st[i].bad)) continue;
            SoftmaxState state = st[i];  // a copy in the closure: the array stays in registers
            for_chunk_any(s.merged, taps[i], chunk,
                          [&](float v, int c) { softmax_update(state, pass, v, c0 + c, class_of, class_bias); });
            st[i] = state;
          }
          __syncthreads();  // the next chunk overwrites the merged values
        }
        if (pass == 1) {
#pragma unroll
          for (int i = 0; i < kPixelsPerThread; ++i) softmax_finish_pass1(st[i]);
        }
      }
#pragma unroll
      for (int i = 0; i < kPixelsPerThread; ++i) {
        if (!tile.has(i)) continue;
        const int64_t at = static_cast<int64_t>(tile.y(i)) * d.out_w + tile.x(i);
        softmax_store(st[i], class_bias, labels + at, scores + at);
      }
    }
  }
}

}  // namespace

template <typename T>
void launch_softmax(const T* logits, const WindowTable& table, const Dims& d, const SegmentWindowsParams& p, dim3 grid,
                    cudaStream_t stream) {
  ZS_LAUNCH(segment_windows_softmax_kernel<T>, grid, kThreads, stream, logits, table, d, p.class_bias, p.class_of,
            p.labels, p.scores);
}

ZS_SW_INSTANTIATE_LAUNCH(launch_softmax, dim3);

}  // namespace ZS_SW_BUILD
}  // namespace sw_cuda
}  // namespace zsseg
