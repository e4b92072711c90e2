// The class-bias check without a host synchronisation (issue 13): the one-block kernel of csrc/cuda/bias_check.cu
// (emulated) finds the first non-finite class, and the host learns it from a mapped pinned slot only once the
// launch's event has passed (zsseg::stream_order::DeviceCheck) -- never by waiting.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <limits>
#include <vector>

#include "cuda/stream_order.h"
#include "emu/cuda_emu.h"
#include "emu/kernels_emulated.h"
#include "zsseg/bias_check.h"

namespace {

using zsseg::stream_order::DeviceCheck;
using zsseg::stream_order::PinnedSlots;
using zsseg::stream_order::ReadyEvent;

std::int32_t run_check(const std::vector<float>& bias) {
  auto check = DeviceCheck::create(zsseg::kBiasNotChecked);
  EXPECT_NE(check, nullptr);
  zsseg::BiasCheckParams params;
  params.bias = bias.data();
  params.classes = static_cast<std::int64_t>(bias.size());
  params.result = check->device_result();
  EXPECT_EQ(zsseg::bias_check_cuda_emulated(params, nullptr), 0);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // launches are asynchronous
  return check->value();
}

TEST(BiasCheck, FindsTheFirstNonFiniteClassAndItsKind) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(run_check({0.1f, 0.0f, -0.05f}), zsseg::kBiasAllFinite);
  EXPECT_EQ(run_check({0.1f, 0.0f, 0.2f, nan}), 3 * 4 + 0);
  EXPECT_EQ(run_check({inf, nan}), 0 * 4 + 1);
  EXPECT_EQ(run_check({0.0f, -inf}), 1 * 4 + 2);
  EXPECT_EQ(run_check({std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()}), zsseg::kBiasAllFinite);
  std::vector<float> many(1000, 0.5f);  // more classes than threads: the grid-stride loop and the reduction
  many[700] = nan;
  many[999] = inf;
  EXPECT_EQ(run_check(many), 700 * 4);
  many[260] = -inf;  // thread 4's second element: earlier than 700 although a higher thread index found 700
  EXPECT_EQ(run_check(many), 260 * 4 + 2);
  EXPECT_STREQ(zsseg::bad_class_kind(260 * 4 + 2), "-inf");
  EXPECT_STREQ(zsseg::bad_class_kind(700 * 4), "NaN");
}

TEST(BiasCheck, RefusesBadParameters) {
  zsseg::BiasCheckParams params;
  EXPECT_EQ(zsseg::bias_check_cuda_emulated(params, nullptr), static_cast<int>(cudaErrorInvalidValue));
}

TEST(BiasCheck, TheHostLearnsTheResultOnlyAfterTheEventWithoutWaiting) {
  zs_emu::reset_runtime();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  std::vector<float> bias{0.0f, std::numeric_limits<float>::quiet_NaN()};
  std::shared_ptr<DeviceCheck> check;
  {
    zs_emu::StreamHold running(stream);
    check = DeviceCheck::create(zsseg::kBiasNotChecked);
    ASSERT_NE(check, nullptr);
    zsseg::BiasCheckParams params{bias.data(), 2, check->device_result()};
    ASSERT_EQ(zsseg::bias_check_cuda_emulated(params, stream), 0);
    auto event = std::make_shared<ReadyEvent>();
    ASSERT_EQ(event->record(stream, 0), cudaSuccess);
    check->set_event(event);
    EXPECT_FALSE(check->finished());  // the op returned; nobody waited
    EXPECT_EQ(zs_emu::runtime_stats().blocking_waits, 0);
  }
  ASSERT_TRUE(check->finished());
  EXPECT_EQ(check->value(), 1 * 4 + 0);
  EXPECT_TRUE(check->claim());   // reported once ...
  EXPECT_FALSE(check->claim());  // ... not by every later reporter
  EXPECT_EQ(zs_emu::runtime_stats().blocking_waits, 0);
  cudaStreamDestroy(stream);
}

TEST(BiasCheck, SlotsAreRecycledAndExhaustionIsReported) {
  const std::size_t before = PinnedSlots::instance().in_use();
  {
    std::vector<std::shared_ptr<DeviceCheck>> held;
    for (std::size_t i = before; i < static_cast<std::size_t>(PinnedSlots::kSlots); ++i) {
      held.push_back(DeviceCheck::create(0));
      ASSERT_NE(held.back(), nullptr);
    }
    EXPECT_EQ(DeviceCheck::create(0), nullptr);  // the caller then checks synchronously
  }
  EXPECT_EQ(PinnedSlots::instance().in_use(), before);
  EXPECT_NE(DeviceCheck::create(0), nullptr);
}

struct Flagged {
  std::shared_ptr<DeviceCheck> check;
};

TEST(BiasCheck, SweepVisitsFinishedPayloadsAndPropagatesTheFirstError) {
  zsseg::stream_order::DeferredRelease<Flagged> pending;
  for (int i = 0; i < 3; ++i) {
    auto check = DeviceCheck::create(i == 1 ? 5 : zsseg::kBiasAllFinite);
    auto event = std::make_shared<ReadyEvent>();
    ASSERT_EQ(event->record(nullptr, 0), cudaSuccess);
    check->set_event(event);
    pending.keep_until(event, Flagged{check});
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the events have passed
  int visited = 0;
  EXPECT_THROW(pending.sweep([&](Flagged& f) {
    ++visited;
    if (f.check->value() != zsseg::kBiasAllFinite && f.check->claim()) throw std::runtime_error("bad bias");
  }),
               std::runtime_error);
  EXPECT_EQ(visited, 3);  // all finished payloads were visited and dropped despite the error
  EXPECT_EQ(pending.size(), 0u);
}

}  // namespace
