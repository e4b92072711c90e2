// similarity_cpu against a naive double loop; similarity_cuda against similarity_cpu where a GPU exists.
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include "dense_test_utils.h"
#include "zsseg/similarity.h"

#ifdef ZSSEG_WITH_CUDA
#include <cuda_fp16.h>
#endif

namespace {

struct Case {
  std::int64_t batch, patches, classes, dim;
  bool text_batched, normalize;
};
void PrintTo(const Case& k, std::ostream* os) {
  *os << "B=" << k.batch << " N=" << k.patches << " C=" << k.classes << " D=" << k.dim
      << " text_batched=" << k.text_batched << " normalize=" << k.normalize;
}

// out[b, c, n] = scale * <t_c / max(|t_c|, eps), p_n / max(|p_n|, eps)>, in double.
std::vector<double> naive_similarity(const Case& k, const std::vector<float>& p, const std::vector<float>& t,
                                     float scale) {
  auto norm = [&](const float* x) {
    double s = 0;
    for (std::int64_t d = 0; d < k.dim; ++d) s += double(x[d]) * x[d];
    return k.normalize ? std::max(std::sqrt(s), 1e-12) : 1.0;
  };
  std::vector<double> out(static_cast<std::size_t>(k.batch * k.classes * k.patches));
  for (std::int64_t b = 0; b < k.batch; ++b)
    for (std::int64_t c = 0; c < k.classes; ++c)
      for (std::int64_t n = 0; n < k.patches; ++n) {
        const float* tc = t.data() + ((k.text_batched ? b * k.classes : 0) + c) * k.dim;
        const float* pn = p.data() + (b * k.patches + n) * k.dim;
        double dot = 0;
        for (std::int64_t d = 0; d < k.dim; ++d) dot += double(tc[d]) * pn[d];
        out[(b * k.classes + c) * k.patches + n] = scale * dot / (norm(tc) * norm(pn));
      }
  return out;
}

zsseg::SimilarityParams make_params(const Case& k, const void* p, const void* t, void* out, float scale) {
  zsseg::SimilarityParams params;
  params.patches = p;
  params.text = t;
  params.out = out;
  params.batch = k.batch;
  params.num_patches = k.patches;
  params.num_classes = k.classes;
  params.dim = k.dim;
  params.text_batched = k.text_batched;
  params.normalize = k.normalize;
  params.scale = scale;
  return params;
}

class SimilarityCpu : public ::testing::TestWithParam<Case> {};

TEST_P(SimilarityCpu, MatchesNaiveLoop) {
  const Case k = GetParam();
  const auto p = dense_test::random_vector(k.batch * k.patches * k.dim, 1);
  const auto t = dense_test::random_vector((k.text_batched ? k.batch : 1) * k.classes * k.dim, 2);
  std::vector<float> out(k.batch * k.classes * k.patches, -7.0f);
  zsseg::similarity_cpu(make_params(k, p.data(), t.data(), out.data(), 1.5f));
  const auto expected = naive_similarity(k, p, t, 1.5f);
  for (std::size_t i = 0; i < out.size(); ++i) {
    ASSERT_NEAR(out[i], expected[i], 1.5 * dense_test::dot_tolerance(k.dim)) << "element " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, SimilarityCpu,
                         ::testing::Values(Case{1, 1, 1, 1, false, false}, Case{1, 1, 1, 1, false, true},
                                           Case{2, 17, 7, 5, false, true}, Case{3, 33, 13, 64, true, false},
                                           Case{2, 70, 40, 96, true, true}, Case{1, 16, 6, 512, false, true},
                                           Case{1, 129, 200, 3, false, false}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           const Case& k = info.param;
                           return "B" + std::to_string(k.batch) + "_N" + std::to_string(k.patches) + "_C" +
                                  std::to_string(k.classes) + "_D" + std::to_string(k.dim) +
                                  (k.text_batched ? "_batchedtext" : "_sharedtext") + (k.normalize ? "_norm" : "_raw");
                         });

TEST(SimilarityCpuEdge, ZeroVectorsGiveZeroNotNan) {
  const Case k{1, 3, 2, 4, false, true};
  std::vector<float> p(k.patches * k.dim, 0.0f), t = dense_test::random_vector(k.classes * k.dim, 3);
  std::vector<float> out(k.classes * k.patches, -1.0f);
  zsseg::similarity_cpu(make_params(k, p.data(), t.data(), out.data(), 1.0f));
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

#ifdef ZSSEG_WITH_CUDA
TEST(SimilarityCuda, MatchesCpuFp32AndFp16) {
  if (zsseg::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << zsseg::cuda_error_string(-1);
  const Case k{2, 70, 37, 96, true, true};
  const auto p = dense_test::random_vector(k.batch * k.patches * k.dim, 4);
  const auto t = dense_test::random_vector(k.batch * k.classes * k.dim, 5);
  const std::size_t out_count = k.batch * k.classes * k.patches;
  std::vector<float> cpu(out_count);
  zsseg::similarity_cpu(make_params(k, p.data(), t.data(), cpu.data(), 2.0f));

  dense_test::GpuArray<float> gp(p), gt(t), gout(out_count);
  ASSERT_EQ(zsseg::similarity_cuda(make_params(k, gp.ptr, gt.ptr, gout.ptr, 2.0f), nullptr), 0);
  const auto gpu = gout.to_host();
  for (std::size_t i = 0; i < out_count; ++i) ASSERT_NEAR(gpu[i], cpu[i], 2 * dense_test::dot_tolerance(k.dim));

  std::vector<__half> hp(p.size()), ht(t.size());
  for (std::size_t i = 0; i < p.size(); ++i) hp[i] = __float2half(p[i]);
  for (std::size_t i = 0; i < t.size(); ++i) ht[i] = __float2half(t[i]);
  dense_test::GpuArray<__half> gph(hp), gth(ht), gouth(out_count);
  zsseg::SimilarityParams half_params = make_params(k, gph.ptr, gth.ptr, gouth.ptr, 2.0f);
  half_params.dtype = zsseg::DType::Float16;
  ASSERT_EQ(zsseg::similarity_cuda(half_params, nullptr), 0);
  const auto half_out = gouth.to_host();
  // fp16 inputs/outputs: ~3 decimal digits on values of magnitude <= 2 (normalised, scale 2).
  for (std::size_t i = 0; i < out_count; ++i) ASSERT_NEAR(__half2float(half_out[i]), cpu[i], 5e-3);
}
#endif

}  // namespace
