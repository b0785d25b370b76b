// dice_room: sessionhost embedded in a program's own CAF actor system.
//
// The program owns the actor system and one actor of its own (a printer that
// subscribes to a session and prints every event). It starts an
// embedded_host in that system, registers its own session type (`dice`: a
// table that opens after a short set-up timer, lets players roll, announces
// a winner after four rolls and closes itself), adds two hooks, drives one
// session through the C++ API and prints its event stream; meanwhile the
// same host serves REST and WebSocket on a free loopback port
// (transport::http_frontend), where `POST /v1/sessions {"type":"dice"}`
// would create a table too. Then it stops both and exits 0, its own system
// shutting down normally.
//
// Walkthrough: docs/EMBEDDING.md.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <nlohmann/json.hpp>

#include <sessionhost/sessionhost.hpp>

namespace sh = sessionhost;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::mutex print_mtx; // the printer actor, the hooks and main all print

void say(const std::string& line) {
  std::lock_guard<std::mutex> guard{print_mtx};
  std::cout << line << std::endl;
}

// -- the session type ---------------------------------------------------------

/// A dice table. CREATED → SPAWNING when it is set up (on_start), SPAWNING →
/// ACTIVE when its set-up timer fires, then each message {"player": name}
/// rolls two dice; after `rounds` rolls it announces the winner and closes
/// the session itself (TERMINATING; on_stop says goodbye).
class dice_room final : public sh::session_type {
public:
  static constexpr uint64_t open_timer = 1;
  static constexpr int rounds = 4;

  void on_start(sh::session_context& ctx) override {
    // on_start runs on every activation: only a new table is set up.
    if (ctx.info().state == sh::session_state::created) {
      ctx.transition(sh::lifecycle_event::spawn, "setting up the table");
      ctx.set_timer(50ms, open_timer);
    } else if (ctx.info().state == sh::session_state::spawning) {
      ctx.set_timer(50ms, open_timer);
    }
  }

  void on_timer(sh::session_context& ctx, uint64_t id) override {
    if (id == open_timer && ctx.info().state == sh::session_state::spawning)
      ctx.transition(sh::lifecycle_event::activate, "table open");
  }

  void on_message(sh::session_context& ctx, const std::string& data) override {
    auto msg = json::parse(data, nullptr, false);
    if (!msg.is_object() || !msg.contains("player")) {
      ctx.publish(sh::event_type::error,
                  json{{"message", "expected {\"player\": name}"}}.dump());
      return;
    }
    if (ctx.info().state != sh::session_state::active) {
      ctx.publish(sh::event_type::log,
                  json{{"message", "the table is not open yet"}}.dump());
      return;
    }
    auto player = msg["player"].get<std::string>();
    std::uniform_int_distribution<int> die{1, 6};
    int a = die(rng_), b = die(rng_);
    ctx.publish("dice:rolled", json{{"player", player},
                                    {"dice", {a, b}},
                                    {"total", a + b}}
                                 .dump());
    if (a + b > best_) {
      best_ = a + b;
      leader_ = player;
    }
    if (++rolls_ == rounds) {
      ctx.publish("dice:winner",
                  json{{"player", leader_}, {"total", best_}}.dump());
      ctx.transition(sh::lifecycle_event::terminate, "game over");
    }
  }

  void on_stop(sh::session_context& ctx, const std::string& reason) override {
    ctx.publish("dice:closed", json{{"reason", reason}, {"rolls", rolls_}}.dump());
  }

private:
  std::minstd_rand rng_{7}; // fixed seed: the example's output is stable
  int rolls_ = 0;
  int best_ = 0;
  std::string leader_;
};

// -- the program's own actor --------------------------------------------------

/// Asks the printer how many events it printed (our own message tag).
using seen_atom = caf::atom_constant<caf::atom("ex_seen")>;

/// How far the printer got.
struct progress {
  std::mutex mtx;
  std::condition_variable cv;
  uint64_t last_seq = 0;
  size_t events = 0;

  /// Waits (at most `limit`) until the printer has printed `seq`.
  bool wait_for(uint64_t seq, std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock{mtx};
    return cv.wait_for(lock, limit, [&] { return last_seq >= seq; });
  }
};

/// Prints every event of the sessions it is subscribed to. The hub sends
/// each batch as a request: the (empty) reply is the printer's credit.
caf::behavior printer(caf::event_based_actor*, std::shared_ptr<progress> p) {
  return {
    [p](sh::events_atom, const std::string&,
        const std::vector<sh::event>& evs) -> caf::result<void> {
      for (auto& e : evs)
        say("  event " + std::to_string(e.seq) + " " + e.type + " " + e.data);
      {
        std::lock_guard<std::mutex> guard{p->mtx};
        p->events += evs.size();
        if (!evs.empty())
          p->last_seq = evs.back().seq;
      }
      p->cv.notify_all();
      return caf::unit;
    },
    [p](seen_atom) -> uint64_t {
      std::lock_guard<std::mutex> guard{p->mtx};
      return p->events;
    },
    [](sh::lagged_atom, const std::string& id, uint64_t seq) {
      // Dropped for being too slow: resubscribe to go on.
      say("printer dropped from " + id + " after seq " + std::to_string(seq));
    },
    [](sh::unloaded_atom, const std::string& id, uint64_t seq) {
      // The session was unloaded (or the host stopped): subscription over.
      say("session " + id + " unloaded at seq " + std::to_string(seq));
    },
  };
}

