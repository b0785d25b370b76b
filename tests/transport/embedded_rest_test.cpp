// A user-defined session type through REST: an embedder registers its own
// type in its own embedded_host, puts transport::http_frontend in front of
// it (in this test's own actor system, on 127.0.0.1:0) and a plain HTTP
// client creates, messages and reads that type's sessions over a real
// socket. An unknown type is a 400 that creates nothing. The client is a few
// lines of POSIX sockets (no Beast beside CAF in this TU); every read is
// bounded by a socket timeout.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <caf/actor_system.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "host/config.hpp"
#include "host/embedded_host.hpp"
#include "host/session_type.hpp"
#include "host/store/memory_store.hpp"
#include "transport/http_frontend.hpp"

using json = nlohmann::json;
namespace sh = sessionhost;

namespace {

/// A counter: every message publishes `counter:value` with the session's
/// message count and the text it was sent.
class counter final : public sh::session_type {
public:
  bool spawns_nothing() const override { return true; }

  void on_message(sh::session_context& ctx, const std::string& data) override {
    auto msg = json::parse(data, nullptr, false);
    auto text = msg.is_object() ? msg.value("text", "") : "";
    ctx.publish("counter:value",
                json{{"count", ctx.info().message_count}, {"text", text}}.dump());
  }
};

struct http_result {
  int status = 0; // 0: no connection or no answer
  std::string body;
  json j; // the parsed body (discarded when not JSON)
};

/// One request on a fresh connection ("Connection: close": the body is
/// everything after the headers). Reads and writes time out after 10 s.
http_result http(uint16_t port, const std::string& method,
                 const std::string& target, const std::string& body = {}) {
  http_result out;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return out;
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return out;
  }
  auto req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             + "Connection: close\r\nContent-Type: application/json\r\n"
             + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n"
             + body;
  for (size_t sent = 0; sent < req.size();) {
    auto n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return out;
    }
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
    raw.append(buf, static_cast<size_t>(n));
  ::close(fd);
  auto head_end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || head_end == std::string::npos)
    return out;
  out.status = std::stoi(raw.substr(9, 3));
  out.body = raw.substr(head_end + 4);
  out.j = json::parse(out.body, nullptr, false);
  return out;
}

/// A memory store whose commits the test can hold: while held, `append`
/// (the persistence listener's group commit) waits until released, so
/// events stay emitted but not durable for as long as the test looks.
class gated_store final : public sh::session_store {
public:
  void hold() {
    std::lock_guard<std::mutex> g{mtx_};
    held_ = true;
  }
  void release() {
    {
      std::lock_guard<std::mutex> g{mtx_};
      held_ = false;
    }
    cv_.notify_all();
  }
  /// Whether a commit is waiting at the gate (waits up to 10 s for one).
  bool commit_waiting() {
    std::unique_lock<std::mutex> g{mtx_};
    return cv_.wait_for(g, std::chrono::seconds(10),
                        [this] { return waiting_ > 0; });
  }

  void append(const std::vector<sh::append_batch>& batches) override {
    wait_at_gate();
    inner_->append(batches);
  }
  void wait_at_gate() {
    std::unique_lock<std::mutex> g{mtx_};
    ++waiting_;
    cv_.notify_all();
    // Bounded: a test that forgets to release fails instead of hanging.
    cv_.wait_for(g, std::chrono::seconds(30), [this] { return !held_; });
    --waiting_;
  }

