// End-to-end tests of `sessionhost serve`: the real process, real sockets,
// REST and WebSocket as a client uses them (docs/PROTOCOL.md). Every wait is
// bounded: reads time out, loops have a frame budget.
#include "serve_fixture.hpp"

#include <gtest/gtest.h>

using namespace sessionhost::test;
using http::verb;

namespace {

class serve_test : public serve_fixture {
protected:
  json create(const std::string& role = "") {
    json body{{"type", "echo"}};
    if (!role.empty())
      body["role"] = role;
    auto r = call(verb::post, "/v1/sessions", body.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    return r.j;
  }

  uint64_t post_message(const std::string& id, const json& data) {
    auto r = call(verb::post, "/v1/sessions/" + id + "/messages",
                  json{{"data", data}}.dump());
    EXPECT_EQ(r.status, 202) << r.body;
    return r.j.value("seq", uint64_t{0});
  }

  std::vector<json> stored_events(const std::string& id, uint64_t from = 0) {
    auto r = call(verb::get, "/v1/sessions/" + id + "/events?from_seq="
                               + std::to_string(from) + "&limit=10000");
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<json> out;
    for (auto& e : r.j["events"])
      out.push_back(e);
    return out;
  }

  uint64_t last_seq(const std::string& id) {
    return call(verb::get, "/v1/sessions/" + id).j.value("last_seq", uint64_t{0});
  }

};

/// Reads `n` events of `session` and checks they continue `last` with no gap.
void expect_events(ws_client& ws, const std::string& session, uint64_t& last,
                   size_t n) {
  for (size_t i = 0; i < n; ++i) {
    auto e = ws.read_op("event");
    ASSERT_TRUE(e) << "event " << i << " of " << n << " missing";
    ASSERT_EQ((*e)["session"], session);
    ASSERT_EQ((*e)["seq"].get<uint64_t>(), last + 1) << e->dump();
    last = (*e)["seq"].get<uint64_t>();
  }
}

} // namespace

TEST_F(serve_test, first_line_names_the_bound_port) {
  EXPECT_EQ(proc->first_line(),
            "listening on http://127.0.0.1:" + std::to_string(proc->port));
  auto h = call(verb::get, "/healthz");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.j["status"], "ok");
}

TEST_F(serve_test, session_routes_do_what_they_say) {
  auto r = call(verb::post, "/v1/sessions",
                R"({"type":"echo","role":"agent-1","metadata":{"k":"v"}})");
  ASSERT_EQ(r.status, 201) << r.body;
  auto id = r.j["id"].get<std::string>();
  EXPECT_EQ(r.j["type"], "echo");
  EXPECT_EQ(r.j["role"], "agent-1");
  EXPECT_EQ(r.j["state"], "ACTIVE");
  EXPECT_EQ(r.j["metadata"], (json{{"k", "v"}}));
  EXPECT_TRUE(r.j["peer"].is_null());
  EXPECT_EQ(r.j["message_count"], 0);
  EXPECT_TRUE(r.j["loaded"].get<bool>());
  EXPECT_EQ(r.j["created_at"].get<std::string>().back(), 'Z');

  auto g = call(verb::get, "/v1/sessions/" + id);
  ASSERT_EQ(g.status, 200);
  EXPECT_EQ(g.j["id"], id);

  // messages → 202 {"seq"}, and the echo's events are stored
  auto seq = post_message(id, json{{"text", "hi"}});
  EXPECT_GE(seq, 1u);
  auto p = call(verb::post, "/v1/sessions/" + id + "/events",
                R"({"type":"log","data":{"line":"x"}})");
  ASSERT_EQ(p.status, 202) << p.body;
  auto pseq = p.j["seq"].get<uint64_t>();
  EXPECT_GT(pseq, seq);
  auto all = stored_events(id);
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.back()["seq"], pseq);
  EXPECT_EQ(all.back()["type"], "log");
  EXPECT_EQ(all.back()["data"], (json{{"line", "x"}}));
  EXPECT_EQ(all.back()["session"], id);
  EXPECT_TRUE(all.back()["ts"].is_number_integer());
  for (size_t i = 0; i < all.size(); ++i)
    EXPECT_EQ(all[i]["seq"], i + 1);
  auto tail = stored_events(id, pseq - 1);
  ASSERT_EQ(tail.size(), 1u);
  EXPECT_EQ(tail[0]["seq"], pseq);
  auto limited = call(verb::get, "/v1/sessions/" + id + "/events?limit=2");
  EXPECT_EQ(limited.j["events"].size(), 2u);
  EXPECT_EQ(call(verb::get, "/v1/sessions/" + id).j["message_count"], 1);

  // list with filters and pages
  create();
  create();
  auto l = call(verb::get, "/v1/sessions?limit=2");
  ASSERT_EQ(l.status, 200) << l.body;
  EXPECT_EQ(l.j["sessions"].size(), 2u);
  ASSERT_TRUE(l.j["next_cursor"].is_string());
  auto l2 = call(verb::get, "/v1/sessions?limit=2&cursor="
                              + l.j["next_cursor"].get<std::string>());
  EXPECT_EQ(l2.j["sessions"].size(), 1u);
  EXPECT_TRUE(l2.j["next_cursor"].is_null());
  auto byrole = call(verb::get, "/v1/sessions?role=agent-1&state=ACTIVE&type=echo");
  ASSERT_EQ(byrole.j["sessions"].size(), 1u);
  EXPECT_EQ(byrole.j["sessions"][0]["id"], id);
  EXPECT_EQ(call(verb::get, "/v1/sessions?state=CLEANED").j["sessions"].size(), 0u);

  // unload / load
  auto u = call(verb::post, "/v1/sessions/" + id + "/unload");
  ASSERT_EQ(u.status, 200) << u.body;
  auto gu = call(verb::get, "/v1/sessions/" + id);
  EXPECT_FALSE(gu.j["loaded"].get<bool>()) << gu.body;
  EXPECT_EQ(gu.j["last_seq"], pseq);
  auto ld = call(verb::post, "/v1/sessions/" + id + "/load");
  ASSERT_EQ(ld.status, 200) << ld.body;
  EXPECT_TRUE(call(verb::get, "/v1/sessions/" + id).j["loaded"].get<bool>());

  // metrics
  auto m = call(verb::get, "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("sessionhost_sessions_loaded "), std::string::npos);
  EXPECT_NE(m.body.find("sessionhost_events_persisted_total "), std::string::npos);

  // terminate, then again: an invalid transition
  auto d = call(verb::delete_, "/v1/sessions/" + id + "?reason=done");
  ASSERT_EQ(d.status, 200) << d.body;
  EXPECT_TRUE(d.j["state"] == "TERMINATING" || d.j["state"] == "CLEANED")
    << d.body;
  auto d2 = call(verb::delete_, "/v1/sessions/" + id);
  EXPECT_EQ(d2.status, 409) << d2.body;
  auto pm = call(verb::post, "/v1/sessions/" + id + "/messages", R"({"data":1})");
  EXPECT_EQ(pm.status, 409) << pm.body;
}

