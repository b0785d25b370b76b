// Process types through `sessionhost serve`: the real executable with a
// config file that declares process types, driven over REST as a client
// would. A client names a type and nothing else; an unknown type is a 400
// that creates nothing; a command that cannot start ends in an `error` event
// and a CLEANED session. Every wait is bounded.
#include "serve_fixture.hpp"

#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

using namespace sessionhost::test;
using http::verb;

namespace {

class process_serve_test : public serve_fixture {
protected:
  void SetUp() override {
    std::string user = ::geteuid() == 0 ? "user = \"nobody\", " : "";
    config = dir.path + "/sessionhost.ini";
    std::ofstream{config}
      << "[sessionhost.process-types]\n"
         "cat = { command = [\"cat\"], " << user << "turn-quiet = 100ms }\n"
         "broken = {\n  command = [\"/nonexistent/agent\", \"--stdio\"]\n  "
      << user << "\n}\n";
    data_dir = dir.path + "/data";
    extra = {"--config-file=" + config};
    start();
  }

  std::string state_of(const std::string& id) {
    return call(verb::get, "/v1/sessions/" + id).j.value("state", "");
  }

  bool reaches(const std::string& id, const std::string& state) {
    for (int i = 0; i < 1000; ++i) {
      if (state_of(id) == state)
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  std::vector<json> events_of(const std::string& id, const std::string& type) {
    auto r = call(verb::get, "/v1/sessions/" + id + "/events?limit=10000");
    std::vector<json> out;
    for (auto& e : r.j["events"])
      if (e["type"] == type)
        out.push_back(e);
    return out;
  }

  std::string config;
};

} // namespace

TEST_F(process_serve_test, an_unknown_type_is_a_400_and_creates_nothing) {
  auto r = call(verb::post, "/v1/sessions", R"({"type":"dog"})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.code(), "bad_request");
  EXPECT_NE(r.j["error"]["message"].get<std::string>().find("dog"),
            std::string::npos);
  auto list = call(verb::get, "/v1/sessions");
  ASSERT_EQ(list.status, 200);
  EXPECT_TRUE(list.j["sessions"].empty()) << list.body;
  EXPECT_FALSE(std::filesystem::exists(data_dir + "/process/"))
    << "no working directory either";
}

TEST_F(process_serve_test, a_client_names_a_type_and_talks_to_its_process) {
  // Anything but the type's name in the body changes nothing of the command.
  auto r = call(verb::post, "/v1/sessions",
                R"({"type":"cat","command":["/bin/false"]})");
  ASSERT_EQ(r.status, 201) << r.body;
  auto id = r.j["id"].get<std::string>();
  EXPECT_EQ(r.j["type"], "cat");
  ASSERT_TRUE(reaches(id, "ACTIVE"));
  EXPECT_TRUE(std::filesystem::is_directory(data_dir + "/process/" + id));
  auto m = call(verb::post, "/v1/sessions/" + id + "/messages",
                R"({"data":"hello over rest"})");
  ASSERT_EQ(m.status, 202) << m.body;
  std::vector<json> deltas;
  for (int i = 0; i < 1000 && deltas.empty(); ++i) {
    deltas = events_of(id, "block:delta");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(deltas.size(), 1u);
  EXPECT_EQ(deltas[0]["data"]["delta"], "hello over rest");
  // Its process cannot move to another node or come back from the store.
  auto u = call(verb::post, "/v1/sessions/" + id + "/unload");
  EXPECT_EQ(u.status, 409) << u.body;
  auto d = call(verb::delete_, "/v1/sessions/" + id);
  ASSERT_EQ(d.status, 200) << d.body;
  EXPECT_EQ(d.j["state"], "CLEANED");
  EXPECT_FALSE(std::filesystem::exists(data_dir + "/process/" + id));
}

TEST_F(process_serve_test, a_command_that_cannot_start_ends_cleaned_with_an_error) {
  auto r = call(verb::post, "/v1/sessions", R"({"type":"broken"})");
  ASSERT_EQ(r.status, 201) << r.body;
  auto id = r.j["id"].get<std::string>();
  ASSERT_TRUE(reaches(id, "CLEANED"));
  // The session's info shows CLEANED once emitted; the stored events follow
  // when the batch commits, so wait for them (bounded).
  for (int i = 0; i < 500; ++i) {
    auto stored = events_of(id, "status:changed");
    if (!stored.empty() && stored.back()["data"].value("state", "") == "CLEANED")
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto errors = events_of(id, "error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0]["data"]["code"], "spawn_failed");
  EXPECT_NE(errors[0]["data"]["message"].get<std::string>().find(
              "/nonexistent/agent"),
            std::string::npos)
    << errors[0].dump();
  // The server goes on serving.
  EXPECT_EQ(call(verb::get, "/healthz").status, 200);
}

TEST_F(process_serve_test, a_server_stop_ends_running_process_sessions) {
  auto r = call(verb::post, "/v1/sessions", R"({"type":"cat"})");
  ASSERT_EQ(r.status, 201) << r.body;
  auto id = r.j["id"].get<std::string>();
  ASSERT_TRUE(reaches(id, "ACTIVE"));
  ASSERT_EQ(proc->terminate(), 0);
  start(); // the same data dir and config
  auto g = call(verb::get, "/v1/sessions/" + id);
  ASSERT_EQ(g.status, 200) << g.body;
  EXPECT_EQ(g.j["state"], "CLEANED");
  EXPECT_FALSE(std::filesystem::exists(data_dir + "/process/" + id));
}
