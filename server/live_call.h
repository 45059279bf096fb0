// Counts calls between their handler and their OnDone, so that a drain can wait until every
// stream has been written out, not only until the engine is done with it.
#ifndef KVASIR_SERVER_LIVE_CALL_H_
#define KVASIR_SERVER_LIVE_CALL_H_

#include <atomic>
#include <memory>
#include <utility>

namespace kvasir::server {

using LiveCallCount = std::shared_ptr<std::atomic<int>>;

// Holds one count for its lifetime (a member of a reactor, which is deleted in OnDone).
class LiveCall {
 public:
  explicit LiveCall(LiveCallCount count) : count_(std::move(count)) {
    if (count_) count_->fetch_add(1);
  }
  ~LiveCall() {
    if (count_) count_->fetch_sub(1);
  }
  LiveCall(const LiveCall&) = delete;
  LiveCall& operator=(const LiveCall&) = delete;

 private:
  LiveCallCount count_;
};

}  // namespace kvasir::server

#endif  // KVASIR_SERVER_LIVE_CALL_H_