TEST_F(serve_test, bad_requests_get_json_errors_with_the_right_status) {
  auto id = create("role-x")["id"].get<std::string>();
  struct row {
    verb m;
    std::string target, body;
    int status;
    std::string code;
  };
  std::vector<row> rows{
    {verb::get, "/v1/sessions/00000000-0000-4000-8000-000000000000", "", 404, "not_found"},
    {verb::get, "/v1/sessions/not-an-id", "", 404, "not_found"},
    {verb::get, "/v1/sessions/not-an-id/events", "", 404, "not_found"},
    {verb::post, "/v1/sessions/not-an-id/messages", R"({"data":1})", 404, "not_found"},
    {verb::delete_, "/v1/sessions/not-an-id", "", 404, "not_found"},
    {verb::post, "/v1/sessions/not-an-id/unload", "", 404, "not_found"},
    {verb::get, "/v1/nothing", "", 404, "not_found"},
    {verb::post, "/v1/sessions", "{not json", 400, "bad_request"},
    {verb::post, "/v1/sessions", "[1,2]", 400, "bad_request"},
    {verb::post, "/v1/sessions", R"({"type":5})", 400, "bad_request"},
    {verb::post, "/v1/sessions", R"({"role":"r"})", 400, "bad_request"},
    {verb::post, "/v1/sessions", R"({"type":"echo","role":7})", 400, "bad_request"},
    {verb::post, "/v1/sessions", R"({"type":"echo","metadata":{"a":1}})", 400, "bad_request"},
    {verb::post, "/v1/sessions", R"({"type":"echo","metadata":"x"})", 400, "bad_request"},
    {verb::post, "/v1/sessions", R"({"type":"no-such-type"})", 400, "bad_request"},
    {verb::post, "/v1/sessions", R"({"type":"echo","role":"role-x"})", 409, "conflict"},
    {verb::post, "/v1/sessions/" + id + "/messages", R"({"nodata":1})", 400, "bad_request"},
    {verb::post, "/v1/sessions/" + id + "/messages", "nope", 400, "bad_request"},
    {verb::post, "/v1/sessions/" + id + "/events", R"({"type":3})", 400, "bad_request"},
    {verb::get, "/v1/sessions?state=SLEEPING", "", 400, "bad_request"},
    {verb::get, "/v1/sessions?limit=0", "", 400, "bad_request"},
    {verb::get, "/v1/sessions?limit=abc", "", 400, "bad_request"},
    {verb::get, "/v1/sessions/" + id + "/events?from_seq=-1", "", 400, "bad_request"},
    {verb::put, "/v1/sessions/" + id, "", 405, "method_not_allowed"},
  };
  for (auto& r : rows) {
    auto res = call(r.m, r.target, r.body);
    EXPECT_EQ(res.status, r.status) << r.target << " " << r.body << " → " << res.body;
    EXPECT_EQ(res.code(), r.code) << r.target << " " << r.body << " → " << res.body;
    EXPECT_TRUE(res.j["error"]["message"].is_string()) << res.body;
  }
  // Over the body limit (1 MiB by default).
  auto big = call(verb::post, "/v1/sessions/" + id + "/messages",
                  R"({"data":")" + std::string(2 << 20, 'x') + R"("})");
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(big.code(), "too_large");
  // Nothing of that changed the session.
  EXPECT_EQ(call(verb::get, "/v1/sessions/" + id).j["message_count"], 0);
  EXPECT_EQ(call(verb::get, "/v1/sessions?role=role-x").j["sessions"].size(), 1u);
}

