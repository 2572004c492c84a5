// Large activations (a 64-channel 512x512 float map is 64 MiB) are allocated and freed on every
// run. glibc serves allocations above its mmap threshold (at most 32 MiB) with fresh mmaps and
// unmaps them on free, so every run touches new pages, and on this project's VMs a first touch is
// expensive: filling a fresh 71 MB tensor took 650 ms against 16 ms for the same tensor reused.
// That is why whole-image Real-CUGAN time grew faster than its pixel count. Blocks of 1 MiB and
// more are therefore kept after free (up to a bound) and handed out again for requests of about
// the same size; new ones are 2 MiB aligned and marked for transparent huge pages, so the first
// touch faults once per 2 MiB instead of once per 4 KiB.
#include "runtime/block_cache.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>

namespace acg2vec::runtime {
namespace {

constexpr std::size_t min_block = std::size_t{1} << 20;
constexpr std::size_t huge_page = std::size_t{2} << 20;

// Every DataPtr's context is its data pointer and every block is freed through release(), as
// c10's raw_allocate/raw_deallocate (used inside some libtorch kernels) require; the sizes of the
// large blocks are kept here.
class block_cache final : public c10::Allocator {
 public:
  explicit block_cache(std::size_t limit) : limit_(limit) {}

  c10::DataPtr allocate(std::size_t n) const override {
    if (n < min_block) {
      void* p = c10::alloc_cpu(n);
      return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
    }
    const std::size_t size = (n + huge_page - 1) / huge_page * huge_page;
    std::unique_lock lock(mutex_);
    // The smallest cached block that fits, when it wastes at most a quarter.
    auto it = free_.lower_bound(size);
    void* p = nullptr;
    if (it != free_.end() && it->first <= size + size / 4) {
      p = it->second;
      cached_ -= it->first;
      live_.emplace(p, it->first);
      free_.erase(it);
      return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
    }
    lock.unlock();
    p = std::aligned_alloc(huge_page, size);
    if (!p) throw std::bad_alloc();
    madvise(p, size, MADV_HUGEPAGE);
    lock.lock();
    live_.emplace(p, size);
    return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

 private:
  static void release(void* ptr);
  void give_back(void* ptr) {
    std::size_t size = 0;
    {
      std::lock_guard lock(mutex_);
      auto it = live_.find(ptr);
      if (it != live_.end()) {
        size = it->second;
        live_.erase(it);
        if (cached_ + size <= limit_) {
          free_.emplace(size, ptr);
          cached_ += size;
          return;
        }
      }
    }
    if (size) std::free(ptr);
    else c10::free_cpu(ptr);
  }

  std::size_t limit_;
  mutable std::mutex mutex_;
  mutable std::multimap<std::size_t, void*> free_;
  mutable std::unordered_map<void*, std::size_t> live_;
  mutable std::size_t cached_ = 0;
};

block_cache* instance = nullptr;

void block_cache::release(void* ptr) { instance->give_back(ptr); }

}  // namespace

void install_block_cache() {
  static std::once_flag once;
  std::call_once(once, [] {
    // A quarter of physical memory, at most 2 GiB: enough for the activations of one large image.
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    const std::size_t physical = pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) : 0;
    const std::size_t limit = std::min<std::size_t>(std::size_t{2} << 30, physical / 4);
    instance = new block_cache(limit);  // never destroyed: tensors may be freed during exit
    c10::SetAllocator(c10::DeviceType::CPU, instance, /*priority=*/1);
    spdlog::debug("runtime: CPU blocks of 1 MiB and more are cached (up to {} MiB)", limit >> 20);
  });
}

}  // namespace acg2vec::runtime
