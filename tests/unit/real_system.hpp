#pragma once
// A real (threaded) actor system with an embedded host on a memory store, for
// tests of the host's operations end to end. Every wait is bounded.

#include <chrono>
#include <memory>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <gtest/gtest.h>

#include "call.hpp"
#include "reply.hpp"

#include "host/config.hpp"
#include "host/embedded_host.hpp"
#include "host/error.hpp"
#include "host/store/memory_store.hpp"

namespace sessionhost::test {

class real_system : public ::testing::Test {
protected:
  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    cfg.set("scheduler.max-threads", 4);
    return cfg;
  }

  real_system() {
    opts.store = store;
    opts.config.heartbeat_timeout = std::chrono::seconds(30);
    opts.config.idle_timeout = std::chrono::milliseconds(0);
  }

  void start() { host = std::make_unique<embedded_host>(sys, opts); }

  ~real_system() override { host.reset(); }

  /// A request with a timeout; the reply or the error.
  template <class T, class Handle, class... Ts>
  reply<T> call(const Handle& h, Ts&&... xs) {
    return test::call<T>(self, h, std::forward<Ts>(xs)...);
  }

  /// Waits (at most `limit`) until `pred` holds.
  template <class Pred>
  bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred())
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return pred();
  }

  caf::expected<session_info> create(const std::string& type,
                                     const std::string& role = "",
                                     metadata_map md = {}) {
    return call<session_info>(host->host(), create_atom::value, type, role, md);
  }

  session_actor session(const std::string& id) {
    auto h = call<session_actor>(host->host(), get_session_atom::value, id);
    EXPECT_TRUE(h) << (h ? "" : message_of(h.error()));
    return h ? *h : session_actor{};
  }

  caf::actor_system_config cfg;
  caf::actor_system sys{init(cfg)};
  caf::scoped_actor self{sys};
  std::shared_ptr<memory_store> store = std::make_shared<memory_store>();
  host_options opts;
  std::unique_ptr<embedded_host> host;
};

} // namespace sessionhost::test