  void create_started(const std::vector<sh::append_batch>& sessions) override {
    wait_at_gate(); // the first steps' commit, gated as append is
    inner_->create_started(sessions);
  }
  void create(const sh::session_info& i) override { inner_->create(i); }
  void create_many(const std::vector<sh::session_info>& i) override {
    inner_->create_many(i);
  }
  std::vector<sh::event> read_events(const std::string& id, uint64_t after,
                                     size_t limit) override {
    return inner_->read_events(id, after, limit);
  }
  std::optional<sh::session_info> load(const std::string& id) override {
    return inner_->load(id);
  }
  uint64_t activate(const std::string& id) override {
    return inner_->activate(id);
  }
  std::vector<uint64_t> activate_many(const std::vector<std::string>& ids) override {
    return inner_->activate_many(ids);
  }
  std::optional<std::string> find_by_role(const std::string& role) override {
    return inner_->find_by_role(role);
  }
  sh::session_page list(const sh::session_filter& f, const std::string& cursor,
                        size_t limit) override {
    return inner_->list(f, cursor, limit);
  }
  uint64_t count(const sh::session_filter& f) override {
    return inner_->count(f);
  }
  void remove(const std::string& id) override { inner_->remove(id); }
  sh::purge_result purge(const sh::retention_policy& p, sh::micros now) override {
    return inner_->purge(p, now);
  }

private:
  std::shared_ptr<sh::memory_store> inner_ = std::make_shared<sh::memory_store>();
  std::mutex mtx_;
  std::condition_variable cv_;
  bool held_ = false;
  int waiting_ = 0;
};

class embedded_rest_test : public ::testing::Test {
protected:
  embedded_rest_test() {
    sh::host_options opts;
    opts.store = store;
    opts.types = sh::session_type_registry::with_builtins();
    opts.types->add("counter", [] { return std::make_unique<counter>(); });
    host = std::make_unique<sh::embedded_host>(sys, opts);
    sh::transport::http_frontend_options web_opts;
    web_opts.server.host = "127.0.0.1";
    web_opts.server.port = 0;
    web = std::make_unique<sh::transport::http_frontend>(sys, *host, web_opts);
    port = web->start();
  }

  ~embedded_rest_test() override {
    // The documented order: no new connections, sessions flushed, then the
    // server's thread; the system outlives both.
    web->stop_accepting();
    host->stop();
    web->stop();
    web.reset();
    host.reset();
  }

  std::vector<json> listed() {
    auto r = http(port, "GET", "/v1/sessions");
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<json> out;
    if (r.j.is_object() && r.j["sessions"].is_array())
      for (auto& s : r.j["sessions"])
        out.push_back(s);
    return out;
  }

  sh::sessionhost_config cfg;
  caf::actor_system sys{cfg};
  std::shared_ptr<gated_store> store = std::make_shared<gated_store>();
  std::unique_ptr<sh::embedded_host> host;
  std::unique_ptr<sh::transport::http_frontend> web;
  uint16_t port = 0;
};

} // namespace

TEST_F(embedded_rest_test, a_custom_type_is_created_messaged_and_read_through_rest) {
  ASSERT_NE(port, 0);
  EXPECT_EQ(web->port(), port);

  auto c = http(port, "POST", "/v1/sessions",
                R"({"type":"counter","metadata":{"owner":"ann"}})");
  ASSERT_EQ(c.status, 201) << c.body;
  auto id = c.j["id"].get<std::string>();
  EXPECT_EQ(c.j["type"], "counter");
  EXPECT_EQ(c.j["state"], "ACTIVE"); // spawns_nothing: straight to ACTIVE
  EXPECT_EQ(c.j["metadata"], (json{{"owner", "ann"}}));

  for (auto text : {"one", "two", "three"}) {
    auto m = http(port, "POST", "/v1/sessions/" + id + "/messages",
                  json{{"data", {{"text", text}}}}.dump());
    ASSERT_EQ(m.status, 202) << m.body;
  }

  auto e = http(port, "GET", "/v1/sessions/" + id + "/events?from_seq=0");
  ASSERT_EQ(e.status, 200) << e.body;
  std::vector<json> values;
  uint64_t seq = 0;
  for (auto& ev : e.j["events"]) {
    EXPECT_EQ(ev["seq"], ++seq) << "no gap";
    EXPECT_EQ(ev["session"], id);
    if (ev["type"] == "counter:value")
      values.push_back(ev["data"]);
  }
  EXPECT_EQ(values, (std::vector<json>{{{"count", 1}, {"text", "one"}},
                                       {{"count", 2}, {"text", "two"}},
                                       {{"count", 3}, {"text", "three"}}}));

  auto g = http(port, "GET", "/v1/sessions/" + id);
  ASSERT_EQ(g.status, 200) << g.body;
  EXPECT_EQ(g.j["message_count"], 3);
  EXPECT_EQ(g.j["last_seq"], seq);
  auto list = listed();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], id);
  // What REST shows is what the host stored.
  EXPECT_EQ(store->read_events(id, 0, 100).size(), seq);
}

