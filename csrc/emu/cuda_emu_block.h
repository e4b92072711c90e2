// The threads of one emulated block (cuda_emu.h): its barrier (__syncthreads), its warps' shuffles
// (__shfl_xor_sync) and how its threads are scheduled.
//
// Every CUDA thread is a fiber (a ucontext with its own stack) on a host thread: a synchronisation point (a barrier,
// a shuffle, the end of a block) switches to the next fiber in user space, not through the kernel (one host thread
// per CUDA thread made a 256-thread block's barrier ~500 futex calls and context switches; the ctest suite spent
// 80 % of its time in the kernel's scheduler).
// Schedules (BlockSchedule, set for a scope with BlockScheduleScope):
// * kConcurrent (the default): each warp is a running host thread, so the warps of a block really run at once and
//   a barrier really orders them (a missing one shows up only by chance: a wrong result, when the interleaving
//   happens to expose it); the 32 lanes of a warp take turns between synchronisation points, in lane order.
// * kSerialForward / kSerialReverse: one thread of the block runs at a time, from one synchronisation point
//   (__syncthreads, a shuffle, the end of the block) to the next, in thread order or in reverse thread order. A
//   legal GPU schedule (nothing orders the threads of a block between two barriers), and a deterministic one: a
//   thread that reads shared memory another thread writes with no barrier in between sees the old value in one of
//   the two orders and the new one in the other, so a kernel run in both orders gives the same result only if its
//   barriers are right (cpp_tests/emulation/test_block_schedule.cpp).
// Every barrier arrival names its site; threads of one block reaching different barriers abort (divergent
// __syncthreads is undefined behaviour on a GPU), as does a shuffle of a partial warp or with a partial mask, and
// a lane waiting at __syncthreads while others of its warp wait at a shuffle.
#pragma once
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "cuda_emu_types.h"  // ZS_EMU_ASAN, ZS_EMU_UNPOISON
#ifdef ZS_EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

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

// A fiber's stack: mapped memory with a guard page below it (an overflow faults instead of writing over another
// stack); kept in a pool for the next launch.
struct FiberStack {
  void* base = nullptr;  // the guard page
  std::size_t size = 0;  // usable bytes above it
  void* bottom() const { return static_cast<char*>(base) + page(); }
  static std::size_t page() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }
};
constexpr std::size_t kFiberStackBytes = 256 * 1024;

