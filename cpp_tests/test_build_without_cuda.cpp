// A build without CUDA (the aarch64 cross-build, a machine without nvcc) links every launcher the bindings name,
// and each reports "built without CUDA" instead of running.
#include <gtest/gtest.h>

#include <string>

#include "zsseg/common.h"
#include "zsseg/similarity.h"
#include "zsseg/upsample.h"

TEST(BuildWithoutCuda, LaunchersReportBuiltWithoutCuda) {
#ifdef ZSSEG_WITH_CUDA
  GTEST_SKIP() << "this build compiled the CUDA kernels";
#else
  EXPECT_FALSE(zsseg::cuda_compiled());
  EXPECT_EQ(zsseg::cuda_device_count(), 0);
  const zsseg::CudaStatus similarity = zsseg::similarity_cuda(zsseg::SimilarityParams{}, nullptr);
  const zsseg::CudaStatus upsample = zsseg::upsample_cuda(zsseg::UpsampleParams{}, nullptr);
  EXPECT_NE(similarity, 0);
  EXPECT_NE(upsample, 0);
  EXPECT_EQ(std::string(zsseg::cuda_error_string(similarity)), "zsseg_rt was built without CUDA");
#endif
}
