// The tensor-core paths, run on the host (csrc/emu): the emulated mma.sync against matrix products (its fragment
// layouts: a kernel that puts a value in another register gets another result), the tensor-core similarity kernel
// against the CPU op and the CUDA-core kernel (fp32 3xTF32 and fp16; odd sizes, tails, unaligned rows, batches, capped
// grids, extreme and non-finite values), and the reworked upsample's column groups (aligned or not, tails, scales).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "emu/kernels_emulated.h"
#include "emu_test_utils.h"

// after the emulation's headers (ZS_CUDA_EMULATION selects the emulated instructions)
#include "cuda/launch.cuh"
#include "cuda/mma.cuh"

namespace {

using zsseg::DType;

std::uint32_t half_pair(float low, float high) {
  return static_cast<std::uint32_t>(__float2half_rn(low).bits) | static_cast<std::uint32_t>(__float2half_rn(high).bits)
                                                                     << 16;
}
std::uint32_t bits_of(float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return bits;
}

// One warp: A [16][K] and B [K][8] row-major, C [16][8]; each lane builds its fragments as mma.cuh documents them
// (`swap` exchanges the lane's a[1] and a[2]: a layout mistake) and writes its D elements back to d [16][8].
void mma_kernel(const float* a, const float* b, const float* c, float* d, int k_depth, int swap) {
  const int lane = static_cast<int>(threadIdx.x), g = lane / 4, t = lane % 4;
  const auto A = [&](int r, int k) { return a[r * k_depth + k]; };
  const auto B = [&](int k, int n) { return b[k * 8 + n]; };
  std::uint32_t fa[4], fb[2];
  if (k_depth == 16) {
    fa[0] = half_pair(A(g, 2 * t), A(g, 2 * t + 1)), fa[1] = half_pair(A(g + 8, 2 * t), A(g + 8, 2 * t + 1));
    fa[2] = half_pair(A(g, 2 * t + 8), A(g, 2 * t + 9)), fa[3] = half_pair(A(g + 8, 2 * t + 8), A(g + 8, 2 * t + 9));
    fb[0] = half_pair(B(2 * t, g), B(2 * t + 1, g)), fb[1] = half_pair(B(2 * t + 8, g), B(2 * t + 9, g));
  } else {
    fa[0] = bits_of(A(g, t)), fa[1] = bits_of(A(g + 8, t)), fa[2] = bits_of(A(g, t + 4)),
    fa[3] = bits_of(A(g + 8, t + 4));
    fb[0] = bits_of(B(t, g)), fb[1] = bits_of(B(t + 4, g));
  }
  if (swap) std::swap(fa[1], fa[2]);
  const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
  float fc[4], fd[4];
  for (int i = 0; i < 4; ++i) fc[i] = c[rows[i] * 8 + cols[i]];
  if (k_depth == 16) {
    zs_mma_m16n8k16_f32_f16(fd, fa, fb, fc);
  } else {
    zs_mma_m16n8k8_f32_tf32(fd, fa, fb, fc);
  }
  for (int i = 0; i < 4; ++i) d[rows[i] * 8 + cols[i]] = fd[i];
}

std::vector<float> run_mma(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c,
                           int k_depth, bool swap) {
  std::vector<float> d(16 * 8, -1.f);
  ZS_LAUNCH(mma_kernel, dim3(1), dim3(32), nullptr, a.data(), b.data(), c.data(), d.data(), k_depth, swap ? 1 : 0);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return d;
}

// Values exact in fp16 and tf32 (multiples of 1/8 in [-2, 2]) whose products and sums are exact in fp32.
std::vector<float> eighths(std::size_t count, std::mt19937& rng) {
  std::uniform_int_distribution<int> pick(-16, 16);
  std::vector<float> v(count);
  for (float& x : v) x = static_cast<float>(pick(rng)) / 8.f;
  return v;
}

TEST(MmaEmulated, FragmentLayoutsGiveTheMatrixProduct) {
  std::mt19937 rng(72);
  for (int k_depth : {16, 8}) {  // m16n8k16 f16, m16n8k8 tf32
    const std::vector<float> a = eighths(16 * k_depth, rng), b = eighths(k_depth * 8, rng), c = eighths(16 * 8, rng);
    std::vector<float> want(16 * 8);
    for (int r = 0; r < 16; ++r) {
      for (int n = 0; n < 8; ++n) {
        float sum = c[r * 8 + n];
        for (int k = 0; k < k_depth; ++k) sum += a[r * k_depth + k] * b[k * 8 + n];
        want[r * 8 + n] = sum;
      }
    }
    EXPECT_EQ(run_mma(a, b, c, k_depth, false), want) << "k " << k_depth;
    // control: a fragment in the wrong register is a different product, as on a GPU
    EXPECT_NE(run_mma(a, b, c, k_depth, true), want) << "k " << k_depth;
  }
}

TEST(MmaEmulated, NonFiniteOperandsPropagate) {
  std::vector<float> a(16 * 8, 0.f), b(8 * 8, 1.f), c(16 * 8, 0.f);
  a[0] = INFINITY;                                 // row 0: inf * 1 = inf
  a[8] = std::numeric_limits<float>::quiet_NaN();  // row 1: NaN
  b[1] = 0.f;                                      // B(0, 1) = 0: row 0 column 1 is inf * 0 = NaN
  const std::vector<float> d = run_mma(a, b, c, 8, false);
  EXPECT_TRUE(std::isinf(d[0]) && d[0] > 0);
  EXPECT_TRUE(std::isnan(d[1]));
  EXPECT_TRUE(std::isnan(d[8]));
  EXPECT_EQ(d[16], 0.f);
}

// ---- similarity on the tensor cores --------------------------------------------------------------------------
struct Case {
  int64_t batch, patches, classes, dim;
  bool text_batched, normalize;
  int offset;  // elements before each array (1: rows not 16-byte aligned, the kernel's scalar path)
};

std::vector<float> run(zsseg::SimilarityParams p, const std::vector<float>& patches, const std::vector<float>& text,
                       bool half, bool tensor_cores, int offset) {
  const size_t count = static_cast<size_t>(p.batch * p.num_classes * p.num_patches);
  p.tensor_cores = tensor_cores;
  std::vector<float> pf(offset + patches.size()), tf(offset + text.size()), out(count);
  std::copy(patches.begin(), patches.end(), pf.begin() + offset);
  std::copy(text.begin(), text.end(), tf.begin() + offset);
  std::vector<__half> ph(pf.size()), th(tf.size()), oh(count);
  for (size_t i = 0; i < pf.size(); ++i) ph[i] = __float2half_rn(pf[i]);
  for (size_t i = 0; i < tf.size(); ++i) th[i] = __float2half_rn(tf[i]);
  p.dtype = half ? DType::Float16 : DType::Float32;
  p.patches = half ? static_cast<const void*>(ph.data() + offset) : pf.data() + offset;
  p.text = half ? static_cast<const void*>(th.data() + offset) : tf.data() + offset;
  p.out = half ? static_cast<void*>(oh.data()) : out.data();
  EXPECT_EQ(zsseg::similarity_cuda_emulated(p, nullptr), 0);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return half ? emu_test::to_floats(oh) : out;
}

zsseg::SimilarityParams params_of(const Case& c) {
  zsseg::SimilarityParams p;
  p.batch = c.batch, p.num_patches = c.patches, p.num_classes = c.classes, p.dim = c.dim;
  p.text_batched = c.text_batched, p.normalize = c.normalize, p.scale = 2.5f;
  return p;
}

std::vector<float> cpu(zsseg::SimilarityParams p, const std::vector<float>& patches, const std::vector<float>& text) {
  std::vector<float> out(static_cast<size_t>(p.batch * p.num_classes * p.num_patches));
  p.patches = patches.data(), p.text = text.data(), p.out = out.data();
  zsseg::similarity_cpu(p);
  return out;
}

// NaN where the reference is NaN, the same infinity, else within tolerance * (1 + |want|).
void expect_matches(const std::vector<float>& got, const std::vector<float>& want, double tolerance,
                    const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i]) || std::isinf(want[i])) {
      ASSERT_EQ(std::isnan(got[i]), std::isnan(want[i])) << what << " element " << i << " got " << got[i];
      if (std::isinf(want[i])) ASSERT_EQ(got[i], want[i]) << what << " element " << i;
      continue;
    }
    ASSERT_NEAR(got[i], want[i], tolerance * (1.0 + std::fabs(want[i]))) << what << " element " << i;
  }
}