TEST_F(serve_test, subscribe_replays_then_goes_live_and_resumes_without_gap_or_dup) {
  auto id = create()["id"].get<std::string>();
  post_message(id, "one");
  post_message(id, "two");
  auto before = last_seq(id);
  ASSERT_GT(before, 2u);
  uint64_t last = 0;
  {
    ws_client ws{proc->port};
    ws.send({{"op", "subscribe"}, {"session", id}, {"from_seq", 0}, {"ref", 1}});
    auto sub = ws.read_op("subscribed", 1);
    ASSERT_TRUE(sub);
    EXPECT_EQ((*sub)["last_seq"], before);
    expect_events(ws, id, last, before);
    // Live: a message sent over the socket, acknowledged with its seq.
    ws.send({{"op", "send"}, {"session", id}, {"data", {{"t", 3}}}, {"ref", "m3"}});
    auto ack = ws.read_op("ack", "m3");
    ASSERT_TRUE(ack);
    EXPECT_EQ((*ack)["seq"].get<uint64_t>(), last + 1);
    for (auto& s : ws.skipped) // events that came before the ack
      if (s["op"] == "event") {
        ASSERT_EQ(s["seq"].get<uint64_t>(), last + 1);
        last = s["seq"];
      }
    ws.skipped.clear();
    auto target = last_seq(id);
    expect_events(ws, id, last, target - last);
    ws.close();
  }
  // While disconnected.
  post_message(id, "four");
  auto now = last_seq(id);
  ASSERT_GT(now, last);
  ws_client ws{proc->port};
  ws.send({{"op", "subscribe"}, {"session", id}, {"from_seq", last}});
  ASSERT_TRUE(ws.read_op("subscribed"));
  expect_events(ws, id, last, now - last);
  // A sentinel: nothing (no duplicate) between the last event and its answer.
  ws.send({{"op", "nope"}, {"session", id}, {"ref", "sentinel"}});
  auto err = ws.read();
  ASSERT_TRUE(err);
  EXPECT_EQ((*err)["op"], "error") << err->dump();
  EXPECT_EQ((*err)["ref"], "sentinel");
  // Unsubscribe: later events do not arrive.
  ws.send({{"op", "unsubscribe"}, {"session", id}, {"ref", 2}});
  ASSERT_TRUE(ws.read_op("unsubscribed", 2));
  post_message(id, "five");
  ws.send({{"op", "nope"}, {"session", id}, {"ref", "s2"}});
  auto err2 = ws.read();
  ASSERT_TRUE(err2);
  EXPECT_EQ((*err2)["ref"], "s2") << err2->dump();
}

TEST_F(serve_test, subscribe_without_from_seq_gets_only_new_events) {
  auto id = create()["id"].get<std::string>();
  post_message(id, "old");
  ws_client ws{proc->port};
  // Publishing is for the attached peer.
  ws.send({{"op", "attach"}, {"session", id}, {"peer", "producer"}, {"ref", "a"}});
  ASSERT_TRUE(ws.read_op("ack", "a"));
  auto before = last_seq(id);
  ws.send({{"op", "subscribe"}, {"session", id}});
  auto sub = ws.read_op("subscribed");
  ASSERT_TRUE(sub);
  EXPECT_EQ((*sub)["last_seq"], before);
  ws.send({{"op", "publish"}, {"session", id}, {"type", "log"},
           {"data", {{"x", 1}}}, {"ref", "p"}});
  // The event and the ack, in either order.
  std::optional<json> e, ack;
  for (int i = 0; i < 2; ++i) {
    auto f = ws.read();
    ASSERT_TRUE(f);
    ((*f)["op"] == "event" ? e : ack) = f;
  }
  ASSERT_TRUE(e && ack);
  EXPECT_EQ((*e)["seq"], before + 1);
  EXPECT_EQ((*e)["type"], "log");
  EXPECT_EQ((*e)["data"], (json{{"x", 1}}));
  EXPECT_EQ((*ack)["op"], "ack");
  EXPECT_EQ((*ack)["ref"], "p");
  EXPECT_EQ((*ack)["seq"], before + 1);
}

TEST_F(serve_test, two_clients_on_two_sessions_see_only_their_own) {
  auto a = create()["id"].get<std::string>();
  auto b = create()["id"].get<std::string>();
  ws_client wa{proc->port}, wb{proc->port};
  wa.send({{"op", "subscribe"}, {"session", a}, {"from_seq", 0}});
  wb.send({{"op", "subscribe"}, {"session", b}, {"from_seq", 0}});
  ASSERT_TRUE(wa.read_op("subscribed"));
  ASSERT_TRUE(wb.read_op("subscribed"));
  for (int i = 0; i < 3; ++i) {
    post_message(a, i);
    post_message(b, i);
  }
  uint64_t la = 0, lb = 0;
  expect_events(wa, a, la, last_seq(a));
  expect_events(wb, b, lb, last_seq(b));
  for (auto* w : {&wa, &wb}) {
    w->send({{"op", "nope"}, {"session", "x"}, {"ref", "end"}});
    auto end = w->read();
    ASSERT_TRUE(end);
    EXPECT_EQ((*end)["ref"], "end") << "no stray event: " << end->dump();
  }
}