inline std::mutex& stack_pool_mutex() {
  static std::mutex m;
  return m;
}
inline std::vector<FiberStack>& stack_pool() {
  static std::vector<FiberStack>* pool = new std::vector<FiberStack>();  // never destroyed: used up to exit
  return *pool;
}
inline FiberStack acquire_stack() {
  {
    std::lock_guard<std::mutex> lock(stack_pool_mutex());
    if (!stack_pool().empty()) {
      FiberStack s = stack_pool().back();
      stack_pool().pop_back();
      return s;
    }
  }
  FiberStack s;
  s.size = kFiberStackBytes;
  s.base = mmap(nullptr, s.size + FiberStack::page(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (s.base == MAP_FAILED) {
    std::fprintf(stderr, "zs_emu: cannot map a %zu-byte fiber stack\n", s.size);
    std::abort();
  }
  mprotect(s.base, FiberStack::page(), PROT_NONE);
  return s;
}
inline void release_stack(const FiberStack& s) {
  // a finished fiber leaves its last frames' redzones poisoned: the next fiber on this stack starts clean
  ZS_EMU_UNPOISON(s.bottom(), s.size);
  std::lock_guard<std::mutex> lock(stack_pool_mutex());
  stack_pool().push_back(s);
}

// ASan must be told when the stack changes under it (its stack bounds, and fake stacks), or it reports false
// errors when an exception unwinds on a fiber.
inline void fiber_switch_start(void** fake_stack_save, const void* bottom, std::size_t size) {
#ifdef ZS_EMU_ASAN
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
  (void)fake_stack_save, (void)bottom, (void)size;
#endif
}
inline void fiber_switch_finish(void* fake_stack_save, const void** old_bottom, std::size_t* old_size) {
#ifdef ZS_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack_save, old_bottom, old_size);
#else
  (void)fake_stack_save, (void)old_bottom, (void)old_size;
#endif
}

// Barrier, warp exchange and scheduling of the threads of one block. Thread `t` is the linear thread index; every
// call names it. run() runs every thread's body on fibers and returns when all have finished.
class BlockBarrier {
 public:
  // lane_main(arg, t): thread t's whole life (every block of the grid); on_switch(arg, t, resume): thread t is about
  // to run again (resume) or has just stopped at a synchronisation point (its host-thread state: threadIdx...).
  using LaneMain = void (*)(void* arg, unsigned int t);
  using OnSwitch = void (*)(void* arg, unsigned int t, bool resume);

  BlockBarrier(unsigned int threads, BlockSchedule schedule = BlockSchedule::kConcurrent)
      : threads_(threads), schedule_(schedule), lanes_(threads) {}
  BlockBarrier(const BlockBarrier&) = delete;
  BlockBarrier& operator=(const BlockBarrier&) = delete;

  void run(LaneMain lane_main, OnSwitch on_switch, void* arg) {
    lane_main_ = lane_main;
    on_switch_ = on_switch;
    arg_ = arg;
    if (schedule_ != BlockSchedule::kConcurrent || threads_ <= 32) {
      groups_.emplace_back(this, 0, threads_);
      groups_[0].run();
      return;
    }
    groups_.reserve((threads_ + 31) / 32);  // the groups never move: their threads hold them
    for (unsigned int first = 0; first < threads_; first += 32)
      groups_.emplace_back(this, first, first + 32 < threads_ ? first + 32 : threads_);
    std::vector<std::thread> hosts;
    hosts.reserve(groups_.size());
    for (Group& g : groups_) hosts.emplace_back([&g] { g.run(); });
    for (std::thread& h : hosts) h.join();
  }

  void arrive_and_wait(unsigned int t, const char* site) {
    Lane& lane = lanes_[t];
    Group& g = *lane.group;
    if (g.at_barrier == 0) {
      g.site = site;
    } else if (g.site != site) {
      fail("divergent barrier", g.site, site);
    }
    if (warp_at_shuffle(t) != 0) fail("divergent barrier", "a shuffle", site);
    ++g.at_barrier;
    lane.state = kAtBarrier;
    g.yield(t);
  }

  // __shfl_xor_sync of a full warp: every lane deposits `value` and gets lane (its lane ^ lane_mask)'s.
  std::uint64_t warp_exchange(unsigned int t, std::uint64_t value, unsigned int source_lane) {
    const unsigned int warp = t / 32;
    if (threads_ - warp * 32 < 32) fail("shuffle of a partial warp", "__shfl_xor_sync", "(not modelled)");
    Lane& lane = lanes_[t];
    Group& g = *lane.group;
    if (g.at_barrier != 0 && warp_at_barrier(t) != 0) fail("divergent barrier", "__syncthreads()", "a shuffle");
    lane.value = value;
    lane.source = warp * 32 + (source_lane & 31u);
    lane.state = kAtShuffle;
    g.yield(t);
    return lane.got;
  }

 private:
  enum State : int { kRunnable = 0, kAtBarrier = 1, kAtShuffle = 2, kDone = 3 };
  struct Group;
  struct Lane {
    ucontext_t context;
    FiberStack stack;
    void* fake_stack = nullptr;
    State state = kRunnable;
    Group* group = nullptr;
    std::uint64_t value = 0, got = 0;
    unsigned int source = 0;
  };

  // The lanes [first, last) that one host thread runs: all of them in a serial schedule, a warp's otherwise.
  struct Group {
    Group(BlockBarrier* owner, unsigned int first_lane, unsigned int end_lane)
        : block(owner), first(first_lane), last(end_lane), scheduler() {}
    BlockBarrier* block;
    unsigned int first, last;
    unsigned int at_barrier = 0;
    unsigned int cursor = 0;
    unsigned int done = 0;  // lanes that ended
    const char* site = nullptr;
    ucontext_t scheduler;
    void* fake_stack = nullptr;
    const void* host_bottom = nullptr;
    std::size_t host_size = 0;

    void run() {
      BlockBarrier& b = *block;
      for (unsigned int t = first; t < last; ++t) start_lane(b.lanes_[t], this);
      done = 0;
      const unsigned int count = last - first;
      cursor = 0;
      while (done < count) {
        if (next_runnable() >= 0) {
          resume(lane_at(cursor));  // swapcontext returns twice: what follows reads members, not locals
          const Lane& ran = b.lanes_[lane_at(cursor)];
          if (ran.state == kDone) ++done;
          if (ran.state == kAtShuffle) complete_shuffle(lane_at(cursor) / 32);
          continue;
        }
        // nobody can run: every lane waits at the barrier (a shuffle completes as soon as its warp is in; a lane
        // ends only after the last block's end barrier released them all)
        if (done != 0 || at_barrier != count) b.fail("divergent barrier", site, "(a thread that ended)");
        if (b.groups_.size() > 1) b.host_barrier(site);
        at_barrier = 0;
        for (unsigned int i = first; i < last; ++i) b.lanes_[i].state = kRunnable;
        cursor = 0;
      }
      for (unsigned int t = first; t < last; ++t) release_stack(b.lanes_[t].stack);
    }

    // the schedule's order: thread order, or reverse thread order (kSerialReverse)
    unsigned int lane_at(unsigned int i) const {
      return block->schedule_ == BlockSchedule::kSerialReverse ? last - 1 - i : first + i;
    }
    unsigned int position_of(unsigned int t) const {
      return block->schedule_ == BlockSchedule::kSerialReverse ? last - 1 - t : t - first;
    }
    // the first runnable lane in the schedule's order (no lane before `cursor` is runnable)
    int next_runnable() {
      const BlockBarrier& b = *block;
      for (; cursor < last - first; ++cursor) {
        const unsigned int t = lane_at(cursor);
        if (b.lanes_[t].state == kRunnable) return static_cast<int>(t);
      }
      return -1;
    }

    // every lane of the warp has deposited its value: each gets its source's, and all run again
    void complete_shuffle(unsigned int warp) {
      BlockBarrier& b = *block;
      for (unsigned int t = warp * 32; t < warp * 32 + 32; ++t)
        if (b.lanes_[t].state != kAtShuffle) return;
      for (unsigned int t = warp * 32; t < warp * 32 + 32; ++t) b.lanes_[t].got = b.lanes_[b.lanes_[t].source].value;
      for (unsigned int t = warp * 32; t < warp * 32 + 32; ++t) {
        b.lanes_[t].state = kRunnable;
        if (position_of(t) < cursor) cursor = position_of(t);
      }
    }

    void resume(unsigned int t) {
      BlockBarrier& b = *block;
      Lane& lane = b.lanes_[t];
      starting() = {this, t};
      b.on_switch_(b.arg_, t, true);
      fiber_switch_start(&fake_stack, lane.stack.bottom(), lane.stack.size);
      swapcontext(&scheduler, &lane.context);
      fiber_switch_finish(fake_stack, nullptr, nullptr);
    }

    // on lane t's fiber: back to the scheduler until the lane may run again
    void yield(unsigned int t) {
      BlockBarrier& b = *block;
      Lane& lane = b.lanes_[t];
      b.on_switch_(b.arg_, t, false);
      fiber_switch_start(&lane.fake_stack, host_bottom, host_size);
      swapcontext(&lane.context, &scheduler);
      fiber_switch_finish(lane.fake_stack, &host_bottom, &host_size);
    }
  };

  // a fiber that starts in trampoline() on its own stack (getcontext returns twice: the only call in here)
  static void start_lane(Lane& lane, Group* group) {
    lane.group = group;
    lane.stack = acquire_stack();
    getcontext(&lane.context);
    lane.context.uc_stack.ss_sp = lane.stack.bottom();
    lane.context.uc_stack.ss_size = lane.stack.size;
    lane.context.uc_link = nullptr;
    makecontext(&lane.context, &BlockBarrier::trampoline, 0);
  }

  struct Start {
    Group* group;
    unsigned int lane;
  };
  static Start& starting() {
    static thread_local Start start{nullptr, 0};
    return start;
  }

  static void trampoline() {
    const Start start = starting();
    Group& g = *start.group;
    fiber_switch_finish(nullptr, &g.host_bottom, &g.host_size);
    BlockBarrier& b = *g.block;
    b.lane_main_(b.arg_, start.lane);
    b.on_switch_(b.arg_, start.lane, false);
    b.lanes_[start.lane].state = kDone;
    fiber_switch_start(nullptr, g.host_bottom, g.host_size);  // this fiber's fake stack is freed
    setcontext(&g.scheduler);
  }

  unsigned int warp_at_shuffle(unsigned int t) const {
    const unsigned int first = t / 32 * 32, last = first + 32 < threads_ ? first + 32 : threads_;
    unsigned int n = 0;
    for (unsigned int i = first; i < last; ++i) n += lanes_[i].state == kAtShuffle;
    return n;
  }
  unsigned int warp_at_barrier(unsigned int t) const {
    const unsigned int first = t / 32 * 32, last = first + 32 < threads_ ? first + 32 : threads_;
    unsigned int n = 0;
    for (unsigned int i = first; i < last; ++i) n += lanes_[i].state == kAtBarrier;
    return n;
  }

  // kConcurrent with several warps: the warps' host threads meet at each barrier, at the same site
  void host_barrier(const char* site) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (arrived_ == 0) {
      host_site_ = site;
    } else if (host_site_ != site) {
      fail("divergent barrier", host_site_, site);
    }
    const std::uint64_t phase = phase_;
    if (++arrived_ == groups_.size()) {
      arrived_ = 0;
      ++phase_;
      wake_.notify_all();
      return;
    }
    wake_.wait(lock, [&] { return phase_ != phase; });
  }

  [[noreturn]] void fail(const char* what, const char* a, const char* b) const {
    std::fprintf(stderr, "zs_emu: %s in block: '%s' and '%s'\n", what, a ? a : "?", b ? b : "?");
    std::abort();
  }

  const unsigned int threads_;
  const BlockSchedule schedule_;
  std::vector<Lane> lanes_;
  std::vector<Group> groups_;
  LaneMain lane_main_ = nullptr;
  OnSwitch on_switch_ = nullptr;
  void* arg_ = nullptr;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::size_t arrived_ = 0;
  std::uint64_t phase_ = 0;
  const char* host_site_ = nullptr;
};

}  // namespace zs_emu