TEST(SimilarityTensorCoresEmulated, MatchesCpuOnEdgesTailsAndUnalignedRows) {
  const std::vector<Case> cases{
      {1, 1, 1, 1, false, false, 0},      // the smallest: one element, scalar path
      {1, 1, 1, 1, false, true, 0},       //   normalised
      {2, 67, 33, 96, false, true, 0},    // patch and class tails, 6 chunks of 16 (fp32) over 4 K groups
      {3, 65, 40, 40, true, false, 0},    // batched text, 2 patch tiles, D a multiple of 8 (fp16 vectors)
      {1, 70, 37, 100, false, false, 1},  // unaligned rows: the scalar loads
      {2, 20, 5, 33, true, true, 0},      // D = 33: the scalar loads, zero-filled k tail
      {1, 130, 70, 16, false, true, 0},   // 3 class tiles (strided with cap 2), one chunk: one K group at work
  };
  std::mt19937 rng(73);
  for (int64_t cap : emu_test::grid_caps()) {
    zs_emu::GridCapScope scope(cap);
    for (const Case& c : cases) {
      for (bool half : {false, true}) {
        const zsseg::SimilarityParams p = params_of(c);
        std::vector<float> patches =
            emu_test::random_floats(static_cast<size_t>(c.batch * c.patches * c.dim), rng, -1.f, 1.f);
        std::vector<float> text = emu_test::random_floats(
            static_cast<size_t>((c.text_batched ? c.batch : 1) * c.classes * c.dim), rng, -1.f, 1.f);
        if (half) {  // the CPU sees the fp16-rounded inputs
          emu_test::round_to_half(patches);
          emu_test::round_to_half(text);
        }
        const std::string what = std::string(half ? "fp16" : "fp32") + " cap " + std::to_string(cap) + " N " +
                                 std::to_string(c.patches) + " C " + std::to_string(c.classes) + " D " +
                                 std::to_string(c.dim);
        const std::vector<float> want = cpu(p, patches, text);
        expect_matches(run(p, patches, text, half, true, c.offset), want, half ? 2e-3 : 1e-5, what + " tensor cores");
        expect_matches(run(p, patches, text, half, false, c.offset), want, half ? 2e-3 : 1e-5, what + " CUDA cores");
      }
    }
  }
}

