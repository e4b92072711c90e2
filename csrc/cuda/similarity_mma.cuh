// similarity on the tensor cores (sm_80+): out[b, c, n] = scale * <t_c, p_n>, optionally of L2-normalised rows.
// Included by similarity.cu, whose launcher picks it on devices with mma.sync (the CUDA-core kernel otherwise).
//
// A block computes a 32 (classes) x 64 (patches) tile of one batch item with 8 warps: warp w takes the patch half
// w % 2 (all 32 classes x 32 patches: 2 m16 x 4 n8 MMA tiles) and the K group w / 2: the chunks q, q + 4, q + 8, ...
// of the dot products' dimension (intra-block split-K, so each row's elements are read by one warp of the block,
// straight from global memory into the fragment registers: a lane loads one 16-byte vector per row and chunk, its
// four 32-bit words holding the fragments of two MMA k-steps; A and B are read with the same permutation of k
// within a chunk, which a dot product does not see). Two chunks are in flight per warp (64 registers: 32 KB a
// block) while one is multiplied. The four K groups' partial tiles are summed in shared memory in a fixed order.
//   fp16: one m16n8k16 HMMA per tile and k-step (fp16 products are exact, fp32 accumulation).
//   fp32: three m16n8k8 tf32 HMMA per tile and k-step ("3xTF32"): x = big + small with big = x's 10-bit-mantissa
//         truncation and small = the remainder's, exactly representable; a.b = big.big + big.small + small.big up
//         to small.small and small's truncation, below 3 * 2^-20 |a b|. big.big goes to its own accumulator, so the
//         device's truncating fp32 accumulation loses at most one ulp per k-step of it (16 k-steps a warp at D=512).
// normalize: each row's sum of squares and largest magnitude are gathered from the same fragments (one FFMA and one
// FMNMX per element), and the dot products of unscaled rows are scaled at the end: out = dot * (1 / |t|) (1 / |p|).
// A row whose largest magnitude lies outside [2^-40, 2^40] (fp32 only: products could leave fp32's range unscaled)
// has its norm recomputed in double from global memory and its outputs computed by the exact CUDA-core dot product
// of the scaled rows (the former kernel's arithmetic), as is any fp32 output that came out NaN (an infinite input
// makes 3xTF32's remainder NaN where the plain product is infinite): both rare, both exact.
#pragma once
#include "mma.cuh"
#include "tile_gemm.cuh"

namespace zsseg::dense_cuda {

constexpr int kMmaThreads = 256;
constexpr int kMmaRows = 32;        // classes per block tile
constexpr int kMmaCols = 64;        // patches per block tile
constexpr int kKGroups = 4;         // warps along K
constexpr int kPartialStride = 72;  // a partial tile's row stride in floats (64 + 8: spreads the fragments' banks)
constexpr int kStatRows = kMmaRows + kMmaCols;  // the block's rows: classes 0..31, then patches 0..63

// One lane's 16 bytes of one row in one chunk: 4 fp32 or 8 fp16 (pairs), as 32-bit words.
struct Vec {
  std::uint32_t w[4];
};

template <class T>
struct MmaChunk {
  static constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));  // elements in a lane's vector
  static constexpr int kDepth = 4 * kPerVec;                        // a chunk's k: 16 (fp32) or 32 (fp16)
};

__device__ __forceinline__ std::uint32_t element_bits(float v) {
  return __float_as_uint(v);
}
__device__ __forceinline__ std::uint32_t element_bits(__half v) {
  return __half_as_ushort(v);
}

// The vector of `row` (elements [k, k + kPerVec)), zero beyond `depth`. kVector: one 16-byte load (the caller checked
// that rows start 16-byte aligned and depth is a multiple of kPerVec, so a vector is all in or all out).
template <class T, bool kVector>
__device__ __forceinline__ Vec load_vec(const T* __restrict__ row, int k, int depth) {
  constexpr int kPer = MmaChunk<T>::kPerVec;
  Vec v{{0u, 0u, 0u, 0u}};
  if constexpr (kVector) {
    if (k < depth) {
      const float4 x = __ldg(reinterpret_cast<const float4*>(row + k));
      v.w[0] = __float_as_uint(x.x), v.w[1] = __float_as_uint(x.y), v.w[2] = __float_as_uint(x.z),
      v.w[3] = __float_as_uint(x.w);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const std::uint32_t bits = k + i < depth ? element_bits(row[k + i]) : 0u;
      if constexpr (kPer == 4) {
        v.w[i] = bits;
      } else {
        v.w[i / 2] |= bits << (16 * (i % 2));  // the lower half: the lower k
      }
    }
  }
  return v;
}

