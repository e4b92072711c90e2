// Device queries must never throw and must report "no GPU" as 0 devices.
#include <gtest/gtest.h>

#include <string>

#include "zsseg/common.h"

TEST(Device, CountIsNonNegativeAndStable) {
  int first = -1, second = -1;
  EXPECT_NO_THROW(first = zsseg::cuda_device_count());
  EXPECT_NO_THROW(second = zsseg::cuda_device_count());
  EXPECT_GE(first, 0);
  EXPECT_EQ(first, second);
}

TEST(Device, CompiledFlagMatchesBuild) {
#ifdef ZSSEG_WITH_CUDA
  EXPECT_TRUE(zsseg::cuda_compiled());
#else
  EXPECT_FALSE(zsseg::cuda_compiled());
  EXPECT_EQ(zsseg::cuda_device_count(), 0);
#endif
}

TEST(Device, ErrorStringsAreNeverNull) {
  zsseg::cuda_device_count();
  const char* last = zsseg::cuda_error_string(-1);
  ASSERT_NE(last, nullptr);
  EXPECT_GT(std::string(last).size(), 0u);
  ASSERT_NE(zsseg::cuda_error_string(0), nullptr);
  ASSERT_NE(zsseg::cuda_error_string(35), nullptr);
}
