// CUDA relation descriptor. With weight, a block owns a (class tile, output tile) pair and, for each image b of its
// batch chunk, runs one K loop over concat(text * g_b, text) . W^T (2D columns; g_b applied while storing the text
// tile: no concat, no scratch memory). Slabs are prefetched into registers one K step ahead (tile_gemm.cuh).
#include "tile_gemm.cuh"
#include "zsseg/relation_descriptor.h"

namespace zsseg {
namespace {
using namespace dense_cuda;

// The A operand of the folded product, concat(text * g_b, text) [C, 2D], for one slab: k < D takes text[c, k]
// scaled by g_b[k], k >= D takes text[c, k - D] unscaled. Scalar loads (the seam at D breaks vector alignment),
// unrolled: one batch.
template <int Tile, class T>
__device__ __forceinline__ void load_relation_a(Fragment<Tile, T>& f, const T* __restrict__ text,
                                                const T* __restrict__ global_b, std::int64_t num_classes,
                                                std::int64_t c0, std::int64_t dim, std::int64_t k0) {
  constexpr int kPer = Slab<Tile>::kPer;
  const int r = static_cast<int>(threadIdx.x) / Slab<Tile>::kLanesPerRow;
  const int kk = (static_cast<int>(threadIdx.x) % Slab<Tile>::kLanesPerRow) * kPer;
  const std::int64_t c = c0 + r;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const std::int64_t k = k0 + kk + i;
    const bool product = k < dim;
    const std::int64_t d = product ? k : k - dim;
    f.x[i] = c < num_classes && k < 2 * dim ? text[c * dim + d] : from_float<T>(0.0f);
    f.scale[i] = product ? global_b[k] : from_float<T>(1.0f);
  }
}

// Slab [k0, k0 + kDepth) of the A operand: with D a multiple of kDepth (512 in every model here) a slab lies wholly in
// one half, so it is text[:, k0..] scaled by g_b or text[:, k0 - D..], loaded like any tile (vector loads); else
// the per-element form.
template <int Tile, class T>
__device__ __forceinline__ void load_relation_slab(Fragment<Tile, T>& f, const T* __restrict__ text,
                                                   const T* __restrict__ global_b, std::int64_t num_classes,
                                                   std::int64_t c0, std::int64_t dim, std::int64_t k0, bool whole_slabs,
                                                   bool text_vectors) {
  if (!whole_slabs) {
    load_relation_a<Tile>(f, text, global_b, num_classes, c0, dim, k0);
  } else if (k0 < dim) {
    load_fragment<Tile>(f, text, dim, num_classes, c0, dim, k0, global_b, text_vectors);
  } else {
    load_fragment<Tile>(f, text, dim, num_classes, c0, dim, k0 - dim, static_cast<const T*>(nullptr), text_vectors);
  }
}

// grid.x: output tiles, grid.y: class tiles (strided), grid.z: chunks of `batch_chunk` images. Per image one K loop
// over the 2D columns of concat(text * g_b, text) . W^T (the text-only half no longer a second loop: one serial
// chain, prefetched throughout), k ascending with one fmaf per k for both tile sizes.
template <class T, int Tile>
__global__ void __launch_bounds__(kThreads, 1)
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
  const std::int64_t depth = 2 * dim;
  const bool weight_vectors = vector_loads_ok<Tile>(weight, depth);
  const bool text_vectors = vector_loads_ok<Tile>(text, dim), whole_slabs = dim % kDepth == 0;
  for (std::int64_t c_tile = blockIdx.y; c_tile < c_tiles; c_tile += gridDim.y) {
    const std::int64_t c0 = c_tile * Tile;
    for (std::int64_t b = b_begin; b < b_end; ++b) {
      const T* global_b = global + b * dim;
      float acc[P][P] = {};
      prefetched_k_loop<Tile, T>(
          tiles, acc, depth, ty, tx,
          [&](Fragment<Tile, T>& fa, Fragment<Tile, T>& fb, std::int64_t k0) {
            load_relation_slab<Tile>(fa, text, global_b, num_classes, c0, dim, k0, whole_slabs, text_vectors);
            load_fragment<Tile>(fb, weight, depth, out_dim, o0, depth, k0, static_cast<const T*>(nullptr),
                                weight_vectors);
          },
          [&](const Fragment<Tile, T>& fa, const Fragment<Tile, T>& fb) {
            store_fragment<Tile>(tiles.a, fa, true);
            store_fragment<Tile>(tiles.b, fb, false);
          });
      for_each_result(acc, c0, num_classes, o0, out_dim, ty, tx, [&](std::int64_t c, std::int64_t o, float value) {
        const float shift = bias != nullptr ? to_float(bias[o]) : 0.0f;
        out[(b * num_classes + c) * out_dim + o] = from_float<T>(value + shift);
      });
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

ZS_DTYPE_ENTRY_POINT(relation_descriptor_cuda, RelationDescriptorParams)

}  // namespace zsseg
