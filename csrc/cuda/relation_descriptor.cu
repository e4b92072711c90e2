// CUDA relation descriptor. With weight, a block owns a (class tile, output tile) pair: it computes the
// text-only term text . W[:, D:]^T once into registers, then for each image b of its batch chunk adds
// (text * g_b) . W[:, :D]^T, with g_b applied while loading the text tile (no concat, no scratch memory).
#include "tile_gemm.cuh"
#include "zsseg/relation_descriptor.h"

namespace zsseg {
namespace {
using namespace dense_cuda;

// acc = A[rows c0.., :] (each column k scaled by k_scale[k]) . B[rows o0.., :]^T over `depth`.
template <int Tile, class T, int P = PerThread<Tile>::value>
__device__ void tile_product(TilePair<Tile>& tiles, const T* a, std::int64_t lda, std::int64_t a_rows, std::int64_t c0,
                             const T* k_scale, const T* b, std::int64_t ldb, std::int64_t b_rows, std::int64_t o0,
                             std::int64_t depth, float (&acc)[P][P]) {
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  for (std::int64_t k0 = 0; k0 < depth; k0 += kDepth) {
    load_tile<Tile>(tiles.a, a, lda, a_rows, c0, depth, k0, k_scale);
    load_tile<Tile>(tiles.b, b, ldb, b_rows, o0, depth, k0, static_cast<const T*>(nullptr));
    __syncthreads();
    multiply_tiles<Tile>(tiles, acc, ty, tx);
    __syncthreads();
  }
}

// grid.x: output tiles, grid.y: class tiles (strided), grid.z: chunks of `batch_chunk` images.
template <class T, int Tile>
__global__ void __launch_bounds__(kThreads)
    relation_linear_kernel(const T* __restrict__ text, const T* __restrict__ global, const T* __restrict__ weight,
                           const T* __restrict__ bias, T* __restrict__ out, std::int64_t batch,
                           std::int64_t num_classes, std::int64_t dim, std::int64_t out_dim, std::int64_t c_tiles,
                           std::int64_t batch_chunk) {
  constexpr int P = PerThread<Tile>::value;
  __shared__ TilePair<Tile> tiles;
  const std::int64_t o0 = static_cast<std::int64_t>(blockIdx.x) * Tile;
  const std::int64_t b_begin = static_cast<std::int64_t>(blockIdx.z) * batch_chunk;
  const std::int64_t b_end = b_begin + batch_chunk < batch ? b_begin + batch_chunk : batch;
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  for (std::int64_t c_tile = blockIdx.y; c_tile < c_tiles; c_tile += gridDim.y) {
    const std::int64_t c0 = c_tile * Tile;
    float base[P][P] = {};  // text . W[:, D:]^T, independent of b
    tile_product<Tile>(tiles, text, dim, num_classes, c0, static_cast<const T*>(nullptr), weight + dim, 2 * dim,
                       out_dim, o0, dim, base);
    for (std::int64_t b = b_begin; b < b_end; ++b) {
      float acc[P][P] = {};
      tile_product<Tile>(tiles, text, dim, num_classes, c0, global + b * dim, weight, 2 * dim, out_dim, o0, dim, acc);
      for (int i = 0; i < P; ++i) {
        const std::int64_t c = c0 + ty * P + i;
        if (c >= num_classes) break;
        for (int j = 0; j < P; ++j) {
          const std::int64_t o = o0 + tx * P + j;
          if (o >= out_dim) break;
          const float shift = bias != nullptr ? to_float(bias[o]) : 0.0f;
          out[(b * num_classes + c) * out_dim + o] = from_float<T>(acc[i][j] + base[i][j] + shift);
        }
      }
    }
  }
}

// out [B, C, 2D] = concat(t * g_b, t), grid-stride.
template <class T>
__global__ void relation_concat_kernel(const T* __restrict__ text, const T* __restrict__ global, T* __restrict__ out,
                                       std::int64_t num_classes, std::int64_t dim, std::int64_t total) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const std::int64_t j = e % (2 * dim), row = e / (2 * dim);
    const std::int64_t c = row % num_classes, b = row / num_classes;
    const bool product_half = j < dim;
    const std::int64_t d = product_half ? j : j - dim;
    out[e] =
        from_float<T>(relation_concat_value(to_float(text[c * dim + d]), to_float(global[b * dim + d]), product_half));
  }
}

template <class T, int Tile>
CudaStatus launch_linear(const RelationDescriptorParams& p, cudaStream_t stream);

template <class T>
CudaStatus launch(const RelationDescriptorParams& p, cudaStream_t stream) {
  const auto* text = static_cast<const T*>(p.text);
  const auto* global = static_cast<const T*>(p.image_global);
  auto* out = static_cast<T*>(p.out);
  if (p.weight == nullptr) {
    const std::int64_t total = p.batch * p.num_classes * 2 * p.dim;
    const std::int64_t blocks = (total + 255) / 256;
    ZS_LAUNCH(relation_concat_kernel<T>, grid_dim_capped(blocks), 256, stream, text, global, out, p.num_classes, p.dim,
              total);
    return static_cast<CudaStatus>(cudaGetLastError());
  }
  const std::int64_t blocks_64 = ((p.out_dim + 63) / 64) * ((p.num_classes + 63) / 64) * p.batch;
  return prefer_small_tiles(blocks_64) ? launch_linear<T, 32>(p, stream) : launch_linear<T, 64>(p, stream);
}

template <class T, int Tile>
CudaStatus launch_linear(const RelationDescriptorParams& p, cudaStream_t stream) {
  const std::int64_t o_tiles = (p.out_dim + Tile - 1) / Tile;
  const std::int64_t c_tiles = (p.num_classes + Tile - 1) / Tile;
  // Enough blocks to fill a large GPU; the text-only term is recomputed once per chunk of images.
  const std::int64_t pair_blocks = o_tiles * c_tiles;
  const std::int64_t wanted_chunks = pair_blocks >= 256 ? 1 : (256 + pair_blocks - 1) / pair_blocks;
  const std::int64_t chunks = wanted_chunks < p.batch ? wanted_chunks : p.batch;
  const std::int64_t batch_chunk = (p.batch + chunks - 1) / chunks;
  const std::int64_t z_blocks = (p.batch + batch_chunk - 1) / batch_chunk;
  const dim3 grid(static_cast<unsigned int>(o_tiles), grid_dim_capped(c_tiles), static_cast<unsigned int>(z_blocks));
  auto* const kernel = &relation_linear_kernel<T, Tile>;  // (a template-id with a comma cannot be a macro argument)
  ZS_LAUNCH(kernel, grid, kThreads, stream, static_cast<const T*>(p.text), static_cast<const T*>(p.image_global),
            static_cast<const T*>(p.weight), static_cast<const T*>(p.bias), static_cast<T*>(p.out), p.batch,
            p.num_classes, p.dim, p.out_dim, c_tiles, batch_chunk);
  return static_cast<CudaStatus>(cudaGetLastError());
}

}  // namespace

CudaStatus relation_descriptor_cuda(const RelationDescriptorParams& params, Stream stream) {
  auto* cuda_stream = static_cast<cudaStream_t>(stream);
  if (params.dtype == DType::Float16) return launch<__half>(params, cuda_stream);
  return launch<float>(params, cuda_stream);
}

}  // namespace zsseg