// The 4 A rows (classes 16 i + g and 16 i + 8 + g) and 4 B rows (patches of the warp's half: 8 j + g) of a lane.
struct Chunk {
  Vec a[2][2];
  Vec b[4];
};

template <class T, bool kVector>
__device__ __forceinline__ void load_chunk(Chunk& c, const T* __restrict__ text, const T* __restrict__ patches,
                                           const int (&a_off)[2][2], const int (&b_off)[4], int chunk, int t,
                                           int depth) {
  const int k = chunk * MmaChunk<T>::kDepth + t * MmaChunk<T>::kPerVec;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int h = 0; h < 2; ++h) c.a[i][h] = load_vec<T, kVector>(text + a_off[i][h], k, depth);
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) c.b[j] = load_vec<T, kVector>(patches + b_off[j], k, depth);
}

// Sums of squares and largest magnitudes of the lane's rows (normalize): 4 A rows, 4 B rows.
struct RowStats {
  float ssq[8];
  float max[8];
};

__device__ __forceinline__ void gather(RowStats& s, int r, float x) {
  s.ssq[r] = fmaf(x, x, s.ssq[r]);
  s.max[r] = fmaxf(s.max[r], fabsf(x));
}

template <class T>
__device__ __forceinline__ void gather_vec(RowStats& s, int r, const Vec& v) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (sizeof(T) == 4) {
      gather(s, r, __uint_as_float(v.w[i]));
    } else {
      gather(s, r, __half2float(__ushort_as_half(static_cast<unsigned short>(v.w[i] & 0xffffu))));
      gather(s, r, __half2float(__ushort_as_half(static_cast<unsigned short>(v.w[i] >> 16))));
    }
  }
}

constexpr std::uint32_t kTf32Mask = 0xffffe000u;

// Row `i` of `rows`, or the last one past the end (it is read, its outputs are not stored).
__device__ __forceinline__ int clamped(int i, int rows) {
  return i < rows ? i : rows - 1;
}

// x = big + small, both tf32 (13 low bits zero): big truncates x, small truncates the exact remainder x - big.
__device__ __forceinline__ void split_tf32(std::uint32_t x, std::uint32_t& big, std::uint32_t& small) {
  big = x & kTf32Mask;
  small = __float_as_uint(__uint_as_float(x) - __uint_as_float(big)) & kTf32Mask;
}

// The products of one chunk (two k-steps: words 2s and 2s + 1 of each vector) into the warp's 8 tiles.
template <class T>
__device__ __forceinline__ void multiply_chunk(const Chunk& c, float (&acc)[2][4][4], float (&acc_big)[2][4][4]) {
#pragma unroll
  for (int s = 0; s < 2; ++s) {
    std::uint32_t a[2][4], b[4][2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      a[i][0] = c.a[i][0].w[2 * s], a[i][1] = c.a[i][1].w[2 * s];
      a[i][2] = c.a[i][0].w[2 * s + 1], a[i][3] = c.a[i][1].w[2 * s + 1];
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) b[j][0] = c.b[j].w[2 * s], b[j][1] = c.b[j].w[2 * s + 1];
    if constexpr (sizeof(T) == 2) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) zs_mma_m16n8k16_f32_f16(acc[i][j], a[i], b[j], acc[i][j]);
      }
    } else {
      std::uint32_t a_big[2][4], a_small[2][4], b_big[4][2], b_small[4][2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int r = 0; r < 4; ++r) split_tf32(a[i][r], a_big[i][r], a_small[i][r]);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int r = 0; r < 2; ++r) split_tf32(b[j][r], b_big[j][r], b_small[j][r]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          zs_mma_m16n8k8_f32_tf32(acc[i][j], a_small[i], b_big[j], acc[i][j]);
          zs_mma_m16n8k8_f32_tf32(acc[i][j], a_big[i], b_small[j], acc[i][j]);
          zs_mma_m16n8k8_f32_tf32(acc_big[i][j], a_big[i], b_big[j], acc_big[i][j]);
        }
      }
    }
  }
}

