#pragma once
// A session type that holds something outside its actor, as a child process
// does, until the test lets it go: once told to stop it leaves a poster in
// `held_releases` (by session id); a post there ends the hold and cleans
// the session. Never released, it holds a shutdown up for good.

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "host/session_type.hpp"

namespace sessionhost::test {

struct held_releases {
  std::mutex mtx;
  std::map<std::string, session_poster> by_id;
  /// Lets the session go; false if it was not told to stop yet or is gone.
  bool release(const std::string& id) {
    std::lock_guard<std::mutex> guard{mtx};
    auto i = by_id.find(id);
    return i != by_id.end() && i->second.post(1, "");
  }
};

class held_type final : public session_type {
public:
  explicit held_type(std::shared_ptr<held_releases> releases)
    : releases_(std::move(releases)) {}
  void on_stop(session_context& ctx, const std::string&) override {
    std::lock_guard<std::mutex> guard{releases_->mtx};
    releases_->by_id[ctx.info().id] = ctx.poster();
  }
  void on_external(session_context& ctx, uint64_t, const std::string&) override {
    held_ = false;
    ctx.transition(lifecycle_event::clean, "released");
  }
  bool holds_resources() const override { return held_; }

private:
  std::shared_ptr<held_releases> releases_;
  bool held_ = true;
};

} // namespace sessionhost::test
