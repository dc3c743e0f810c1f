// thread_pool.cpp - see thread_pool.h.
#include "thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KILN_PAUSE() _mm_pause()
#else
#define KILN_PAUSE() ((void)0)
#endif

namespace kiln {

namespace {
// About 50-100 us of spinning before a worker sleeps.
constexpr int kSpinIterations = 4000;
} // namespace

bool ThreadPool::start(int threads) {
  if (threads > kMaxThreads)
    threads = kMaxThreads;
  for (int i = 1; i < threads; ++i) {
    workers_[i] = {this, i, {}};
    if (pthread_create(&workers_[i].thread, nullptr, &ThreadPool::workerMain, &workers_[i]) != 0)
      return false;
    size_ = i + 1;
  }
  return true;
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (int i = 1; i < size_; ++i)
    pthread_join(workers_[i].thread, nullptr);
}

void *ThreadPool::workerMain(void *arg) {
  auto *w = static_cast<Worker *>(arg);
  w->pool->work(w->index);
  return nullptr;
}

void ThreadPool::work(int index) {
  uint64_t seen = 0;
  for (;;) {
    bool ready = false;
    for (int i = 0; i < kSpinIterations && !ready; ++i) {
      ready = generation_.load(std::memory_order_acquire) != seen;
      if (!ready)
        KILN_PAUSE();
    }
    if (!ready) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] {
        return stop_ || generation_.load(std::memory_order_acquire) != seen;
      });
      if (stop_)
        return;
    }
    seen = generation_.load(std::memory_order_acquire);
    for (int64_t t = index; t < tasks_; t += size_)
      fn_(ctx_, t);
    finished_.fetch_add(1, std::memory_order_release);
  }
}

void ThreadPool::run(int64_t tasks, TaskFn fn, void *ctx) {
  if (size_ == 1 || tasks <= 1) {
    for (int64_t t = 0; t < tasks; ++t)
      fn(ctx, t);
    return;
  }
  // Every worker finished the previous job before it returned, so none reads
  // these while they change.
  fn_ = fn;
  ctx_ = ctx;
  tasks_ = tasks;
  finished_.store(0, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (int64_t t = 0; t < tasks; t += size_)
    fn(ctx, t);
  while (finished_.load(std::memory_order_acquire) < size_ - 1)
    KILN_PAUSE();
}

} // namespace kiln