// fp32 rows beyond [2^-40, 2^40] take the exact path (norm in double, CUDA-core dot products), beside tame rows;
// infinite and NaN inputs give what the CPU gives (3xTF32's NaN remainder is recomputed exactly).
TEST(SimilarityTensorCoresEmulated, ExtremeAndNonFiniteRows) {
  std::mt19937 rng(74);
  for (bool normalize : {true, false}) {
    const Case c{1, 9, 6, 24, false, normalize, 0};
    const zsseg::SimilarityParams p = params_of(c);
    std::vector<float> patches = emu_test::random_floats(9 * 24, rng, -1.f, 1.f);
    std::vector<float> text = emu_test::random_floats(6 * 24, rng, -1.f, 1.f);
    if (normalize) {
      const float scales[] = {1e25f, 2e19f, 1e-25f, 1e-40f};
      for (int r = 0; r < 4; ++r) {  // patch rows 0..3 extreme, 4..8 tame; text row 0 huge, row 1 all zero
        for (int k = 0; k < 24; ++k) patches[r * 24 + k] *= scales[r];
      }
      for (int k = 0; k < 24; ++k) text[k] *= 3e30f, text[24 + k] = 0.f;
    }
    patches[5 * 24 + 3] = INFINITY;                                 // a row with an infinity
    patches[6 * 24 + 7] = std::numeric_limits<float>::quiet_NaN();  // a row with a NaN
    text[3 * 24 + 2] = -INFINITY;
    const std::vector<float> want = cpu(p, patches, text);
    const std::string what = normalize ? "normalised" : "scaled";
    expect_matches(run(p, patches, text, false, true, 0), want, 1e-5, what + " tensor cores");
    expect_matches(run(p, patches, text, false, false, 0), want, 1e-5, what + " CUDA cores");
  }
}

