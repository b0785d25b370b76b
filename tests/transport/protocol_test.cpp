// End-to-end tests of the protocol's edges, over real sockets against the
// real `sessionhost serve`: tokens and their scopes, allowed origins,
// protobuf frames, idempotent publishes, "unloaded" notices and the
// publish-to-send histogram (docs/PROTOCOL.md). Every wait is bounded.
#include "serve_fixture.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "sessionhost/v1/session.pb.h"

using namespace sessionhost::test;
using http::verb;
namespace v1 = sessionhost::v1;

namespace {

class protocol_test : public serve_fixture {
protected:
  std::string create(const std::string& role = "", const std::string& tok = {}) {
    json body{{"type", "echo"}};
    if (!role.empty())
      body["role"] = role;
    auto r = call(verb::post, "/v1/sessions", body.dump(), tok);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.j.value("id", "");
  }

  size_t stored_count(const std::string& id, const std::string& tok = {}) {
    auto r = call(verb::get, "/v1/sessions/" + id + "/events?limit=10000", {},
                  tok);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.j["events"].size();
  }

};

ws_options ws_opts(const std::string& target, const std::string& token = {},
                   const std::string& subprotocol = {}) {
  ws_options o;
  o.target = target;
  o.token = token;
  o.subprotocol = subprotocol;
  return o;
}

void expect_error(const http_result& r, int status, const std::string& code,
                  const std::string& what) {
  EXPECT_EQ(r.status, status) << what << ": " << r.body;
  EXPECT_EQ(r.code(), code) << what << ": " << r.body;
  EXPECT_TRUE(r.j["error"]["message"].is_string()) << what << ": " << r.body;
}

/// Reads until an `error` op and checks its code.
void expect_ws_error(ws_client& ws, const std::string& code,
                     const std::string& what) {
  auto e = ws.read_op("error");
  ASSERT_TRUE(e) << what;
  EXPECT_EQ((*e)["code"], code) << what << ": " << e->dump();
}

// -- tokens ---------------------------------------------------------------------

class protocol_auth : public protocol_test {
protected:
  void SetUp() override {
    auto file = dir.path + "/tokens";
    std::ofstream out{file};
    out << "# tokens of this test\n"
        << "admin-token\n"
        << "\n"
        << "viewer-token read-only\n"
        << "agent-token roles=agent-1,agent-2\n"
        << "agent-reader roles=agent-1 read-only\n";
    out.close();
    extra = {"--auth-token-file=" + file,
             "--allowed-origins=https://app.example"};
    protocol_test::SetUp();
  }
};

TEST_F(protocol_auth, rest_needs_a_known_token_and_stays_in_its_scope) {
  // healthz is open; everything else needs a token.
  EXPECT_EQ(call(verb::get, "/healthz").status, 200);
  expect_error(call(verb::get, "/v1/sessions"), 401, "unauthorized", "none");
  expect_error(call(verb::get, "/v1/sessions", {}, "wrong"), 401,
               "unauthorized", "wrong token");
  expect_error(call(verb::get, "/metrics"), 401, "unauthorized", "metrics");
  expect_error(call(verb::post, "/v1/sessions", R"({"type":"echo"})"), 401,
               "unauthorized", "create without token");
  EXPECT_EQ(call(verb::get, "/v1/sessions", {}, "admin-token").status, 200);
  EXPECT_EQ(call(verb::get, "/v1/sessions?token=admin-token").status, 200)
    << "?token= works for REST too";
  EXPECT_EQ(call(verb::get, "/v1/sessions", {}, "viewer-token").status, 200);

  auto mine = create("agent-1", "agent-token");
  auto other = create("other", "admin-token");
  ASSERT_FALSE(mine.empty());
  ASSERT_FALSE(other.empty());

  // read-only: reads pass, every write is 403 and changes nothing.
  EXPECT_EQ(call(verb::get, "/v1/sessions/" + other, {}, "viewer-token").status,
            200);
  EXPECT_EQ(call(verb::get, "/metrics", {}, "viewer-token").status, 200);
  expect_error(call(verb::post, "/v1/sessions", R"({"type":"echo"})",
                    "viewer-token"),
               403, "forbidden", "read-only create");
  auto before = stored_count(other, "admin-token");
  expect_error(call(verb::post, "/v1/sessions/" + other + "/messages",
                    R"({"data":1})", "viewer-token"),
               403, "forbidden", "read-only message");
  expect_error(call(verb::post, "/v1/sessions/" + other + "/events",
                    R"({"type":"log"})", "viewer-token"),
               403, "forbidden", "read-only publish");
  expect_error(call(verb::delete_, "/v1/sessions/" + other, {}, "viewer-token"),
               403, "forbidden", "read-only delete");
  expect_error(call(verb::post, "/v1/sessions/" + other + "/unload", {},
                    "viewer-token"),
               403, "forbidden", "read-only unload");
  expect_error(call(verb::post, "/v1/sessions/" + other + "/load", {},
                    "viewer-token"),
               403, "forbidden", "read-only load");
  EXPECT_EQ(stored_count(other, "admin-token"), before);
  EXPECT_EQ(call(verb::get, "/v1/sessions", {}, "admin-token").j["sessions"].size(),
            2u);

  // role-limited: its own sessions only.
  EXPECT_EQ(call(verb::get, "/v1/sessions/" + mine, {}, "agent-token").status,
            200);
  EXPECT_EQ(call(verb::post, "/v1/sessions/" + mine + "/messages",
                 R"({"data":"hi"})", "agent-token")
              .status,
            202);
  expect_error(call(verb::get, "/v1/sessions/" + other, {}, "agent-token"), 403,
               "forbidden", "other role's session");
  expect_error(call(verb::get, "/v1/sessions/" + other + "/events", {},
                    "agent-token"),
               403, "forbidden", "other role's events");
  expect_error(call(verb::post, "/v1/sessions/" + other + "/messages",
                    R"({"data":1})", "agent-token"),
               403, "forbidden", "other role's messages");
  expect_error(call(verb::delete_, "/v1/sessions/" + other, {}, "agent-token"),
               403, "forbidden", "other role's delete");
  expect_error(call(verb::get, "/v1/sessions/no-such-session", {}, "agent-token"),
               403, "forbidden", "unknown id for a limited token");
  expect_error(call(verb::post, "/v1/sessions", R"({"type":"echo","role":"x"})",
                    "agent-token"),
               403, "forbidden", "create outside its roles");
  expect_error(call(verb::post, "/v1/sessions", R"({"type":"echo"})",
                    "agent-token"),
               403, "forbidden", "create without a role");
  expect_error(call(verb::get, "/metrics", {}, "agent-token"), 403, "forbidden",
               "metrics with a limited token");
  auto listed = call(verb::get, "/v1/sessions", {}, "agent-token");
  ASSERT_EQ(listed.status, 200) << listed.body;
  ASSERT_EQ(listed.j["sessions"].size(), 1u) << listed.body;
  EXPECT_EQ(listed.j["sessions"][0]["id"], mine);

  // role-limited and read-only.
  EXPECT_EQ(call(verb::get, "/v1/sessions/" + mine, {}, "agent-reader").status,
            200);
  expect_error(call(verb::post, "/v1/sessions/" + mine + "/messages",
                    R"({"data":1})", "agent-reader"),
               403, "forbidden", "read-only in scope");
  // Nothing above changed the other session.
  EXPECT_EQ(stored_count(other, "admin-token"), before);
}

TEST_F(protocol_auth, websocket_upgrades_need_a_token_and_an_allowed_origin) {
  auto port = proc->port;
  auto none = ws_upgrade_call(port, "/v1/ws");
  expect_error(none, 401, "unauthorized", "upgrade without token");
  expect_error(ws_upgrade_call(port, "/v1/ws?token=wrong"), 401, "unauthorized",
               "upgrade with a wrong token");
  expect_error(ws_upgrade_call(port, "/v1/ws",
                               {{"Authorization", "Bearer wrong"}}),
               401, "unauthorized", "upgrade with a wrong header");
  EXPECT_EQ(ws_upgrade_call(port, "/v1/ws?token=admin-token").status, 101);
  EXPECT_EQ(
    ws_upgrade_call(port, "/v1/ws", {{"Authorization", "Bearer admin-token"}})
      .status,
    101);
  auto own = "http://127.0.0.1:" + std::to_string(port);
  auto alias = "http://localhost:" + std::to_string(port);
  EXPECT_EQ(ws_upgrade_call(port, "/v1/ws?token=admin-token", {{"Origin", own}})
              .status,
            101)
    << "the server's own origin";
  EXPECT_EQ(
    ws_upgrade_call(port, "/v1/ws?token=admin-token", {{"Origin", alias}}).status,
    101)
    << "a loopback alias of the server's own origin";
  EXPECT_EQ(ws_upgrade_call(port, "/v1/ws?token=admin-token",
                            {{"Origin", "https://app.example"}})
              .status,
            101)
    << "listed in --allowed-origins";
  expect_error(ws_upgrade_call(port, "/v1/ws?token=admin-token",
                               {{"Origin", "https://evil.example"}}),
               403, "forbidden", "foreign origin");
  expect_error(ws_upgrade_call(port, "/v1/ws?token=admin-token",
                               {{"Origin", "http://127.0.0.1:1"}}),
               403, "forbidden", "another port of the same host");
  auto m = call(verb::get, "/metrics", {}, "admin-token");
  EXPECT_NE(m.body.find("sessionhost_ws_refused_total 5"), std::string::npos)
    << m.body;
}

TEST_F(protocol_auth, websocket_ops_stay_in_the_token_scope) {
  auto mine = create("agent-1", "agent-token");
  auto other = create("other", "admin-token");
  auto other_before = stored_count(other, "admin-token");

  ws_client viewer{proc->port, ws_opts("/v1/ws?token=viewer-token")};
  viewer.send({{"op", "subscribe"}, {"session", other}, {"ref", 1}});
  ASSERT_TRUE(viewer.read_op("subscribed", 1));
  for (auto op : {"send", "attach", "publish", "heartbeat", "detach"}) {
    viewer.send({{"op", op}, {"session", other}, {"data", 1}, {"type", "log"},
                 {"peer", "p"}, {"ref", op}});
    auto e = viewer.read_op("error", op);
    ASSERT_TRUE(e) << op;
    EXPECT_EQ((*e)["code"], "forbidden") << e->dump();
    EXPECT_EQ((*e)["session"], other) << e->dump();
  }
  viewer.send({{"op", "unsubscribe"}, {"session", other}, {"ref", 2}});
  EXPECT_TRUE(viewer.read_op("unsubscribed", 2));

  ws_client agent{proc->port, ws_opts("/v1/ws", "agent-token")};
  agent.send({{"op", "subscribe"}, {"session", other}, {"ref", "x"}});
  auto e = agent.read_op("error", "x");
  ASSERT_TRUE(e);
  EXPECT_EQ((*e)["code"], "forbidden") << e->dump();
  agent.send({{"op", "send"}, {"session", other}, {"data", 1}, {"ref", "y"}});
  e = agent.read_op("error", "y");
  ASSERT_TRUE(e);
  EXPECT_EQ((*e)["code"], "forbidden") << e->dump();
  agent.send({{"op", "subscribe"}, {"session", mine}, {"ref", "ok"}});
  ASSERT_TRUE(agent.read_op("subscribed", "ok"));
  agent.send({{"op", "send"}, {"session", mine}, {"data", "hi"}, {"ref", "s"}});
  auto ack = agent.read_op("ack", "s");
  ASSERT_TRUE(ack);
  EXPECT_GE((*ack)["seq"].get<uint64_t>(), 1u);
  // The refused ops changed nothing in the other session.
  EXPECT_EQ(stored_count(other, "admin-token"), other_before);
}

TEST_F(protocol_test, a_token_limited_to_session_ids) {
  auto a = create();
  auto b = create();
  ASSERT_EQ(proc->terminate(), 0);
  auto file = dir.path + "/tokens";
  std::ofstream{file} << "only-a sessions=" << a << "\n";
  extra = {"--auth-token-file=" + file};
  start();
  EXPECT_EQ(call(verb::get, "/v1/sessions/" + a, {}, "only-a").status, 200);
  EXPECT_EQ(call(verb::post, "/v1/sessions/" + a + "/messages", R"({"data":1})",
                 "only-a")
              .status,
            202);
  expect_error(call(verb::get, "/v1/sessions/" + b, {}, "only-a"), 403,
               "forbidden", "session not listed");
  expect_error(call(verb::post, "/v1/sessions", R"({"type":"echo"})", "only-a"),
               403, "forbidden", "create with an id-limited token");
  auto listed = call(verb::get, "/v1/sessions", {}, "only-a");
  ASSERT_EQ(listed.j["sessions"].size(), 1u) << listed.body;
  ws_client ws{proc->port, ws_opts("/v1/ws", "only-a")};
  ws.send({{"op", "subscribe"}, {"session", b}, {"ref", 1}});
  expect_ws_error(ws, "forbidden", "subscribe outside the ids");
  ws.send({{"op", "subscribe"}, {"session", a}, {"ref", 2}});
  EXPECT_TRUE(ws.read_op("subscribed", 2));
}

TEST(serve_cli_auth, token_files_and_listening_addresses) {
  temp_dir dir;
  auto run = [&](const std::string& args) {
    auto cmd = std::string{SESSIONHOST_EXE} + " serve --data-dir=" + dir.path
               + " " + args + " >/dev/null 2>&1";
    auto st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  auto bad = dir.path + "/bad";
  std::ofstream{bad} << "tok frobnicate\n";
  EXPECT_EQ(run("--listen=127.0.0.1:0 --auth-token-file=" + bad), 2)
    << "unknown word in the token file";
  auto empty = dir.path + "/empty";
  std::ofstream{empty} << "# nothing\n";
  EXPECT_EQ(run("--listen=127.0.0.1:0 --auth-token-file=" + empty), 2);
  auto dup = dir.path + "/dup";
  std::ofstream{dup} << "a\na read-only\n";
  EXPECT_EQ(run("--listen=127.0.0.1:0 --auth-token-file=" + dup), 2);
  EXPECT_EQ(run("--listen=127.0.0.1:0 --auth-token-file=" + dir.path + "/none"),
            2)
    << "missing token file";
  EXPECT_EQ(run("--listen=0.0.0.0:0"), 2) << "non-loopback needs tokens";
  // With a token file it listens on any address.
  auto good = dir.path + "/good";
  std::ofstream{good} << "t\n";
  serve_process p{dir.path, {"--listen=0.0.0.0:0", "--auth-token-file=" + good}};
  EXPECT_EQ(p.first_line().rfind("listening on http://0.0.0.0:", 0), 0u)
    << p.first_line();
  EXPECT_EQ(p.terminate(), 0);
}

// -- publish, idempotency ---------------------------------------------------

TEST_F(protocol_test, a_retried_publish_with_its_key_returns_the_first_seq) {
  auto id = create();
  auto base = stored_count(id);
  auto pub = [&](const json& body) {
    return call(verb::post, "/v1/sessions/" + id + "/events", body.dump());
  };
  auto first = pub({{"type", "log"}, {"data", 1}, {"idempotency_key", "k1"}});
  ASSERT_EQ(first.status, 202) << first.body;
  auto seq = first.j["seq"].get<uint64_t>();
  auto again = pub({{"type", "log"}, {"data", 1}, {"idempotency_key", "k1"}});
  ASSERT_EQ(again.status, 202) << again.body;
  EXPECT_EQ(again.j["seq"], seq);
  auto other = pub({{"type", "log"}, {"data", 2}, {"idempotency_key", "k2"}});
  EXPECT_EQ(other.j["seq"], seq + 1);
  auto unkeyed = pub({{"type", "log"}, {"data", 3}});
  EXPECT_EQ(unkeyed.j["seq"], seq + 2);
  EXPECT_EQ(stored_count(id), base + 3) << "the retry appended nothing";
  expect_error(pub({{"type", "log"}, {"idempotency_key", 5}}), 400,
               "bad_request", "key not a string");
  expect_error(pub({{"type", "log"}, {"idempotency_key", ""}}), 400,
               "bad_request", "empty key");
  expect_error(pub({{"type", "log"}, {"idempotency_key", std::string(300, 'k')}}),
               400, "bad_request", "key too long");

  // Unloaded and loaded again: the key is still known.
  ASSERT_EQ(call(verb::post, "/v1/sessions/" + id + "/unload").status, 200);
  auto reloaded = pub({{"type", "log"}, {"data", 1}, {"idempotency_key", "k1"}});
  ASSERT_EQ(reloaded.status, 202) << reloaded.body;
  EXPECT_EQ(reloaded.j["seq"], seq);
  // And after a restart of the process.
  ASSERT_EQ(proc->terminate(), 0);
  start();
  auto restarted = pub({{"type", "log"}, {"data", 2}, {"idempotency_key", "k2"}});
  ASSERT_EQ(restarted.status, 202) << restarted.body;
  EXPECT_EQ(restarted.j["seq"], seq + 1);
  EXPECT_EQ(stored_count(id), base + 3);
}

TEST_F(protocol_test, websocket_publish_is_for_the_attached_peer_and_idempotent) {
  auto id = create();
  auto base = stored_count(id);
  ws_client ws{proc->port};
  ws.send({{"op", "publish"}, {"session", id}, {"type", "log"}, {"ref", 1}});
  expect_ws_error(ws, "forbidden", "publish without attach");
  EXPECT_EQ(stored_count(id), base);
  ws.send({{"op", "attach"}, {"session", id}, {"peer", "producer"}, {"ref", 2}});
  ASSERT_TRUE(ws.read_op("ack", 2));
  auto publish = [&](const std::string& key, int ref) -> uint64_t {
    ws.send({{"op", "publish"}, {"session", id}, {"type", "block:delta"},
             {"data", {{"delta", "x"}}}, {"idempotency_key", key}, {"ref", ref}});
    auto a = ws.read_op("ack", ref);
    EXPECT_TRUE(a) << ref;
    return a ? (*a)["seq"].get<uint64_t>() : 0;
  };
  auto s1 = publish("p-1", 3);
  EXPECT_EQ(publish("p-1", 4), s1);
  EXPECT_EQ(publish("p-2", 5), s1 + 1);
  ws.send({{"op", "publish"}, {"session", id}, {"type", "log"},
           {"idempotency_key", 7}, {"ref", 6}});
  expect_ws_error(ws, "bad_request", "key not a string");
  auto events = call(verb::get, "/v1/sessions/" + id + "/events").j["events"];
  size_t deltas = 0;
  for (auto& e : events)
    deltas += e["type"] == "block:delta" ? 1 : 0;
  EXPECT_EQ(deltas, 2u);
  // Another connection cannot publish while not attached.
  ws_client other{proc->port};
  other.send({{"op", "publish"}, {"session", id}, {"type", "log"}, {"ref", 1}});
  expect_ws_error(other, "forbidden", "publish from a second connection");
  // After detach the first one cannot either.
  ws.send({{"op", "detach"}, {"session", id}, {"ref", 8}});
  ASSERT_TRUE(ws.read_op("ack", 8));
  ws.send({{"op", "publish"}, {"session", id}, {"type", "log"}, {"ref", 9}});
  expect_ws_error(ws, "forbidden", "publish after detach");
}

TEST_F(protocol_test, a_publish_frame_is_taken_as_sent_and_bad_ones_change_nothing) {
  auto id = create();
  ws_client ws{proc->port};
  ws.send({{"op", "attach"}, {"session", id}, {"peer", "producer"}, {"ref", 1}});
  ASSERT_TRUE(ws.read_op("ack", 1));
  ws_client sub{proc->port};
  sub.send({{"op", "subscribe"}, {"session", id}, {"ref", 1}});
  ASSERT_TRUE(sub.read_op("subscribed", 1));
  auto base = stored_count(id);
  // Fields in any order, spaces, refs of every kind, a null key: the ack
  // echoes the ref, and `data` reaches subscribers as it was sent (its
  // keys in their order).
  const std::string data = R"({"b" : 1,  "a":[true, null, "é\u00e9"]})";
  const std::vector<std::string> refs{R"("r\"1")", "1.5", R"({"k" : [1, 2]})",
                                      "-3", "18446744073709551615"};
  for (auto& ref : refs) {
    ws.send_text(R"( {"ref": )" + ref + R"(, "data": )" + data
                 + R"(, "type":"log", "idempotency_key": null, "op":"publish",)"
                 + R"( "session":")" + id + "\"} ");
    auto a = ws.read_op("ack", json::parse(ref));
    ASSERT_TRUE(a) << ref;
    EXPECT_TRUE((*a)["seq"].is_number_unsigned()) << a->dump();
    EXPECT_EQ((*a)["session"], id);
  }
  for (size_t i = 0; i < refs.size(); ++i) {
    bool binary = false;
    std::optional<std::string> raw;
    do
      raw = sub.read_raw(binary);
    while (raw && raw->find("\"op\":\"event\"") == std::string::npos);
    ASSERT_TRUE(raw);
    EXPECT_NE(raw->find(R"("data":)" + data), std::string::npos) << *raw;
    auto e = json::parse(*raw);
    EXPECT_EQ(e["data"], json::parse(data));
    EXPECT_EQ(e["type"], "log");
  }
  EXPECT_EQ(stored_count(id), base + refs.size());
  // An escaped key still means the same key.
  ws.send_text(R"({"\u006fp":"publish","session":")" + id
               + R"(","type":"log","ref":7})");
  ASSERT_TRUE(ws.read_op("ack", 7));
  // Bad frames: a clear error each, nothing stored.
  ws.send_text(R"({"op":"publish","session":")" + id
               + R"(","type":"log","data":{"a":},"ref":8})");
  expect_ws_error(ws, "bad_request", "data not JSON");
  ws.send_text(std::string(R"({"op":"publish","session":")") + id
               + R"(","type":"log","ref":9})" + std::string(1, '\0') + "x");
  expect_ws_error(ws, "bad_request", "bytes after a NUL");
  ws.send_text(R"({"op":"publish","session":")" + id
               + R"(","type":"","ref":10})");
  expect_ws_error(ws, "bad_request", "empty type");
  ws.send_text(R"({"op":"publish","session":")" + id
               + R"(","type":"log","idempotency_key":"","ref":11})");
  expect_ws_error(ws, "bad_request", "empty key");
  ws.send_text(R"({"op":"publish","session":")" + id
               + R"(","type":"log","data":"\ud800","ref":12})");
  expect_ws_error(ws, "bad_request", "lone surrogate");
  EXPECT_EQ(stored_count(id), base + refs.size() + 1);
}