TEST_F(serve_test, attach_heartbeat_detach_and_a_dropped_socket_is_connection_lost) {
  auto id = create()["id"].get<std::string>();
  {
    ws_client ws{proc->port};
    ws.send({{"op", "attach"}, {"session", id}, {"peer", "user-1"}, {"ref", 1}});
    auto a = ws.read_op("ack", 1);
    ASSERT_TRUE(a) << (ws.skipped.empty() ? "" : ws.skipped.back().dump());
    EXPECT_EQ((*a)["peer"], "user-1");
    EXPECT_TRUE((*a)["peer_connected"].get<bool>());
    EXPECT_EQ(call(verb::get, "/v1/sessions/" + id).j["peer"], "user-1");
    ws.send({{"op", "heartbeat"}, {"session", id}, {"ref", 2}});
    auto hb = ws.read_op("ack", 2);
    ASSERT_TRUE(hb);
    EXPECT_TRUE((*hb)["ts"].is_number_integer());
    ws.send({{"op", "detach"}, {"session", id}, {"ref", 3}});
    auto d = ws.read_op("ack", 3);
    ASSERT_TRUE(d);
    EXPECT_FALSE((*d)["peer_connected"].get<bool>());
    // attach again, then drop the TCP connection without a close frame
    ws.send({{"op", "attach"}, {"session", id}, {"peer", "user-1"}, {"ref", 4}});
    ASSERT_TRUE(ws.read_op("ack", 4));
    ws.drop();
  }
  std::vector<std::string> reasons;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    reasons.clear();
    for (auto& e : stored_events(id))
      if (e["type"] == "session_close")
        reasons.push_back(e["data"].value("reason", ""));
    if (reasons.size() >= 2)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(reasons.size(), 2u);
  EXPECT_EQ(reasons[0], "manual");
  EXPECT_EQ(reasons[1], "connection_lost");
}

TEST_F(serve_test, the_old_socket_of_a_peer_that_reattached_elsewhere_is_no_peer) {
  auto id = create()["id"].get<std::string>();
  // The answer to `ref`, whatever its op.
  auto answer = [](ws_client& ws, int ref) -> json {
    for (int i = 0; i < 1000; ++i) {
      auto j = ws.read();
      if (!j)
        return nullptr;
      if ((*j)["ref"] == ref)
        return *j;
    }
    return nullptr;
  };
  ws_client first{proc->port};
  first.send({{"op", "attach"}, {"session", id}, {"peer", "user-1"}, {"ref", 1}});
  ASSERT_EQ(answer(first, 1).value("op", ""), "ack");
  // The same identity on a second socket: a reconnect; the first socket
  // stays open but is no longer the peer's.
  ws_client second{proc->port};
  second.send({{"op", "attach"}, {"session", id}, {"peer", "user-1"}, {"ref", 2}});
  auto back = answer(second, 2);
  ASSERT_EQ(back.value("op", ""), "ack") << back.dump();
  EXPECT_EQ(back["reconnects"], 1);
  auto stored = stored_events(id).size();

  first.send({{"op", "publish"}, {"session", id}, {"type", "log"},
              {"data", {{"text", "stale"}}}, {"ref", 3}});
  first.send({{"op", "heartbeat"}, {"session", id}, {"ref", 4}});
  first.send({{"op", "detach"}, {"session", id}, {"ref", 5}});
  for (int ref : {3, 4, 5}) {
    auto r = answer(first, ref);
    EXPECT_EQ(r.value("op", ""), "error") << "ref " << ref << ": " << r.dump();
    EXPECT_EQ(r.value("code", ""), "forbidden") << "ref " << ref;
  }
  EXPECT_EQ(stored_events(id).size(), stored) << "refusals change nothing";
  auto info = call(verb::get, "/v1/sessions/" + id).j;
  EXPECT_EQ(info["peer"], "user-1");
  EXPECT_TRUE(info["peer_connected"].get<bool>());

  // The second socket is the peer's.
  second.send({{"op", "publish"}, {"session", id}, {"type", "log"},
               {"data", {{"text", "fresh"}}}, {"ref", 6}});
  auto ok = answer(second, 6);
  ASSERT_EQ(ok.value("op", ""), "ack") << ok.dump();
  EXPECT_EQ(ok["seq"], stored + 1);
  second.send({{"op", "detach"}, {"session", id}, {"ref", 7}});
  EXPECT_EQ(answer(second, 7).value("op", ""), "ack");
}

