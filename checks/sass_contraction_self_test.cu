// Kernels of the contraction rule's self-test (checks/_sass_contraction.py, `python -m checks sass --self-test`):
// `contracted` writes a * b + c, which nvcc's default -fmad=true fuses into one FFMA: the rule must report it. The
// controls must not be reported: `rounded` (the products and sums rounded one by one, as csrc/cuda/temporal.cu's
// shared functions do) and `divided` (an IEEE division and square root: nvcc's correctly rounded sequences hold FFMA
// whatever -fmad says, so they are in the -fmad=false build too). Not part of the library.
__global__ void contracted(const float* __restrict__ a, const float* __restrict__ b, const float* __restrict__ c,
                           float* __restrict__ out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i] * b[i] + c[i];
}

__global__ void contracted_double(const double* __restrict__ a, const double* __restrict__ b, double* __restrict__ out,
                                  int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i] * b[i] + 1.0;
}

__global__ void rounded(const float* __restrict__ a, const float* __restrict__ b, const float* __restrict__ c,
                        float* __restrict__ out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __fadd_rn(__fmul_rn(a[i], b[i]), c[i]);
}

__global__ void divided(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = sqrtf(a[i] / b[i]);
}