// -- unloaded notice, metrics ------------------------------------------------

TEST_F(protocol_test, an_unloaded_session_tells_its_subscribers_and_stays_unloaded) {
  auto id = create();
  ASSERT_EQ(call(verb::post, "/v1/sessions/" + id + "/messages",
                 R"({"data":"x"})")
              .status,
            202);
  auto last = call(verb::get, "/v1/sessions/" + id).j["last_seq"].get<uint64_t>();
  ws_client ws{proc->port};
  ws.send({{"op", "subscribe"}, {"session", id}, {"from_seq", 0}, {"ref", 1}});
  ASSERT_TRUE(ws.read_op("subscribed", 1));
  auto u = call(verb::post, "/v1/sessions/" + id + "/unload");
  ASSERT_EQ(u.status, 200) << u.body;
  auto note = ws.read_op("unloaded");
  ASSERT_TRUE(note);
  EXPECT_EQ((*note)["session"], id);
  EXPECT_EQ((*note)["last_seq"], last);
  // Every event up to last_seq came before the notice, in order.
  uint64_t seen = 0;
  for (auto& f : ws.skipped)
    if (f["op"] == "event") {
      EXPECT_EQ(f["seq"].get<uint64_t>(), seen + 1);
      seen = f["seq"].get<uint64_t>();
    }
  EXPECT_EQ(seen, last);
  // Nothing loads it again behind the client's back.
  EXPECT_FALSE(ws.read(std::chrono::milliseconds(500)));
  auto g = call(verb::get, "/v1/sessions/" + id);
  EXPECT_FALSE(g.j["loaded"].get<bool>()) << g.body;
  auto m = call(verb::get, "/metrics");
  EXPECT_NE(m.body.find("sessionhost_sessions_loaded 0"), std::string::npos)
    << m.body;
}