template <class T>
__device__ __forceinline__ void gather_chunk(RowStats& s, const Chunk& c, bool a_rows) {
  if (a_rows) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int h = 0; h < 2; ++h) gather_vec<T>(s, 2 * i + h, c.a[i][h]);
    }
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) gather_vec<T>(s, 4 + j, c.b[j]);
}

// Shared memory of a block: the K groups' partial tiles, then the rows' statistics and scales.
struct MmaShared {
  float partial[kKGroups][kMmaRows][kPartialStride];
  float ssq[kKGroups][kStatRows];
  float max[kKGroups][kStatRows];
  float inverse[kStatRows];
  int exact[kStatRows];  // the row's outputs take the exact path (normalize: a magnitude outside the tame range)
};

// The largest magnitudes whose unscaled products and sums of squares stay inside fp32's normal range (D < 2^31).
constexpr float kTameLow = 9.094947e-13f;   // 2^-40
constexpr float kTameHigh = 1.0995116e12f;  // 2^40

// 1 / max(||row||, eps) in double from global memory (the CPU's way): for rows outside the tame range.
template <class T>
__device__ float exact_inverse_norm(const T* __restrict__ row, int depth) {
  double sum = 0.0;
  for (int k = 0; k < depth; ++k) {
    const double v = static_cast<double>(to_float(row[k]));
    sum = fma(v, v, sum);
  }
  if (sum != sum) return __int_as_float(0x7fc00000);
  return static_cast<float>(inverse_l2_norm(sum));
}

// The former CUDA-core arithmetic for one output: k ascending, fmaf of the scaled elements.
template <class T>
__device__ float exact_dot(const T* __restrict__ t_row, const T* __restrict__ p_row, int depth, bool normalize,
                           float t_inverse, float p_inverse) {
  float acc = 0.f;
  for (int k = 0; k < depth; ++k) {
    float a = to_float(t_row[k]), b = to_float(p_row[k]);
    if (normalize) a *= t_inverse, b *= p_inverse;
    acc = fmaf(a, b, acc);
  }
  return acc;
}

// The warp's statistics of its rows into shared memory: the 4 lanes of a row (t = 0..3) combine first.
__device__ __forceinline__ void store_stats(MmaShared& sh, RowStats& s, int q, int half, int g, int t) {
#pragma unroll
  for (int r = 0; r < 8; ++r) {
#pragma unroll
    for (int offset = 1; offset < 4; offset *= 2) {
      s.ssq[r] += __shfl_xor_sync(0xffffffffu, s.ssq[r], offset);
      s.max[r] = fmaxf(s.max[r], __shfl_xor_sync(0xffffffffu, s.max[r], offset));
    }
  }
  if (t != 0) return;
  if (half == 0) {  // the class rows: both halves see them; one reports
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int row = 16 * (r / 2) + 8 * (r % 2) + g;
      sh.ssq[q][row] = s.ssq[r], sh.max[q][row] = s.max[r];
    }
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int row = kMmaRows + 32 * half + 8 * j + g;
    sh.ssq[q][row] = s.ssq[4 + j], sh.max[q][row] = s.max[4 + j];
  }
}