TEST_F(serve_test, bad_frames_get_error_ops_and_the_connection_keeps_working) {
  auto id = create()["id"].get<std::string>();
  // A bystander subscribed before the bad frames keeps being served.
  auto base = last_seq(id);
  ws_client other{proc->port};
  other.send({{"op", "subscribe"}, {"session", id}, {"ref", "b"}});
  ASSERT_TRUE(other.read_op("subscribed", "b"));
  ws_client ws{proc->port};
  auto expect_error = [&](const std::string& what, const std::string& code) {
    auto e = ws.read();
    ASSERT_TRUE(e) << what;
    EXPECT_EQ((*e)["op"], "error") << what << ": " << e->dump();
    EXPECT_EQ((*e)["code"], code) << what << ": " << e->dump();
    EXPECT_TRUE((*e)["message"].is_string());
  };
  ws.send_text("{not json");
  expect_error("invalid JSON", "bad_request");
  ws.send_text("[1]");
  expect_error("not an object", "bad_request");
  ws.send({{"op", "fly"}, {"session", id}, {"ref", 9}});
  expect_error("unknown op", "bad_request");
  ws.send({{"op", 5}, {"session", id}});
  expect_error("op not a string", "bad_request");
  ws.send({{"op", "subscribe"}, {"session", 12}});
  expect_error("session not a string", "bad_request");
  ws.send({{"op", "subscribe"}, {"session", id}, {"from_seq", "x"}});
  expect_error("from_seq not a number", "bad_request");
  ws.send({{"op", "publish"}, {"session", id}, {"type", 1}});
  expect_error("type not a string", "bad_request");
  ws.send({{"op", "send"}, {"session", id}});
  expect_error("send without data", "bad_request");
  ws.send({{"op", "attach"}, {"session", id}, {"peer", json::array()}});
  expect_error("peer not a string", "bad_request");
  ws.send_binary(std::string("\x00\xff\x10garbage", 10));
  expect_error("binary frame", "bad_request");
  ws.send({{"op", "subscribe"}, {"session", "no-such-session"}, {"ref", "u"}});
  expect_error("unknown session", "not_found");
  ws.send({{"op", "send"}, {"session", "no-such-session"}, {"data", 1}});
  expect_error("send to unknown session", "not_found");
  // Still usable.
  ws.send({{"op", "subscribe"}, {"session", id}, {"ref", "ok"}});
  auto sub = ws.read_op("subscribed", "ok");
  ASSERT_TRUE(sub);
  EXPECT_EQ((*sub)["session"], id);
  // Nothing reached the session, and the bystander gets live events.
  EXPECT_EQ(stored_events(id).size(), base);
  post_message(id, "after the bad frames");
  auto e = other.read_op("event");
  ASSERT_TRUE(e);
  EXPECT_EQ((*e)["seq"], base + 1);
}

TEST_F(serve_test, pings_fragments_and_framing_errors_follow_rfc_6455) {
  auto id = create()["id"].get<std::string>();
  ws_client ws{proc->port};
  ws.send({{"op", "subscribe"}, {"session", id}, {"ref", 1}});
  ASSERT_TRUE(ws.read_op("subscribed", 1));
  // A ping is answered with its payload, in between live events.
  ws.ping("are you there");
  post_message(id, "one");
  auto e = ws.read_op("event");
  ASSERT_TRUE(e);
  ASSERT_EQ(ws.pongs.size(), 1u);
  EXPECT_EQ(ws.pongs[0], "are you there");
  // A message in three frames is one op.
  ws.send_fragmented(json{{"op", "unsubscribe"}, {"session", id}, {"ref", 2}}
                       .dump(),
                     3);
  auto u = ws.read_op("unsubscribed", 2);
  ASSERT_TRUE(u);
  EXPECT_EQ((*u)["session"], id);
  // Invalid UTF-8 in a text frame: 1007, and nothing reaches the session.
  auto before = last_seq(id);
  ws_client bad_text{proc->port};
  bad_text.send_text(std::string("{\"op\":\"send\",\"data\":\"\xff\xfe\"}"));
  EXPECT_FALSE(bad_text.read());
  EXPECT_EQ(bad_text.close_code(), 1007) << bad_text.last_error.message();
  // An unmasked client frame breaks the protocol: 1002.
  ws_client unmasked{proc->port};
  unmasked.send_raw(std::string("\x81\x02hi", 4));
  EXPECT_FALSE(unmasked.read());
  EXPECT_EQ(unmasked.close_code(), 1002) << unmasked.last_error.message();
  EXPECT_EQ(last_seq(id), before);
  // The first client is unaffected and closes cleanly.
  ws.send({{"op", "subscribe"}, {"session", id}, {"ref", 3}});
  EXPECT_TRUE(ws.read_op("subscribed", 3));
  ws.close();
  auto m = call(verb::get, "/metrics");
  EXPECT_NE(m.body.find("sessionhost_ws_connections_open 0"), std::string::npos) << m.body;
}

class serve_short_heartbeat : public serve_test {
protected:
  void SetUp() override {
    extra = {"--sessionhost.heartbeat-timeout=300ms",
             "--sessionhost.reconnect-grace=60s"};
    serve_test::SetUp();
  }
};

