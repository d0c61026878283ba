#include "u2/server/memory_trimmer.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace u2::server {

MemoryTrimmer::MemoryTrimmer(int interval_s) : interval_(interval_s) {
#if defined(__GLIBC__)
  if (interval_s <= 0) return;
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, interval_, [this] { return stopping_; })) {
      lock.unlock();
      malloc_trim(0);
      lock.lock();
    }
  });
#endif
}

MemoryTrimmer::~MemoryTrimmer() { Stop(); }

void MemoryTrimmer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace u2::server
