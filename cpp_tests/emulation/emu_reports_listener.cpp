// Every emulation test fails when the emulated runtime reported something during it (a race between unordered
// accesses, a use of freed pool memory, a use of a destroyed handle: zs_emu::report). A test that provokes a report
// on purpose takes it with emu_test::take_reports() before it ends. The seed of the run is printed once, so that an
// ordering-dependent failure can be replayed with ZS_EMU_SEED.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "emu/cuda_emu.h"

namespace {

class ReportListener : public ::testing::EmptyTestEventListener {
  void OnTestProgramStart(const ::testing::UnitTest&) override {
    std::printf("[zs_emu] seed %llu%s (ZS_EMU_SEED=%llu replays it), delays up to %d us\n",
                static_cast<unsigned long long>(zs_emu::options().seed),
                zs_emu::options().seed_from_env ? " from ZS_EMU_SEED" : "",
                static_cast<unsigned long long>(zs_emu::options().seed), zs_emu::options().max_delay_us);
  }
  void OnTestStart(const ::testing::TestInfo&) override { zs_emu::take_reports(); }
  // OnTestEnd runs in reverse order of registration: this listener (appended last) runs before the printer, and
  // the current test is still set, so a failure added here fails it.
  void OnTestEnd(const ::testing::TestInfo&) override {
    zs_emu::settle();
    for (const zs_emu::Report& r : zs_emu::take_reports()) {
      ADD_FAILURE() << "the emulated CUDA runtime reported a " << r.kind << ": " << r.message;
    }
  }
};

const bool registered = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new ReportListener());
  return true;
}();

}  // namespace
