// The threads of one emulated block (cuda_emu.h): its barrier (__syncthreads), its warps' shuffles
// (__shfl_xor_sync) and how its threads are scheduled.
//
// Schedules (BlockSchedule, set for a scope with BlockScheduleScope):
// * kConcurrent (the default): every CUDA thread is a running host thread; a barrier really orders them, and a
//   missing one shows up only by chance (a wrong result, when the interleaving happens to expose it).
// * kSerialForward / kSerialReverse: one thread runs at a time, from one synchronisation point (__syncthreads, a
//   shuffle, the end of the block) to the next, in thread order or in reverse thread order. A legal GPU schedule
//   (nothing orders the threads of a block between two barriers), and a deterministic one: a thread that reads
//   shared memory another thread writes with no barrier in between sees the old value in one of the two orders
//   and the new one in the other, so a kernel run in both orders gives the same result only if its barriers are
//   right (cpp_tests/emulation/test_block_schedule.cpp).
// Every barrier arrival names its site; threads of one block reaching different barriers abort (divergent
// __syncthreads is undefined behaviour on a GPU), as does a shuffle of a partial warp or with a partial mask, and
// a lane waiting at __syncthreads while others of its warp wait at a shuffle.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

namespace zs_emu {

enum class BlockSchedule : int { kConcurrent = 0, kSerialForward = 1, kSerialReverse = 2 };

inline std::atomic<int>& block_schedule_storage() {
  static std::atomic<int> schedule{static_cast<int>(BlockSchedule::kConcurrent)};
  return schedule;
}
inline BlockSchedule block_schedule() {
  return static_cast<BlockSchedule>(block_schedule_storage().load());
}
// The schedule of the blocks of every launch that STARTS running in the scope (launches are asynchronous:
// synchronise inside the scope).
struct BlockScheduleScope {
  int saved;
  explicit BlockScheduleScope(BlockSchedule schedule)
      : saved(block_schedule_storage().exchange(static_cast<int>(schedule))) {}
  ~BlockScheduleScope() { block_schedule_storage().store(saved); }
  BlockScheduleScope(const BlockScheduleScope&) = delete;
  BlockScheduleScope& operator=(const BlockScheduleScope&) = delete;
};

// Barrier, warp exchange and (serial schedules) turn-taking of the threads of one block. Thread `t` is the
// linear thread index; every call names it.
class BlockBarrier {
 public:
  BlockBarrier(unsigned int threads, BlockSchedule schedule = BlockSchedule::kConcurrent)
      : threads_(threads),
        serial_(schedule != BlockSchedule::kConcurrent),
        blocked_(threads, 0),
        turn_(threads),
        warp_arrived_((threads + 31) / 32, 0),
        warp_phase_((threads + 31) / 32, 0),
        warp_at_barrier_((threads + 31) / 32, 0),
        slots_(threads, 0) {
    for (unsigned int i = 0; i < threads; ++i)
      order_.push_back(schedule == BlockSchedule::kSerialReverse ? threads - 1 - i : i);
    running_ = serial_ && threads > 0 ? static_cast<int>(order_[0]) : -1;
  }

  // Serial schedules: wait for this thread's first turn (before the first block's body).
  void begin(unsigned int t) {
    if (!serial_) return;
    std::unique_lock<std::mutex> lock(mutex_);
    turn_[t].wait(lock, [&] { return running_ == static_cast<int>(t); });
  }
  // Serial schedules: this thread is done with every block; the next one runs.
  void finish(unsigned int t) {
    if (!serial_) return;
    std::lock_guard<std::mutex> lock(mutex_);
    blocked_[t] = 2;
    pass_turn_locked();
  }

  void arrive_and_wait(unsigned int t, const char* site) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (arrived_ == 0) {
      site_ = site;
    } else if (site_ != site) {
      fail("divergent barrier", site_, site);
    }
    if (warp_arrived_[t / 32] != 0) fail("divergent barrier", "a shuffle", site);
    const std::uint64_t phase = phase_;
    ++warp_at_barrier_[t / 32];
    if (++arrived_ == threads_) {
      arrived_ = 0;
      ++phase_;
      for (auto& n : warp_at_barrier_) n = 0;
      for (auto& b : blocked_) b = b == 2 ? 2 : 0;
    } else {
      blocked_[t] = 1;
    }
    wait_locked(lock, t, [&] { return phase_ != phase; });
  }

  // __shfl_xor_sync of a full warp: every lane deposits `value` and gets lane (its lane ^ lane_mask)'s.
  std::uint64_t warp_exchange(unsigned int t, std::uint64_t value, unsigned int source_lane) {
    const unsigned int warp = t / 32;
    std::unique_lock<std::mutex> lock(mutex_);
    if (threads_ - warp * 32 < 32) fail("shuffle of a partial warp", "__shfl_xor_sync", "(not modelled)");
    if (warp_at_barrier_[warp] != 0) fail("divergent barrier", "__syncthreads()", "a shuffle");
    slots_[t] = value;
    warp_wait_locked(lock, t, warp);  // every lane has deposited its value
    const std::uint64_t got = slots_[warp * 32 + (source_lane & 31u)];
    warp_wait_locked(lock, t, warp);  // every lane has read: the slots may be written again
    return got;
  }

 private:
  [[noreturn]] void fail(const char* what, const char* a, const char* b) const {
    std::fprintf(stderr, "zs_emu: %s in block: '%s' and '%s'\n", what, a, b);
    std::abort();
  }
  template <class Done>
  void wait_locked(std::unique_lock<std::mutex>& lock, unsigned int t, Done done) {
    if (!serial_) {
      if (done()) {
        wake_.notify_all();
        return;
      }
      wake_.wait(lock, done);
      return;
    }
    pass_turn_locked();
    turn_[t].wait(lock, [&] { return done() && running_ == static_cast<int>(t); });
  }
  void warp_wait_locked(std::unique_lock<std::mutex>& lock, unsigned int t, unsigned int warp) {
    const std::uint64_t phase = warp_phase_[warp];
    if (++warp_arrived_[warp] == 32) {
      warp_arrived_[warp] = 0;
      ++warp_phase_[warp];
      for (unsigned int lane = 0; lane < 32; ++lane) blocked_[warp * 32 + lane] = 0;
    } else {
      blocked_[t] = 1;
    }
    wait_locked(lock, t, [&] { return warp_phase_[warp] != phase; });
  }
  // Serial: the first thread of the order that is not blocked runs next.
  void pass_turn_locked() {
    running_ = -1;
    for (unsigned int t : order_) {
      if (blocked_[t] == 0) {
        running_ = static_cast<int>(t);
        turn_[t].notify_one();
        return;
      }
    }
  }

  const unsigned int threads_;
  const bool serial_;
  std::vector<unsigned int> order_;
  std::vector<int> blocked_;  // serial: 0 runnable, 1 waiting at a barrier or shuffle, 2 finished
  std::vector<std::condition_variable> turn_;
  int running_ = -1;
  unsigned int arrived_ = 0;
  std::uint64_t phase_ = 0;
  const char* site_ = nullptr;
  std::vector<unsigned int> warp_arrived_;
  std::vector<std::uint64_t> warp_phase_;
  std::vector<unsigned int> warp_at_barrier_;  // lanes of each warp waiting at the current block barrier
  std::vector<std::uint64_t> slots_;
  std::mutex mutex_;
  std::condition_variable wake_;
};

}  // namespace zs_emu
