// CUDA similarity: tiled shared-memory GEMM text [C, D] x patches [N, D]^T per batch item. The row sums
// of squares for normalisation are gathered from the same shared tiles, so no extra pass or buffer.
#include "tile_gemm.cuh"
#include "zsseg/similarity.h"

namespace zsseg {
namespace {
using namespace dense_cuda;

// grid.x = B * n_tiles, grid.y strides over class tiles.
template <class T>
__global__ void __launch_bounds__(kThreads)
    similarity_kernel(const T* __restrict__ patches, const T* __restrict__ text, T* __restrict__ out,
                      std::int64_t num_patches, std::int64_t num_classes, std::int64_t dim, bool text_batched,
                      bool normalize, float scale, std::int64_t n_tiles, std::int64_t c_tiles) {
  __shared__ TilePair tiles;
  __shared__ float text_squares[kTile], patch_squares[kTile];
  const std::int64_t b = blockIdx.x / n_tiles;
  const std::int64_t n0 = (blockIdx.x % n_tiles) * kTile;
  const T* patch_rows = patches + b * num_patches * dim;                   // [N, D]
  const T* text_rows = text + (text_batched ? b * num_classes * dim : 0);  // [C, D]
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  for (std::int64_t c_tile = blockIdx.y; c_tile < c_tiles; c_tile += gridDim.y) {
    const std::int64_t c0 = c_tile * kTile;
    float acc[4][4] = {};
    if (threadIdx.x < kTile) {
      text_squares[threadIdx.x] = 0.0f;
      patch_squares[threadIdx.x] = 0.0f;
    }
    for (std::int64_t k0 = 0; k0 < dim; k0 += kDepth) {
      load_tile(tiles.a, text_rows, dim, num_classes, c0, dim, k0, static_cast<const T*>(nullptr));
      load_tile(tiles.b, patch_rows, dim, num_patches, n0, dim, k0, static_cast<const T*>(nullptr));
      __syncthreads();
      if (normalize) accumulate_row_squares(tiles, text_squares, patch_squares);
      multiply_tiles(tiles, acc, ty, tx);
      __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
      const std::int64_t c = c0 + ty * 4 + i;
      if (c >= num_classes) break;
      const float row_factor = scale * (normalize ? inverse_l2_norm(text_squares[ty * 4 + i]) : 1.0f);
      for (int j = 0; j < 4; ++j) {
        const std::int64_t n = n0 + tx * 4 + j;
        if (n >= num_patches) break;
        const float col_factor = normalize ? inverse_l2_norm(patch_squares[tx * 4 + j]) : 1.0f;
        out[(b * num_classes + c) * num_patches + n] = from_float<T>(acc[i][j] * row_factor * col_factor);
      }
    }
    __syncthreads();  // the squares are reset by the next class tile
  }
}

template <class T>
CudaStatus launch(const SimilarityParams& p, cudaStream_t stream) {
  const std::int64_t n_tiles = (p.num_patches + kTile - 1) / kTile;
  const std::int64_t c_tiles = (p.num_classes + kTile - 1) / kTile;
  const dim3 grid(static_cast<unsigned int>(p.batch * n_tiles), grid_dim_capped(c_tiles));
  similarity_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(p.patches), static_cast<const T*>(p.text),
                                                      static_cast<T*>(p.out), p.num_patches, p.num_classes, p.dim,
                                                      p.text_batched, p.normalize, p.scale, n_tiles, c_tiles);
  return static_cast<CudaStatus>(cudaGetLastError());
}

}  // namespace

CudaStatus similarity_cuda(const SimilarityParams& params, Stream stream) {
  auto* cuda_stream = static_cast<cudaStream_t>(stream);
  if (params.dtype == DType::Float16) return launch<__half>(params, cuda_stream);
  return launch<float>(params, cuda_stream);
}

}  // namespace zsseg