/// The cumulative bucket counts of histogram `h` in a /metrics body, in
/// order, and its _count (-1 when missing).
std::pair<std::vector<uint64_t>, long> histogram_of(const std::string& body,
                                                    const std::string& h) {
  std::vector<uint64_t> cum;
  std::istringstream in{body};
  long count = -1;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(h + "_bucket{le=\"", 0) == 0)
      cum.push_back(std::stoull(line.substr(line.rfind(' ') + 1)));
    else if (line.rfind(h + "_count ", 0) == 0)
      count = std::stol(line.substr(line.rfind(' ') + 1));
  }
  return {cum, count};
}

TEST_F(protocol_test, metrics_show_where_a_publish_spends_its_time) {
  auto id = create();
  ws_client producer{proc->port};
  producer.send(
    {{"op", "attach"}, {"session", id}, {"peer", "producer"}, {"ref", 1}});
  ASSERT_TRUE(producer.read_op("ack", 1));
  // Subscribed after the attach's events were durable: it gets those from
  // the store (not counted), then the live ones below.
  ws_client sub{proc->port};
  sub.send({{"op", "subscribe"}, {"session", id}, {"ref", 1}});
  ASSERT_TRUE(sub.read_op("subscribed", 1));
  auto before = call(verb::get, "/metrics");
  ASSERT_EQ(before.status, 200);
  auto durable0 =
    histogram_of(before.body, "sessionhost_publish_to_durable_seconds").second;
  auto sent0 =
    histogram_of(before.body, "sessionhost_publish_to_send_seconds").second;
  auto commits0 =
    histogram_of(before.body, "sessionhost_store_commit_seconds").second;
  ASSERT_GE(commits0, 0) << before.body;
  ASSERT_GE(durable0, 0) << before.body; // attaching emitted events already
  ASSERT_GE(sent0, 0) << before.body;
  // Three over REST, four over the WebSocket: seven durable, seven sent to
  // the one subscriber, four acks written.
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(call(verb::post, "/v1/sessions/" + id + "/events",
                   R"({"type":"log"})")
                .status,
              202);
  uint64_t last = 0;
  for (int i = 0; i < 4; ++i) {
    producer.send({{"op", "publish"}, {"session", id}, {"type", "log"},
                   {"ref", 10 + i}});
    auto a = producer.read_op("ack", 10 + i);
    ASSERT_TRUE(a) << i;
    last = (*a)["seq"].get<uint64_t>();
  }
  // The replayed events first, then the seven live ones, up to the last.
  uint64_t seen = 0;
  for (int i = 0; i < 50 && seen < last; ++i) {
    auto e = sub.read_op("event");
    ASSERT_TRUE(e) << i;
    seen = (*e)["seq"].get<uint64_t>();
  }
  ASSERT_EQ(seen, last);
  auto m = call(verb::get, "/metrics");
  ASSERT_EQ(m.status, 200);
  struct expected {
    std::string name;
    long count;
  };
  for (auto& [h, count] :
       {expected{"sessionhost_publish_to_durable_seconds", durable0 + 7},
        expected{"sessionhost_publish_to_send_seconds", sent0 + 7},
        expected{"sessionhost_publish_to_ack_seconds", 4}}) {
    EXPECT_NE(m.body.find("# TYPE " + h + " histogram"), std::string::npos)
      << h;
    // Fine buckets where a publish's stages spend their time.
    for (auto le : {"5e-05", "0.0001", "0.00025", "0.0005", "0.001",
                    "0.00125", "0.002", "0.005"})
      EXPECT_NE(m.body.find(h + "_bucket{le=\"" + le + "\"} "),
                std::string::npos)
        << h << " le=" << le << "\n" << m.body;
    auto [cum, n] = histogram_of(m.body, h);
    EXPECT_EQ(n, count) << h << "\n" << m.body;
    ASSERT_EQ(cum.size(), 31u) << h;
    EXPECT_TRUE(std::is_sorted(cum.begin(), cum.end())) << h; // cumulative
    EXPECT_EQ(static_cast<long>(cum.back()), count) << h; // +Inf: every one
    EXPECT_NE(m.body.find(h + "_sum "), std::string::npos) << h;
  }
  // The store's share: one commit or more for the seven (group commit), in
  // the same fine buckets.
  auto [commits, n] = histogram_of(m.body, "sessionhost_store_commit_seconds");
  ASSERT_EQ(commits.size(), 31u);
  EXPECT_TRUE(std::is_sorted(commits.begin(), commits.end()));
  EXPECT_GE(n, commits0 + 1) << m.body;
  EXPECT_LE(n, commits0 + 7) << m.body;
  EXPECT_NE(m.body.find("sessionhost_ws_slow_closed_total 0"), std::string::npos);
}