// The finished row statistics of the block's rows (normalize): thread r < kStatRows sums row r's four K groups in a
// fixed order and sets its inverse norm, exactly (double, from global memory) where it is not tame.
template <class T>
__device__ __forceinline__ void finish_row_stats(MmaShared& sh, const T* __restrict__ text_rows,
                                                 const T* __restrict__ patch_rows, int c0, int n0, int num_classes,
                                                 int num_patches, int dim) {
  const int r = static_cast<int>(threadIdx.x);
  if (r >= kStatRows) return;
  float ssq = 0.f, largest = 0.f;
#pragma unroll
  for (int q = 0; q < kKGroups; ++q) ssq += sh.ssq[q][r], largest = fmaxf(largest, sh.max[q][r]);
  // fp16 rows are always tame (|x| <= 65504, products of subnormal halves are normal floats); an infinite or NaN
  // entry gives 0 or NaN as the CPU's 1 / inf and NaN do. fp32: NaN fails both comparisons, infinity the upper one.
  const bool tame = sizeof(T) == 2 || largest == 0.f || (largest >= kTameLow && largest <= kTameHigh);
  if (tame) {
    sh.inverse[r] = ssq != ssq ? __int_as_float(0x7fc00000) : inverse_l2_norm(ssq);
    sh.exact[r] = 0;
  } else {
    const T* row = r < kMmaRows ? text_rows + static_cast<std::int64_t>(clamped(c0 + r, num_classes)) * dim
                                : patch_rows + static_cast<std::int64_t>(clamped(n0 + r - kMmaRows, num_patches)) * dim;
    sh.inverse[r] = exact_inverse_norm(row, dim);
    sh.exact[r] = 1;
  }
}

// grid.x = batch * n_tiles (64 patches each), grid.y strides over the class tiles (32 classes each).
template <class T, bool kVector>
__global__ void __launch_bounds__(kMmaThreads, 1)
    similarity_mma_kernel(const T* __restrict__ patches, const T* __restrict__ text, T* __restrict__ out,
                          int num_patches, int num_classes, int dim, bool text_batched, bool normalize, float scale,
                          int n_tiles, int c_tiles) {
#if ZS_HAS_MMA_SYNC
  __shared__ MmaShared sh;
  const int b = static_cast<int>(blockIdx.x) / n_tiles;
  const int n0 = (static_cast<int>(blockIdx.x) % n_tiles) * kMmaCols;
  const T* patch_rows = patches + static_cast<std::int64_t>(b) * num_patches * dim;                   // [N, D]
  const T* text_rows = text + (text_batched ? static_cast<std::int64_t>(b) * num_classes * dim : 0);  // [C, D]
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane / 4, t = lane % 4, half = warp % 2, q = warp / 2;
  const int chunks = (dim + MmaChunk<T>::kDepth - 1) / MmaChunk<T>::kDepth;
  int b_off[4];  // rows past the end read the last row: their outputs are never stored
#pragma unroll
  for (int j = 0; j < 4; ++j) b_off[j] = clamped(n0 + 32 * half + 8 * j + g, num_patches) * dim;
  for (int c_tile = static_cast<int>(blockIdx.y); c_tile < c_tiles; c_tile += static_cast<int>(gridDim.y)) {
    const int c0 = c_tile * kMmaRows;
    int a_off[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int h = 0; h < 2; ++h) a_off[i][h] = clamped(c0 + 16 * i + 8 * h + g, num_classes) * dim;
    }
    float acc[2][4][4] = {}, acc_big[2][4][4] = {};
    RowStats stats = {};
    Chunk now, next;  // two chunks in flight: q + 8 m and q + 8 m + 4
    load_chunk<T, kVector>(now, text_rows, patch_rows, a_off, b_off, q, t, dim);
    load_chunk<T, kVector>(next, text_rows, patch_rows, a_off, b_off, q + kKGroups, t, dim);
    for (int chunk = q; chunk < chunks; chunk += 2 * kKGroups) {
      multiply_chunk<T>(now, acc, acc_big);
      if (normalize) gather_chunk<T>(stats, now, half == 0);
      load_chunk<T, kVector>(now, text_rows, patch_rows, a_off, b_off, chunk + 2 * kKGroups, t, dim);
      if (chunk + kKGroups < chunks) {
        multiply_chunk<T>(next, acc, acc_big);
        if (normalize) gather_chunk<T>(stats, next, half == 0);
      }
      load_chunk<T, kVector>(next, text_rows, patch_rows, a_off, b_off, chunk + 3 * kKGroups, t, dim);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = 32 * half + 8 * j + 2 * t;
#pragma unroll
        for (int e = 0; e < 4; ++e)
          sh.partial[q][16 * i + g + (e >= 2 ? 8 : 0)][col + e % 2] = acc_big[i][j][e] + acc[i][j][e];
      }
    }
    if (normalize) store_stats(sh, stats, q, half, g, t);
    __syncthreads();  // the partial tiles and statistics are complete
    if (normalize) finish_row_stats<T>(sh, text_rows, patch_rows, c0, n0, num_classes, num_patches, dim);
    __syncthreads();  // the scales are set
    constexpr int kRowsPerPass = kMmaThreads / kMmaCols;
    const int col = static_cast<int>(threadIdx.x) % kMmaCols, n = n0 + col;
    for (int r = static_cast<int>(threadIdx.x) / kMmaCols; r < kMmaRows; r += kRowsPerPass) {
      const int c = c0 + r;
      if (c >= num_classes || n >= num_patches) continue;
      float value = sh.partial[0][r][col];
#pragma unroll
      for (int k = 1; k < kKGroups; ++k) value += sh.partial[k][r][col];
      const float t_inverse = normalize ? sh.inverse[r] : 1.f, p_inverse = normalize ? sh.inverse[kMmaRows + col] : 1.f;
      bool exact = normalize && (sh.exact[r] || sh.exact[kMmaRows + col]);
      if (normalize && !exact) value = value * t_inverse * p_inverse;
      if (sizeof(T) == 4 && value != value) exact = true;  // an infinite input: 3xTF32's remainder is NaN
      if (exact) {
        value = exact_dot(text_rows + static_cast<std::int64_t>(c) * dim,
                          patch_rows + static_cast<std::int64_t>(n) * dim, dim, normalize, t_inverse, p_inverse);
      }
      out[(static_cast<std::int64_t>(b) * num_classes + c) * num_patches + n] = from_float<T>(value * scale);
    }
    __syncthreads();  // shared memory is rewritten by the next class tile
  }
