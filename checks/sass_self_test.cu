// Kernels of `python -m checks sass --self-test` (checks/sass.py): each deliberately bad one must be flagged, the
// good ones must not be. Not part of the library.
// A 64x64 shared-memory tile GEMM step, loads of one tile per thread: `per_thread` (a run-time value) or 4 (a
// constant, fully unrolled into registers). And a kernel that indexes a local array at run time (local memory).
#include <cstdint>
template <bool RuntimeTrip>
__global__ void __launch_bounds__(256) tile_gemm(const float* __restrict__ a, const float* __restrict__ b,
                                                 float* __restrict__ c, int k, int per_thread) {
  __shared__ float ta[16][68], tb[16][68];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < k; k0 += 16) {
    if (RuntimeTrip) {
      for (int i = 0; i < per_thread; ++i) {
        const int e = threadIdx.x + i * 256;
        ta[e % 16][e / 16] = a[(blockIdx.y * 64 + e / 16) * k + k0 + e % 16];
        tb[e % 16][e / 16] = b[(blockIdx.x * 64 + e / 16) * k + k0 + e % 16];
      }
    } else {
      float ra[4], rb[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int e = threadIdx.x + i * 256;
        ra[i] = a[(blockIdx.y * 64 + e / 16) * k + k0 + e % 16];
        rb[i] = b[(blockIdx.x * 64 + e / 16) * k + k0 + e % 16];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int e = threadIdx.x + i * 256;
        ta[e % 16][e / 16] = ra[i];
        tb[e % 16][e / 16] = rb[i];
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 16; ++kk) {
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(ta[kk][ty * 4 + i], tb[kk][tx * 4 + j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) c[(blockIdx.y * 64 + ty * 4 + i) * 64 + blockIdx.x * 64 + tx * 4 + j] = acc[i][j];
}
template __global__ void tile_gemm<true>(const float*, const float*, float*, int, int);
template __global__ void tile_gemm<false>(const float*, const float*, float*, int, int);

__global__ void local_array_kernel(const float* __restrict__ in, float* __restrict__ out, int pick, int n) {
  float v[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) v[i] = in[threadIdx.x] * static_cast<float>(i + 1);
  for (int i = 0; i < n; ++i) v[(i * pick) & 63] += in[i];  // run-time indices in a loop: local memory
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < 64; ++i) sum += v[i] * v[(i * 7) & 63];
  out[threadIdx.x] = sum;
}

// similarity's normalisation prologue as c783dbf had it (review c783dbf #10): one thread per row, serial over D, an
// IEEE division per element (a loop of MUFU.RCP next to its loads). Rule 5 must flag it.
__global__ void similarity_kernel_serial_prologue(const float* __restrict__ rows, float* __restrict__ out, long dim) {
  const float* row = rows + threadIdx.x * dim;
  float largest = 0.0f;
  for (long d = 0; d < dim; ++d) largest = fmaxf(largest, fabsf(row[d]));
  float sum = 0.0f;
  for (long d = 0; d < dim; ++d) {
    const float r = row[d] / largest;
    sum = fmaf(r, r, sum);
  }
  out[threadIdx.x] = 1.0f / (largest * sqrtf(sum));
}