TEST_F(serve_short_heartbeat, a_missed_heartbeat_then_a_reconnect_in_seed_order) {
  auto id = create()["id"].get<std::string>();
  ws_client ws{proc->port};
  ws.send({{"op", "attach"}, {"session", id}, {"peer", "user-1"}, {"ref", 1}});
  ASSERT_TRUE(ws.read_op("ack", 1));
  // No heartbeat: heartbeat_timeout, then session_close{heartbeat_timeout}.
  std::vector<std::string> seen; // "type[:reason]" of the lifecycle events
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    seen.clear();
    for (auto& e : stored_events(id)) {
      auto type = e["type"].get<std::string>();
      if (type == "heartbeat_timeout" || type == "session_close"
          || type == "session_open")
        seen.push_back(type + ":" + e["data"].value("reason", ""));
    }
    if (seen.size() >= 3)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(seen, (std::vector<std::string>{"session_open:", "heartbeat_timeout:",
                                            "session_close:heartbeat_timeout"}));
  // During the grace period another identity is refused; the same one
  // coming back is a reconnect.
  ws.send({{"op", "attach"}, {"session", id}, {"peer", "user-2"}, {"ref", 2}});
  auto refused = ws.read_op("error", 2);
  ASSERT_TRUE(refused);
  EXPECT_EQ((*refused)["code"], "conflict");
  ws.send({{"op", "attach"}, {"session", id}, {"peer", "user-1"}, {"ref", 3}});
  auto back = ws.read_op("ack", 3);
  ASSERT_TRUE(back);
  EXPECT_EQ((*back)["reconnects"], 1);
  auto events = stored_events(id);
  ASSERT_FALSE(events.empty());
  json last_open;
  for (auto& e : events)
    if (e["type"] == "session_open")
      last_open = e;
  EXPECT_EQ(last_open["data"]["peer"], "user-1");
  EXPECT_EQ(last_open["data"]["reconnects"], "1");
  ws.send({{"op", "heartbeat"}, {"session", id}, {"ref", 4}});
  EXPECT_TRUE(ws.read_op("ack", 4));
}

class serve_small_frames : public serve_test {
protected:
  void SetUp() override {
    extra = {"--max-frame-size=1024"};
    serve_test::SetUp();
  }
};

TEST_F(serve_small_frames, an_oversize_frame_closes_with_1009_only_that_connection) {
  auto id = create()["id"].get<std::string>();
  auto base = last_seq(id);
  ws_client other{proc->port};
  other.send({{"op", "subscribe"}, {"session", id}, {"ref", 1}});
  ASSERT_TRUE(other.read_op("subscribed", 1));
  ws_client ws{proc->port};
  bool written = true;
  try {
    ws.send({{"op", "send"}, {"session", id}, {"data", std::string(4096, 'a')}});
  } catch (const std::exception&) {
    // The server closed before the client finished writing the frame; the
    // reset then hides the close frame from this client.
    written = false;
  }
  auto r = ws.read();
  EXPECT_FALSE(r);
  if (written && ws.last_error != boost::asio::error::connection_reset) {
    EXPECT_EQ(ws.close_code(), 1009) << ws.last_error.message();
  }
  // The oversize frame reached nothing; the other client is still served.
  EXPECT_EQ(stored_events(id).size(), base);
  EXPECT_EQ(call(verb::get, "/healthz").status, 200);
  post_message(id, "small");
  auto e = other.read_op("event");
  ASSERT_TRUE(e);
  EXPECT_EQ((*e)["seq"], base + 1);
  auto m = call(verb::get, "/metrics");
  EXPECT_NE(m.body.find("sessionhost_ws_oversize_closed_total 1"),
            std::string::npos)
    << m.body;
}

TEST_F(serve_test, sigterm_exits_zero_and_a_restart_finds_the_sessions) {
  auto id = create("keeper")["id"].get<std::string>();
  post_message(id, "remember me");
  auto seq = last_seq(id);
  ws_client ws{proc->port};
  ws.send({{"op", "subscribe"}, {"session", id}});
  ASSERT_TRUE(ws.read_op("subscribed"));
  ASSERT_EQ(proc->terminate(), 0);
  for (int i = 0; i < 100; ++i) { // frames sent before the close, if any
    auto f = ws.read();
    if (!f)
      break;
    // Subscriptions end with "unloaded" as the host unloads the sessions.
    EXPECT_EQ((*f)["op"], "unloaded") << f->dump();
    EXPECT_EQ((*f)["session"], id) << f->dump();
    EXPECT_EQ((*f)["last_seq"], seq) << f->dump();
  }
  EXPECT_EQ(ws.close_code(), 1001);
  proc = std::make_unique<serve_process>(dir.path);
  ASSERT_NE(proc->port, 0);
  auto g = call(verb::get, "/v1/sessions/" + id);
  ASSERT_EQ(g.status, 200) << g.body;
  EXPECT_EQ(g.j["role"], "keeper");
  EXPECT_EQ(g.j["message_count"], 1);
  EXPECT_GE(g.j["last_seq"].get<uint64_t>(), seq);
  EXPECT_EQ(stored_events(id).size(), g.j["last_seq"].get<uint64_t>());
  EXPECT_EQ(post_message(id, "again"), g.j["last_seq"].get<uint64_t>() + 1);
}

