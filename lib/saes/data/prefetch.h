// Prefetcher<T>: runs a producer on a background thread into a bounded queue so the consumer never
// waits for I/O, decoding or a model forward that could have happened earlier; measures the waits.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace saes::data {

template <class T>
class Prefetcher {
 public:
  using Produce = std::function<std::optional<T>()>;

  /// Starts the thread; at most `depth` items wait in the queue.
  Prefetcher(Produce produce, int depth)
      : produce_(std::move(produce)), depth_(depth < 1 ? 1 : depth), thread_([this] { run(); }) {}
  ~Prefetcher() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  /// The next item, nullopt after the last; rethrows a producer exception.
  std::optional<T> next() {
    const auto start = std::chrono::steady_clock::now();
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !queue_.empty() || done_; });
    waited_ += std::chrono::steady_clock::now() - start;
    if (queue_.empty()) {
      if (error_) std::rethrow_exception(error_);
      return std::nullopt;
    }
    T item = std::move(queue_.front());
    queue_.pop_front();
    changed_.notify_all();
    return item;
  }

  /// Seconds the consumer spent blocked in next().
  double waited_seconds() const {
    std::lock_guard lock(mutex_);
    return std::chrono::duration<double>(waited_).count();
  }

 private:
  void run() {
    try {
      while (true) {
        {
          std::unique_lock lock(mutex_);
          changed_.wait(lock, [&] { return stop_ || static_cast<int>(queue_.size()) < depth_; });
          if (stop_) break;
        }
        auto item = produce_();
        std::lock_guard lock(mutex_);
        if (!item) break;
        queue_.push_back(std::move(*item));
        changed_.notify_all();
      }
    } catch (...) {
      std::lock_guard lock(mutex_);
      error_ = std::current_exception();
    }
    std::lock_guard lock(mutex_);
    done_ = true;
    changed_.notify_all();
  }

  Produce produce_;
  int depth_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<T> queue_;
  std::exception_ptr error_;
  bool done_ = false;
  bool stop_ = false;
  std::chrono::steady_clock::duration waited_{};
  std::thread thread_;  ///< last: starts after every other member exists
};

}  // namespace saes::data
