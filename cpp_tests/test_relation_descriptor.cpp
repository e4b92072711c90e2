// relation_descriptor_cpu against the literal concat + linear in double; CUDA against CPU where a GPU exists.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "dense_test_utils.h"
#include "zsseg/relation_descriptor.h"

namespace {

struct Case {
  std::int64_t batch, classes, dim, out_dim;  // out_dim 0 = no weight
  bool with_bias;
};
void PrintTo(const Case& k, std::ostream* os) {
  *os << "B=" << k.batch << " C=" << k.classes << " D=" << k.dim << " Dout=" << k.out_dim << " bias=" << k.with_bias;
}

std::vector<double> naive_relation(const Case& k, const std::vector<float>& t, const std::vector<float>& g,
                                   const std::vector<float>& w, const std::vector<float>& bias) {
  const std::int64_t width = 2 * k.dim, out_dim = k.out_dim ? k.out_dim : width;
  std::vector<double> out(static_cast<std::size_t>(k.batch * k.classes * out_dim));
  std::vector<double> cat(static_cast<std::size_t>(width));
  for (std::int64_t b = 0; b < k.batch; ++b)
    for (std::int64_t c = 0; c < k.classes; ++c) {
      for (std::int64_t d = 0; d < k.dim; ++d) {
        cat[d] = double(t[c * k.dim + d]) * g[b * k.dim + d];
        cat[k.dim + d] = t[c * k.dim + d];
      }
      double* row = out.data() + (b * k.classes + c) * out_dim;
      for (std::int64_t o = 0; o < out_dim; ++o) {
        if (k.out_dim == 0) {
          row[o] = cat[o];
          continue;
        }
        double s = k.with_bias ? bias[o] : 0.0;
        for (std::int64_t j = 0; j < width; ++j) s += w[o * width + j] * cat[j];
        row[o] = s;
      }
    }
  return out;
}

zsseg::RelationDescriptorParams make_params(const Case& k, const void* t, const void* g, const void* w,
                                            const void* bias, void* out) {
  zsseg::RelationDescriptorParams params;
  params.text = t;
  params.image_global = g;
  params.weight = k.out_dim ? w : nullptr;
  params.bias = k.out_dim && k.with_bias ? bias : nullptr;
  params.out = out;
  params.batch = k.batch;
  params.num_classes = k.classes;
  params.dim = k.dim;
  params.out_dim = k.out_dim ? k.out_dim : 2 * k.dim;
  return params;
}

struct Inputs {
  std::vector<float> t, g, w, bias;
  explicit Inputs(const Case& k)
      : t(dense_test::random_vector(k.classes * k.dim, 11)),
        g(dense_test::random_vector(k.batch * k.dim, 12)),
        w(dense_test::random_vector(std::max<std::int64_t>(k.out_dim, 1) * 2 * k.dim, 13)),
        bias(dense_test::random_vector(std::max<std::int64_t>(k.out_dim, 1), 14)) {}
};

class RelationCpu : public ::testing::TestWithParam<Case> {};

TEST_P(RelationCpu, MatchesConcatThenLinear) {
  const Case k = GetParam();
  const Inputs in(k);
  const std::int64_t out_dim = k.out_dim ? k.out_dim : 2 * k.dim;
  std::vector<float> out(k.batch * k.classes * out_dim, -7.0f);
  zsseg::relation_descriptor_cpu(make_params(k, in.t.data(), in.g.data(), in.w.data(), in.bias.data(), out.data()));
  const auto expected = naive_relation(k, in.t, in.g, in.w, in.bias);
  for (std::size_t i = 0; i < out.size(); ++i) {
    ASSERT_NEAR(out[i], expected[i], dense_test::dot_tolerance(2 * k.dim)) << "element " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, RelationCpu,
                         ::testing::Values(Case{1, 1, 1, 1, true}, Case{1, 1, 1, 0, false}, Case{2, 5, 7, 0, false},
                                           Case{3, 13, 33, 17, true}, Case{2, 40, 96, 64, false},
                                           Case{1, 171, 64, 100, true}, Case{4, 7, 5, 1, true}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           const Case& k = info.param;
                           return "B" + std::to_string(k.batch) + "_C" + std::to_string(k.classes) + "_D" +
                                  std::to_string(k.dim) + "_Dout" + std::to_string(k.out_dim) +
                                  (k.with_bias ? "_bias" : "_nobias");
                         });

#ifdef ZSSEG_WITH_CUDA
TEST(RelationCuda, MatchesCpu) {
  if (zsseg::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << zsseg::cuda_error_string(-1);
  for (const Case& k : {Case{3, 37, 96, 70, true}, Case{2, 9, 17, 0, false}}) {
    const Inputs in(k);
    const std::int64_t out_dim = k.out_dim ? k.out_dim : 2 * k.dim;
    const std::size_t count = k.batch * k.classes * out_dim;
    std::vector<float> cpu(count);
    zsseg::relation_descriptor_cpu(make_params(k, in.t.data(), in.g.data(), in.w.data(), in.bias.data(), cpu.data()));
    dense_test::GpuArray<float> gt(in.t), gg(in.g), gw(in.w), gb(in.bias), gout(count);
    ASSERT_EQ(zsseg::relation_descriptor_cuda(make_params(k, gt.ptr, gg.ptr, gw.ptr, gb.ptr, gout.ptr), nullptr), 0);
    const auto gpu = gout.to_host();
    for (std::size_t i = 0; i < count; ++i) ASSERT_NEAR(gpu[i], cpu[i], 2 * dense_test::dot_tolerance(2 * k.dim));
  }
}
#endif

}  // namespace
