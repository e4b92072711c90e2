// CUDA similarity: text [C, D] x patches [N, D]^T per batch item. On devices with mma.sync (sm_80+) the tensor-core
// kernel (similarity_mma.cuh); elsewhere (and with params.tensor_cores false) the CUDA-core kernel below: a tiled
// shared-memory GEMM whose block's inverse row norms (normalize) come first and scale the tile stores.
#include "similarity_mma.cuh"
#include "tile_gemm.cuh"
#include "zsseg/similarity.h"

namespace zsseg {
namespace {
using namespace dense_cuda;

// grid.x = B * n_tiles, grid.y strides over class tiles. With normalize, the inverse L2 norms of the block's
// rows are computed first by the whole block (block_inverse_row_norms: a warp per row, scaled so no fp32 overflow or
// underflow) and folded into the tile loads, as the CPU folds them into its operand packing: the products are of
// unit-length rows and cannot overflow either.
template <class T, int Tile>
__global__ void __launch_bounds__(kThreads, 1)
    similarity_kernel(const T* __restrict__ patches, const T* __restrict__ text, T* __restrict__ out,
                      std::int64_t num_patches, std::int64_t num_classes, std::int64_t dim, bool text_batched,
                      bool normalize, float scale, std::int64_t n_tiles, std::int64_t c_tiles) {
  constexpr int P = PerThread<Tile>::value;
  __shared__ TilePair<Tile> tiles;
  __shared__ float text_inverse[Tile], patch_inverse[Tile];
  const std::int64_t b = blockIdx.x / n_tiles;
  const std::int64_t n0 = (blockIdx.x % n_tiles) * Tile;
  const T* patch_rows = patches + b * num_patches * dim;                   // [N, D]
  const T* text_rows = text + (text_batched ? b * num_classes * dim : 0);  // [C, D]
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const bool text_vectors = vector_loads_ok<Tile>(text_rows, dim),
             patch_vectors = vector_loads_ok<Tile>(patch_rows, dim);
  if (normalize) block_inverse_row_norms(patch_rows + n0 * dim, dim, num_patches - n0, Tile, patch_inverse);
  for (std::int64_t c_tile = blockIdx.y; c_tile < c_tiles; c_tile += gridDim.y) {
    const std::int64_t c0 = c_tile * Tile;
    float acc[P][P] = {};
    if (normalize) block_inverse_row_norms(text_rows + c0 * dim, dim, num_classes - c0, Tile, text_inverse);
    __syncthreads();  // the inverse norms are read by every thread's tile loads
    prefetched_k_loop<Tile, T>(
        tiles, acc, dim, ty, tx,
        [&](Fragment<Tile, T>& fa, Fragment<Tile, T>& fb, std::int64_t k0) {
          load_fragment<Tile>(fa, text_rows, dim, num_classes, c0, dim, k0, static_cast<const T*>(nullptr),
                              text_vectors);
          load_fragment<Tile>(fb, patch_rows, dim, num_patches, n0, dim, k0, static_cast<const T*>(nullptr),
                              patch_vectors);
        },
        [&](const Fragment<Tile, T>& fa, const Fragment<Tile, T>& fb) {
          store_fragment<Tile>(tiles.a, fa, false, normalize ? text_inverse : nullptr);
          store_fragment<Tile>(tiles.b, fb, false, normalize ? patch_inverse : nullptr);
        });
    for_each_result(acc, c0, num_classes, n0, num_patches, ty, tx, [&](std::int64_t c, std::int64_t n, float value) {
      out[(b * num_classes + c) * num_patches + n] = from_float<T>(value * scale);
    });
    __syncthreads();  // text_inverse is rewritten for the next class tile
  }
}

template <class T, int Tile>
CudaStatus launch_tiles(const SimilarityParams& p, cudaStream_t stream) {
  const std::int64_t n_tiles = (p.num_patches + Tile - 1) / Tile;
  const std::int64_t c_tiles = (p.num_classes + Tile - 1) / Tile;
  const dim3 grid(static_cast<unsigned int>(p.batch * n_tiles), grid_dim_capped(c_tiles));
  auto* const kernel = &similarity_kernel<T, Tile>;  // (a template-id with a comma cannot be a macro argument)
  ZS_LAUNCH(kernel, grid, kThreads, stream, static_cast<const T*>(p.patches), static_cast<const T*>(p.text),
            static_cast<T*>(p.out), p.num_patches, p.num_classes, p.dim, p.text_batched, p.normalize, p.scale, n_tiles,
            c_tiles);
  return static_cast<CudaStatus>(cudaGetLastError());
}

template <class T>
CudaStatus launch(const SimilarityParams& p, cudaStream_t stream) {
  if (p.tensor_cores && tensor_cores_available()) return launch_mma<T>(p, stream);
  const std::int64_t blocks_64 = p.batch * ((p.num_patches + 63) / 64) * ((p.num_classes + 63) / 64);
  return prefer_small_tiles(blocks_64) ? launch_tiles<T, 32>(p, stream) : launch_tiles<T, 64>(p, stream);
}

}  // namespace

ZS_DTYPE_ENTRY_POINT(similarity_cuda, SimilarityParams)

}  // namespace zsseg