// -- protobuf frames ------------------------------------------------------------

std::string encode(const v1::ClientOp& op) { return op.SerializeAsString(); }

/// The next frame as a ServerOp (binary frames only).
std::optional<v1::ServerOp> read_proto(ws_client& ws) {
  bool binary = false;
  auto raw = ws.read_raw(binary);
  if (!raw) {
    ADD_FAILURE() << "no frame";
    return std::nullopt;
  }
  EXPECT_TRUE(binary) << "text frame on a proto connection: " << *raw;
  v1::ServerOp op;
  if (!op.ParseFromString(*raw)) {
    ADD_FAILURE() << "not a ServerOp";
    return std::nullopt;
  }
  return op;
}

/// Reads ServerOps until one with `op` (and `ref` when given).
std::optional<v1::ServerOp> read_proto_op(ws_client& ws, const std::string& op,
                                          const std::string& ref = {},
                                          std::vector<v1::ServerOp>* skipped
                                          = nullptr) {
  for (int i = 0; i < 1000; ++i) {
    auto f = read_proto(ws);
    if (!f)
      return std::nullopt;
    if (f->op() == op && (ref.empty() || f->ref() == ref))
      return f;
    if (skipped)
      skipped->push_back(*f);
  }
  return std::nullopt;
}

TEST_F(protocol_test, protobuf_frames_with_the_subprotocol) {
  auto id = create();
  ASSERT_EQ(call(verb::post, "/v1/sessions/" + id + "/messages",
                 R"({"data":"hello"})")
              .status,
            202);
  auto stored = call(verb::get, "/v1/sessions/" + id + "/events").j["events"];
  ws_client ws{proc->port, ws_opts("/v1/ws", "", "sessionhost.v1.proto")};
  EXPECT_EQ(ws.subprotocol, "sessionhost.v1.proto");

  v1::ClientOp sub;
  sub.set_op("subscribe");
  sub.set_session(id);
  sub.set_from_seq(0);
  sub.set_ref("\"s\"");
  ws.send_binary(encode(sub));
  auto subscribed = read_proto_op(ws, "subscribed", "\"s\"");
  ASSERT_TRUE(subscribed);
  EXPECT_EQ(subscribed->session(), id);
  EXPECT_EQ(subscribed->last_seq(), stored.size());
  for (auto& want : stored) {
    auto e = read_proto_op(ws, "event");
    ASSERT_TRUE(e);
    ASSERT_TRUE(e->has_event());
    EXPECT_EQ(e->event().session_id(), id);
    EXPECT_EQ(e->event().seq(), want["seq"].get<uint64_t>());
    EXPECT_EQ(e->event().type(), want["type"].get<std::string>());
    EXPECT_EQ(json::parse(e->event().data()), want["data"]);
    EXPECT_EQ(e->event().ts(), want["ts"].get<int64_t>());
  }

  // Malformed protobuf, a text frame, an unknown op: errors, still usable.
  ws.send_binary(std::string("\x00\xff\x10garbage", 10));
  auto bad = read_proto_op(ws, "error");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->code(), "bad_request") << bad->message();
  ws.send_text(R"({"op":"subscribe","session":"x"})");
  bad = read_proto_op(ws, "error");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->code(), "bad_request") << bad->message();
  v1::ClientOp fly;
  fly.set_op("fly");
  fly.set_session(id);
  fly.set_ref("7");
  ws.send_binary(encode(fly));
  bad = read_proto_op(ws, "error", "7");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->code(), "bad_request");
  v1::ClientOp nodata;
  nodata.set_op("send");
  nodata.set_session(id);
  nodata.set_data("{not json");
  ws.send_binary(encode(nodata));
  bad = read_proto_op(ws, "error");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->code(), "bad_request");

  // attach and an idempotent publish, acknowledged in protobuf, and the live
  // event arrives as the stored envelope.
  v1::ClientOp attach;
  attach.set_op("attach");
  attach.set_session(id);
  attach.set_peer("producer");
  attach.set_ref("1");
  ws.send_binary(encode(attach));
  auto attached = read_proto_op(ws, "ack", "1");
  ASSERT_TRUE(attached);
  EXPECT_EQ(attached->peer(), "producer");
  EXPECT_TRUE(attached->peer_connected());
  v1::ClientOp pub;
  pub.set_op("publish");
  pub.set_session(id);
  pub.set_type("block:delta");
  pub.set_data(R"({"delta":"hi"})");
  pub.set_idempotency_key("once");
  pub.set_ref("2");
  ws.send_binary(encode(pub));
  std::vector<v1::ServerOp> skipped;
  auto ack = read_proto_op(ws, "ack", "2", &skipped);
  ASSERT_TRUE(ack);
  auto seq = ack->seq();
  EXPECT_GT(seq, stored.size());
  pub.set_ref("3");
  ws.send_binary(encode(pub));
  auto ack2 = read_proto_op(ws, "ack", "3", &skipped);
  ASSERT_TRUE(ack2);
  EXPECT_EQ(ack2->seq(), seq) << "the retry got the first seq";
  bool got = false;
  for (auto& f : skipped)
    got = got || (f.op() == "event" && f.event().seq() == seq);
  while (!got) {
    auto e = read_proto_op(ws, "event");
    ASSERT_TRUE(e);
    got = e->event().seq() == seq;
    if (got) {
      EXPECT_EQ(e->event().type(), "block:delta");
      EXPECT_EQ(e->event().data(), R"({"delta":"hi"})");
      EXPECT_EQ(e->event().idempotency_key(), "once");
    }
  }
  EXPECT_EQ(call(verb::get, "/v1/sessions/" + id).j["last_seq"], seq);
}

TEST_F(protocol_test, without_the_subprotocol_binary_frames_are_refused) {
  ws_client ws{proc->port, ws_opts("/v1/ws", "", "something.else")};
  EXPECT_EQ(ws.subprotocol, "");
  ws.send_binary("\x0a\x03" "abc");
  expect_ws_error(ws, "bad_request", "binary on a JSON connection");
  ws.send({{"op", "subscribe"}, {"session", "nope"}, {"ref", 1}});
  expect_ws_error(ws, "not_found", "still usable");
}

} // namespace