#endif
}

// The tensor-core kernel for these parameters (kVector where every row starts 16-byte aligned).
template <class T>
CudaStatus launch_mma(const SimilarityParams& p, cudaStream_t stream) {
  const int n_tiles = static_cast<int>((p.num_patches + kMmaCols - 1) / kMmaCols);
  const std::int64_t c_tiles = (p.num_classes + kMmaRows - 1) / kMmaRows;
  const dim3 grid(static_cast<unsigned int>(p.batch * n_tiles), grid_dim_capped(c_tiles));
  constexpr int kPer = MmaChunk<T>::kPerVec;
  const bool vector = p.dim % kPer == 0 && reinterpret_cast<std::uintptr_t>(p.patches) % 16 == 0 &&
                      reinterpret_cast<std::uintptr_t>(p.text) % 16 == 0;
  auto* const similarity_mma_vector = &similarity_mma_kernel<T, true>;   // (a template-id with a comma cannot
  auto* const similarity_mma_scalar = &similarity_mma_kernel<T, false>;  //  be a macro argument)
  const int rows = static_cast<int>(p.num_patches), classes = static_cast<int>(p.num_classes);
  const int dim = static_cast<int>(p.dim), tiles = static_cast<int>(c_tiles);
  const T* patches = static_cast<const T*>(p.patches);
  const T* text = static_cast<const T*>(p.text);
  T* out = static_cast<T*>(p.out);
  if (vector) {
    ZS_LAUNCH(similarity_mma_vector, grid, kMmaThreads, stream, patches, text, out, rows, classes, dim, p.text_batched,
              p.normalize, p.scale, n_tiles, tiles);
  } else {
    ZS_LAUNCH(similarity_mma_scalar, grid, kMmaThreads, stream, patches, text, out, rows, classes, dim, p.text_batched,
              p.normalize, p.scale, n_tiles, tiles);
  }
  return static_cast<CudaStatus>(cudaGetLastError());
}

// mma.sync m16n8k16 / m16n8k8 tf32: compute capability 8.0 and above (the current device).
inline bool tensor_cores_available() {
  int device = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major >= 8;
}

}  // namespace zsseg::dense_cuda