// -- helpers --------------------------------------------------------------------

/// A request from main with a bounded wait; throws on an error reply.
template <class T, class Handle, class... Ts>
T ask(caf::scoped_actor& self, const Handle& h, Ts&&... xs) {
  T result{};
  caf::error failure;
  self->request(h, std::chrono::seconds(10), std::forward<Ts>(xs)...)
    .receive([&](T& x) { result = std::move(x); },
             [&](caf::error& err) { failure = std::move(err); });
  if (failure)
    throw std::runtime_error(sh::message_of(failure));
  return result;
}

int run(caf::actor_system& sys) {
  // The session types this host knows: the built-ins and ours.
  sh::host_options opts;
  opts.types = sh::session_type_registry::with_builtins();
  opts.types->add("dice", [] { return std::make_unique<dice_room>(); });
  // opts.store = sh::open_store("sqlite:dice.db", "."); // durable instead
  sh::embedded_host host{sys, opts};

  // The same host over REST + WebSocket (docs/PROTOCOL.md), on any free
  // loopback port: {"type":"dice"} is a type like any built-in one there.
  sh::transport::http_frontend_options web_opts;
  web_opts.server.port = 0;
  sh::transport::http_frontend web{sys, host, web_opts};
  say("REST on http://127.0.0.1:" + std::to_string(web.start()));

  // Hooks (seed 000): host-wide, and one for a single session below.
  host.register_on_session_open([](const sh::hook_event& ev) {
    say("hook: session_open " + ev.session_id + " peer="
        + ev.metadata.at("peer"));
    // A hook may publish on the session it runs in (no re-entry of hooks).
    ev.control->publish(sh::event_type::log,
                        json{{"message", "welcome, " + ev.metadata.at("peer")}}
                          .dump());
  });

  caf::scoped_actor self{sys};
  auto seen = std::make_shared<progress>();
  auto mine = sys.spawn(printer, seen);
  // Our actor must end before the system can (~actor_system waits for it),
  // also when something below throws.
  std::shared_ptr<void> stop_mine{nullptr, [&](void*) {
    caf::anon_send_exit(mine, caf::exit_reason::user_shutdown);
  }};

  // Create a session of our type, subscribe our printer to it.
  auto info = ask<sh::session_info>(self, host.host(), sh::create_atom::value,
                                    std::string{"dice"}, std::string{},
                                    sh::metadata_map{{"table", "green"}});
  say("created " + info.id + " type=" + info.type + " state="
      + sh::to_string(info.state));
  host.register_on_session_close(info.id, [](const sh::hook_event& ev) {
    say("hook: session_close " + ev.session_id + " reason="
        + ev.metadata.at("reason"));
  });
  auto from = ask<uint64_t>(self, host.hub(), sh::hub_subscribe_atom::value,
                            caf::actor_cast<caf::actor>(mine), info.id);
  say("printer subscribed after seq " + std::to_string(from));
  // What happened before the subscription is in the store (from_seq=0).
  for (auto& e : host.store()->read_events(info.id, 0, from))
    say("  stored " + std::to_string(e.seq) + " " + e.type + " " + e.data);

  auto room = ask<sh::session_actor>(self, host.host(),
                                     sh::get_session_atom::value, info.id);
  // Wait (bounded) for the set-up timer to open the table.
  for (int i = 0; i < 200 && info.state != sh::session_state::active; ++i) {
    std::this_thread::sleep_for(10ms);
    info = ask<sh::session_info>(self, room, sh::info_atom::value);
  }
  say("table is " + std::string{sh::to_string(info.state)});

  // A peer (the players' client) attaches, then the players roll.
  ask<sh::session_info>(self, room, sh::attach_atom::value, std::string{"client-1"},
                        caf::actor{});
  for (auto player : {"ann", "bob", "ann", "bob"})
    ask<uint64_t>(self, room, sh::message_atom::value,
                  json{{"player", player}}.dump());

  // The game closed itself (TERMINATING); the host finishes the cleanup.
  info = ask<sh::session_info>(self, host.host(), sh::terminate_atom::value,
                               info.id, std::string{"game over"});
  bool complete = seen->wait_for(info.last_seq, 10s);
  say("final state " + std::string{sh::to_string(info.state)} + ", "
      + std::to_string(info.last_seq) + " events, printer saw "
      + std::to_string(seen->events));

  // Stop the REST side and the host (the destructors would, too), in this
  // order; the program's own actor and system are not affected.
  web.stop_accepting();
  host.stop();
  web.stop();
  auto printed = ask<uint64_t>(self, mine, seen_atom::value);
  say("host stopped; the printer still answers: it printed "
      + std::to_string(printed) + " events");
  return complete && info.state == sh::session_state::cleaned ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  // sessionhost_config: CAF's config with sessionhost's options, message
  // types and error category; `--sessionhost.log-level=debug` etc. work.
  sh::sessionhost_config cfg;
  if (auto err = cfg.parse(argc, argv)) {
    std::cerr << "bad arguments\n";
    return 2;
  }
  sh::apply_log_level(sh::host_config::from(cfg).log_level);
  caf::actor_system sys{cfg};
  try {
    return run(sys);
  } catch (const std::exception& e) {
    std::cerr << "dice_room: " << e.what() << "\n";
    return 1;
  }
}