TEST(serve_cli, bad_arguments_exit_2) {
  auto run = [](const std::string& args) {
    auto cmd = std::string{SESSIONHOST_EXE} + " " + args + " >/dev/null 2>&1";
    auto st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  EXPECT_EQ(run("frobnicate"), 2);
  EXPECT_EQ(run(""), 2);
  EXPECT_EQ(run("serve extra-arg"), 2);
  EXPECT_EQ(run("serve --listen=nonsense"), 2);
  EXPECT_EQ(run("serve --listen=0.0.0.0:0"), 2) << "non-loopback needs a token";
  EXPECT_EQ(run("serve --no-such-option=1"), 2);
}

class serve_small_queue : public serve_test {
protected:
  void SetUp() override {
    extra = {"--client-queue-bytes=1048576"};
    serve_test::SetUp();
  }
};

TEST_F(serve_small_queue, a_client_that_does_not_read_is_closed_with_1013) {
  auto id = create()["id"].get<std::string>();
  ws_client slow{proc->port};
  slow.send({{"op", "subscribe"}, {"session", id}, {"ref", 1}});
  ASSERT_TRUE(slow.read_op("subscribed", 1));
  // ~24 MiB of events: more than the socket buffers hold, so the server's
  // queue for this client passes its 1 MiB bound while it does not read.
  std::string chunk(512 * 1024, 'z');
  for (int i = 0; i < 48; ++i) {
    auto r = call(verb::post, "/v1/sessions/" + id + "/events",
                  json{{"type", "log"}, {"data", chunk}}.dump());
    ASSERT_EQ(r.status, 202) << r.body;
  }
  bool closed = false;
  for (int i = 0; i < 200 && !closed; ++i)
    closed = !slow.read();
  ASSERT_TRUE(closed);
  EXPECT_EQ(slow.close_code(), 1013) << slow.last_error.message();
  auto m = call(verb::get, "/metrics");
  EXPECT_NE(m.body.find("sessionhost_ws_slow_closed_total 1"), std::string::npos)
    << m.body;
  // Others are unaffected.
  ws_client fast{proc->port};
  fast.send({{"op", "subscribe"}, {"session", id}, {"ref", 2}});
  EXPECT_TRUE(fast.read_op("subscribed", 2));
}

// Frames are written on the sending actor's thread while nothing is queued,
// by the io thread once the socket is full: either way, in order.
TEST_F(serve_test, a_client_that_falls_behind_gets_every_event_in_order) {
  auto id = create()["id"].get<std::string>();
  ws_client ws{proc->port};
  ws.send({{"op", "subscribe"}, {"session", id}, {"ref", 1}});
  ASSERT_TRUE(ws.read_op("subscribed", 1));
  // ~6 MiB while the client does not read: more than the socket buffers
  // take, less than the 8 MiB queue bound.
  std::string chunk(256 * 1024, 'q');
  constexpr int n = 24;
  for (int i = 0; i < n; ++i) {
    auto r = call(verb::post, "/v1/sessions/" + id + "/events",
                  json{{"type", "log"}, {"data", chunk + std::to_string(i)}}
                    .dump());
    ASSERT_EQ(r.status, 202) << r.body;
  }
  ws.ping("behind"); // its pong queues behind the events
  auto live = [&](const std::string& tag) {
    auto r = call(verb::post, "/v1/sessions/" + id + "/events",
                  json{{"type", "log"}, {"data", tag}}.dump());
    EXPECT_EQ(r.status, 202) << r.body;
  };
  live("after-ping");
  uint64_t last = 0;
  std::vector<std::string> got;
  while (got.size() < n + 1) {
    auto e = ws.read_op("event");
    ASSERT_TRUE(e) << "after " << got.size() << " events";
    auto seq = (*e)["seq"].get<uint64_t>();
    ASSERT_GT(seq, last);
    last = seq;
    got.push_back((*e)["data"].get<std::string>());
  }
  for (int i = 0; i < n; ++i)
    EXPECT_EQ(got[i], chunk + std::to_string(i)) << "event " << i;
  EXPECT_EQ(got[n], "after-ping");
  EXPECT_EQ(ws.pongs, std::vector<std::string>{"behind"});
  // Caught up: the next event comes alone, next in line.
  live("caught-up");
  auto e = ws.read_op("event");
  ASSERT_TRUE(e);
  EXPECT_EQ((*e)["seq"].get<uint64_t>(), last + 1);
  EXPECT_EQ((*e)["data"], "caught-up");
}

// The hub writes a live subscription's events to its socket itself; a
// subscription replaying from the store holds them back and goes live under
// the same lock. Subscriptions made while a producer publishes back to back
// race that switch: each must see every event once, in order. (A feed
// that wrote what it held back without dropping what the replay sent fails
// here in most runs.)
TEST_F(serve_test, subscriptions_made_while_events_flow_see_each_event_once) {
  auto id = create()["id"].get<std::string>();
  ws_client producer{proc->port};
  producer.send(
    {{"op", "attach"}, {"session", id}, {"peer", "producer"}, {"ref", "a"}});
  ASSERT_TRUE(producer.read_op("ack", "a"));
  constexpr int rounds = 12, per_round = 50;
  std::vector<std::unique_ptr<ws_client>> replaying, live_only;
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < per_round; ++i)
      producer.send({{"op", "publish"}, {"session", id}, {"type", "log"},
                     {"data", r * per_round + i}, {"ref", r * per_round + i}});
    // Mid-stream: one from the start (store, then live), one live only.
    replaying.push_back(std::make_unique<ws_client>(proc->port));
    replaying.back()->send(
      {{"op", "subscribe"}, {"session", id}, {"from_seq", 0}, {"ref", r}});
    live_only.push_back(std::make_unique<ws_client>(proc->port));
    live_only.back()->send({{"op", "subscribe"}, {"session", id}, {"ref", r}});
  }
  ASSERT_TRUE(producer.read_op("ack", rounds * per_round - 1));
  auto final_seq = last_seq(id);
  ASSERT_GE(final_seq, uint64_t{rounds * per_round});
  for (auto& ws : replaying) {
    ASSERT_TRUE(ws->read_op("subscribed"));
    uint64_t last = 0;
    expect_events(*ws, id, last, final_seq);
  }
  for (auto& ws : live_only) {
    auto sub = ws->read_op("subscribed");
    ASSERT_TRUE(sub);
    uint64_t last = (*sub)["last_seq"].get<uint64_t>();
    expect_events(*ws, id, last, final_seq - last);
  }
  // Nothing after the last one: a sentinel answers next.
  for (auto& ws : replaying) {
    ws->send({{"op", "nope"}, {"session", id}, {"ref", "end"}});
    auto j = ws->read();
    ASSERT_TRUE(j);
    EXPECT_EQ((*j)["ref"], "end") << j->dump();
  }
}