TEST_F(embedded_rest_test, an_unknown_type_is_a_400_and_creates_nothing) {
  auto r = http(port, "POST", "/v1/sessions", R"({"type":"no_such_type"})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.j["error"]["code"], "bad_request");
  EXPECT_NE(r.j["error"]["message"].get<std::string>().find("no_such_type"),
            std::string::npos)
    << r.body;
  EXPECT_TRUE(listed().empty());
  EXPECT_EQ(store->count({}), 0u);

  // A type registered while serving is creatable at once.
  host->types().add("no_such_type", [] { return std::make_unique<counter>(); });
  auto c = http(port, "POST", "/v1/sessions", R"({"type":"no_such_type"})");
  EXPECT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(listed().size(), 1u);
}

TEST_F(embedded_rest_test, after_stop_nothing_listens) {
  ASSERT_EQ(http(port, "GET", "/healthz").status, 200);
  EXPECT_EQ(http(port, "GET", "/").status, 200); // the dashboard, by default
  web->stop_accepting();
  host->stop();
  EXPECT_EQ(web->stop(), 0u);
  EXPECT_EQ(web->stop(), 0u); // idempotent
  EXPECT_EQ(http(port, "GET", "/healthz").status, 0);
}

TEST_F(embedded_rest_test, get_and_load_show_only_what_is_durable) {
  auto c = http(port, "POST", "/v1/sessions", R"({"type":"counter"})");
  ASSERT_EQ(c.status, 201) << c.body;
  auto id = c.j["id"].get<std::string>();
  auto before = http(port, "GET", "/v1/sessions/" + id);
  ASSERT_EQ(before.status, 200) << before.body;
  EXPECT_EQ(before.j["message_count"], 0);

  // Hold the commit: the message's events are emitted, not durable.
  store->hold();
  http_result posted;
  std::thread poster{[&] {
    posted = http(port, "POST", "/v1/sessions/" + id + "/messages",
                  R"({"data":{"text":"one"}})");
  }};
  bool waiting = store->commit_waiting();
  auto during = http(port, "GET", "/v1/sessions/" + id);
  auto loaded = http(port, "POST", "/v1/sessions/" + id + "/load");
  store->release();
  poster.join();
  ASSERT_TRUE(waiting) << "the message never reached the store";
  ASSERT_EQ(during.status, 200) << during.body;
  EXPECT_EQ(during.j["message_count"], 0) << during.body;
  EXPECT_EQ(during.j["last_seq"], before.j["last_seq"]) << during.body;
  EXPECT_EQ(during.j["updated_at"], before.j["updated_at"]) << during.body;
  ASSERT_EQ(loaded.status, 200) << loaded.body;
  EXPECT_EQ(loaded.j["message_count"], 0) << loaded.body;
  EXPECT_EQ(loaded.j["last_seq"], before.j["last_seq"]) << loaded.body;

  // Durable now: the 202 came, and GET shows the message.
  ASSERT_EQ(posted.status, 202) << posted.body;
  auto after = http(port, "GET", "/v1/sessions/" + id);
  EXPECT_EQ(after.j["message_count"], 1) << after.body;
  EXPECT_GT(after.j["last_seq"].get<uint64_t>(),
            before.j["last_seq"].get<uint64_t>());
  EXPECT_EQ(after.j["last_seq"],
            store->read_events(id, 0, 100).back().seq);
}
