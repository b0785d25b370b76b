#pragma once
// A test with one real `sessionhost serve`: started in SetUp on a temporary
// data dir (plus `extra` options a derived fixture sets first), stopped in
// TearDown with SIGTERM, which must end it with exit code 0.
#include "serve_process.hpp"

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace sessionhost::test {

class serve_fixture : public ::testing::Test {
protected:
  void SetUp() override { start(); }

  void TearDown() override {
    if (proc) {
      EXPECT_EQ(proc->terminate(), 0) << "SIGTERM must end serve with 0";
    }
  }

  /// Starts the server (again, after a test stopped it) on `data_dir`.
  void start() {
    proc = std::make_unique<serve_process>(data_dir, extra);
    ASSERT_NE(proc->port, 0) << "first line: " << proc->first_line();
  }

  /// A request to the server, with `token` as bearer when not empty.
  http_result call(http::verb m, const std::string& target,
                   const std::string& body = {},
                   const std::string& token = {}) {
    headers h;
    if (!token.empty())
      h.emplace_back("Authorization", "Bearer " + token);
    return http_call(proc->port, m, target, body, h);
  }

  temp_dir dir;
  std::string data_dir = dir.path;
  std::vector<std::string> extra;
  std::unique_ptr<serve_process> proc;
};

} // namespace sessionhost::test