// Connections that go away (dropped, or closed) while the hub writes a
// burst to them: the others get every event, and the server goes on.
TEST_F(serve_test, connections_closing_while_the_hub_writes_leave_the_rest_whole) {
  auto id = create()["id"].get<std::string>();
  ws_client producer{proc->port};
  producer.send(
    {{"op", "attach"}, {"session", id}, {"peer", "producer"}, {"ref", "a"}});
  ASSERT_TRUE(producer.read_op("ack", "a"));
  auto subscribe = [&](ws_client& ws) {
    ws.send({{"op", "subscribe"}, {"session", id}, {"ref", "s"}});
    auto sub = ws.read_op("subscribed", "s");
    EXPECT_TRUE(sub);
    return sub ? (*sub)["last_seq"].get<uint64_t>() : 0;
  };
  ws_client kept{proc->port};
  auto last = subscribe(kept);
  std::vector<std::unique_ptr<ws_client>> going;
  for (int i = 0; i < 8; ++i) {
    going.push_back(std::make_unique<ws_client>(proc->port));
    subscribe(*going.back());
  }
  constexpr int n = 400;
  for (int i = 0; i < n; ++i) {
    producer.send({{"op", "publish"}, {"session", id}, {"type", "log"},
                   {"data", std::string(200, 'x')}, {"ref", i}});
    if (i % 50 == 25) { // while the events of the ones before go out
      auto& ws = *going[static_cast<size_t>(i / 50)];
      if (i % 100 == 25)
        ws.drop();
      else
        ws.close();
    }
  }
  ASSERT_TRUE(producer.read_op("ack", n - 1));
  auto final_seq = last_seq(id);
  expect_events(kept, id, last, final_seq - last);
  // The server goes on: a new subscriber hears the next event.
  ws_client late{proc->port};
  last = subscribe(late);
  post_message(id, "after");
  auto e = late.read_op("event");
  ASSERT_TRUE(e);
  EXPECT_EQ((*e)["seq"].get<uint64_t>(), last + 1);
}

class serve_small_window : public serve_test {
protected:
  void SetUp() override {
    // A hub window of 64 (the sessions' bound for the broadcast listener).
    extra = {"--sessionhost.subscriber-window=64"};
    serve_test::SetUp();
  }
};

TEST_F(serve_small_window, a_client_keeping_up_is_never_dropped_for_lagging) {
  auto id = create()["id"].get<std::string>();
  ws_client ws{proc->port};
  ws.send({{"op", "subscribe"}, {"session", id}, {"ref", 1}});
  ASSERT_TRUE(ws.read_op("subscribed", 1));
  // Three windows' worth, read as they come: the client's confirmations
  // (batched) keep it inside the window the whole time.
  constexpr int n = 200;
  uint64_t last = 0;
  for (int i = 0; i < n; ++i) {
    auto r = call(verb::post, "/v1/sessions/" + id + "/events",
                  json{{"type", "log"}, {"data", i}}.dump());
    ASSERT_EQ(r.status, 202) << r.body;
    auto e = ws.read_op("event");
    ASSERT_TRUE(e) << "event " << i;
    auto seq = (*e)["seq"].get<uint64_t>();
    if (last != 0)
      EXPECT_EQ(seq, last + 1);
    last = seq;
    EXPECT_EQ((*e)["data"], i);
  }
  auto m = call(verb::get, "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("\nsessionhost_ws_resumed_total 0\n"),
            std::string::npos)
    << m.body;
}
