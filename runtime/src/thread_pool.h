// thread_pool.h - the threads of one session.
//
// Created with the session, joined when it is destroyed; a run hands its
// tasks out without allocating. Task t runs on thread t mod size (thread 0 is
// the caller), so the split a kernel chooses is the split that runs. Workers
// spin briefly after a job, because a model calls run() once per parallel
// kernel, then sleep on a condition variable until the next one.
#ifndef KILN_RUNTIME_THREAD_POOL_H
#define KILN_RUNTIME_THREAD_POOL_H

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace kiln {

class ThreadPool {
public:
  using TaskFn = void (*)(void *ctx, int64_t task);

  /// A pool of `threads` threads, the caller's included. Returns false when
  /// the extra threads could not be started (the pool then has one).
  bool start(int threads);
  ~ThreadPool();

  int size() const { return size_; }

  /// Runs fn(ctx, t) for t in [0, tasks) and returns when all have finished.
  void run(int64_t tasks, TaskFn fn, void *ctx);

  /// kiln_abi_exec's parallel_for.
  static void parallelFor(void *pool, int64_t tasks, TaskFn fn, void *ctx) {
    static_cast<ThreadPool *>(pool)->run(tasks, fn, ctx);
  }

private:
  static constexpr int kMaxThreads = 256;
  struct Worker {
    ThreadPool *pool;
    int index;
    pthread_t thread;
  };
  static void *workerMain(void *arg);
  void work(int index);

  int size_ = 1;
  Worker workers_[kMaxThreads];
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> finished_{0};
  bool stop_ = false;
  // The current job, written before generation_ is bumped.
  TaskFn fn_ = nullptr;
  void *ctx_ = nullptr;
  int64_t tasks_ = 0;
};

} // namespace kiln

#endif