// The K groups' partial tiles and the row statistics go through shared memory between two barriers: both serial
// schedules (one thread at a time between barriers, in thread order or in reverse) give the concurrent one's bits.
TEST(SimilarityTensorCoresEmulated, SameBitsInEverySchedule) {
  std::mt19937 rng(76);
  for (bool half : {false, true}) {
    const Case c{2, 70, 40, 48, true, true, 0};
    const zsseg::SimilarityParams p = params_of(c);
    std::vector<float> patches = emu_test::random_floats(2 * 70 * 48, rng, -1.f, 1.f);
    std::vector<float> text = emu_test::random_floats(2 * 40 * 48, rng, -1.f, 1.f);
    const std::vector<float> concurrent = run(p, patches, text, half, true, 0);
    for (zs_emu::BlockSchedule order : {zs_emu::BlockSchedule::kSerialForward, zs_emu::BlockSchedule::kSerialReverse}) {
      zs_emu::BlockScheduleScope scope(order);
      const std::vector<float> serial = run(p, patches, text, half, true, 0);
      ASSERT_EQ(std::memcmp(serial.data(), concurrent.data(), serial.size() * sizeof(float)), 0)
          << (half ? "fp16" : "fp32") << " schedule " << static_cast<int>(order);
    }
  }
}

// ---- upsample: 4 columns a thread where the output rows are 16-byte aligned, 1 otherwise ---------------------
TEST(UpsampleColumnsEmulated, PackedAndSingleColumnsMatchCpu) {
  struct Shape {
    int64_t batch, channels, in_h, in_w, out_h, out_w;
    int offset;  // output elements before the result: 1 makes the packed rows unaligned (one column a thread)
  };
  const std::vector<Shape> shapes{
      {1, 3, 4, 4, 64, 64, 0},   // 16x up: a source row pair per 16 output rows (h0/h1 shifted, kept)
      {1, 3, 4, 4, 64, 64, 1},   //   the same into an unaligned output
      {2, 2, 9, 7, 33, 260, 0},  // rows not a multiple of 16, 65 column groups: two blocks of threads
      {1, 4, 30, 26, 7, 12, 0},  // down: the source rows change every output row
      {1, 1, 3, 5, 200, 4, 0},   // one column group, many row chunks
  };
  std::mt19937 rng(75);
  for (int64_t cap : emu_test::grid_caps()) {
    zs_emu::GridCapScope scope(cap);
    for (const Shape& s : shapes) {
      for (int variant = 0; variant < 3; ++variant) {  // plain, sigmoid + bias, fp16
        const bool calibrate = variant == 1, half = variant == 2;
        std::vector<float> input =
            emu_test::random_floats(static_cast<size_t>(s.batch * s.channels * s.in_h * s.in_w), rng, -5.f, 5.f);
        std::vector<__half> input_h;
        if (half) input_h = emu_test::round_to_half(input);
        const std::vector<float> bias = emu_test::random_floats(static_cast<size_t>(s.channels), rng, -0.2f, 0.2f);
        zsseg::UpsampleParams p;
        p.geometry.batch = s.batch, p.geometry.channels = s.channels;
        p.geometry.in_height = s.in_h, p.geometry.in_width = s.in_w;
        p.geometry.crop_height = s.in_h, p.geometry.crop_width = s.in_w;
        p.geometry.out_height = s.out_h, p.geometry.out_width = s.out_w;
        p.apply_sigmoid = calibrate;
        p.class_bias = calibrate ? bias.data() : nullptr;
        const size_t count = static_cast<size_t>(s.batch * s.channels * s.out_h * s.out_w);
        std::vector<float> want(count), got(s.offset + count, -3.f);
        std::vector<__half> got_h(s.offset + count);
        p.input = input.data();
        p.output = want.data();
        zsseg::upsample_cpu(p);
        p.input = half ? static_cast<const void*>(input_h.data()) : input.data();
        p.output = half ? static_cast<void*>(got_h.data() + s.offset) : got.data() + s.offset;
        p.dtype = half ? DType::Float16 : DType::Float32;
        ASSERT_EQ(zsseg::upsample_cuda_emulated(p, nullptr), 0);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        std::vector<float> out(count);
        for (size_t i = 0; i < count; ++i) out[i] = half ? __half2float(got_h[s.offset + i]) : got[s.offset + i];
        if (s.offset) ASSERT_EQ(half ? __half2float(got_h[0]) : got[0], half ? 0.f : -3.f) << "written before";
        for (size_t i = 0; i < count; ++i) {
          const float w = half ? __half2float(__float2half_rn(want[i])) : want[i];
          const double tolerance = half ? 1e-3 * std::fabs(w) + 2e-6 : calibrate ? 4e-7 : 2e-6;
          ASSERT_NEAR(out[i], w, tolerance) << "cap " << cap << " " << s.out_h << "x" << s.out_w << " variant "
                                            << variant << " offset " << s.offset << " i " << i;
        }
      }
    }
  }
}

}  // namespace
