#pragma once
// Test support for `sessionhost serve`: starts the real process on
// 127.0.0.1:0 with a temporary data dir, reads the port from its first line,
// and offers a synchronous HTTP client and a WebSocket client whose reads are
// bounded in time. Not thread-safe: one test thread drives each object.
#include <utility>

#include <sys/types.h>
#include <sys/wait.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "tests/support/temp_dir.hpp"

namespace sessionhost::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using nlohmann::json;

using sessionhost::testing::temp_dir;

/// One `sessionhost serve` child process.
class serve_process {
public:
  explicit serve_process(const std::string& data_dir,
                         std::vector<std::string> extra = {}) {
    std::vector<std::string> args{SESSIONHOST_EXE, "serve",
                                  "--listen=127.0.0.1:0",
                                  "--data-dir=" + data_dir};
    for (auto& a : extra)
      args.push_back(a);
    int fds[2];
    if (::pipe(fds) != 0)
      throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      ::close(fds[1]);
      std::vector<char*> argv;
      for (auto& a : args)
        argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = fds[0];
    first_line_ = read_line(std::chrono::seconds(20));
    auto pos = first_line_.rfind(':');
    if (first_line_.rfind("listening on http://127.0.0.1:", 0) != 0
        || pos == std::string::npos)
      return;
    port = static_cast<uint16_t>(std::stoi(first_line_.substr(pos + 1)));
    // Keep draining stdout (logs) so the child never blocks on a full pipe.
    drain_ = std::thread{[fd = out_] {
      char buf[4096];
      while (::read(fd, buf, sizeof buf) > 0) {
      }
    }};
  }

  ~serve_process() {
    if (pid_ > 0 && !exit_code_) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
    if (drain_.joinable())
      drain_.join();
    if (out_ >= 0)
      ::close(out_);
  }

  const std::string& first_line() const { return first_line_; }

  /// SIGTERM, then waits (bounded) for the exit; returns the exit code, or
  /// -1 when it did not exit in time / died by a signal.
  int terminate(std::chrono::seconds limit = std::chrono::seconds(20)) {
    ::kill(pid_, SIGTERM);
    return wait_exit(limit);
  }

  int wait_exit(std::chrono::seconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      int st = 0;
      auto r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        exit_code_ = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        return *exit_code_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

  uint16_t port = 0;

private:
  std::string read_line(std::chrono::seconds limit) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0)
        continue;
      char c;
      if (::read(out_, &c, 1) != 1)
        break;
      if (c == '\n')
        return line;
      line += c;
    }
    return line;
  }

  pid_t pid_ = -1;
  int out_ = -1;
  std::string first_line_;
  std::thread drain_;
  std::optional<int> exit_code_;
};

struct http_result {
  int status = 0;
  std::string body;
  json j; // the parsed body (discarded when not JSON)
  std::string code() const {
    return j.is_object() && j.contains("error") ? j["error"].value("code", "")
                                                : "";
  }
};

using headers = std::vector<std::pair<std::string, std::string>>;

/// One request on a fresh connection, with extra `hdrs`.
inline http_result http_call(uint16_t port, http::verb method,
                             const std::string& target,
                             const std::string& body = {},
                             const headers& hdrs = {}) {
  net::io_context ioc;
  tcp::socket sock{ioc};
  sock.connect({net::ip::make_address("127.0.0.1"), port});
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  for (auto& [k, v] : hdrs)
    req.set(k, v);
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = body;
  }
  req.prepare_payload();
  http::write(sock, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(sock, buf, res);
  http_result out;
  out.status = static_cast<int>(res.result_int());
  out.body = res.body();
  out.j = json::parse(out.body, nullptr, false);
  beast::error_code ec;
  sock.shutdown(tcp::socket::shutdown_both, ec);
  return out;
}

/// A WebSocket upgrade request sent as plain HTTP: the server's answer when
/// it refuses (401, 403, …), or 101 when it accepts.
inline http_result ws_upgrade_call(uint16_t port, const std::string& target,
                                   headers hdrs = {}) {
  hdrs.emplace_back("Connection", "Upgrade");
  hdrs.emplace_back("Upgrade", "websocket");
  hdrs.emplace_back("Sec-WebSocket-Version", "13");
  hdrs.emplace_back("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
  net::io_context ioc;
  tcp::socket sock{ioc};
  sock.connect({net::ip::make_address("127.0.0.1"), port});
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  for (auto& [k, v] : hdrs)
    req.set(k, v);
  http::write(sock, req);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> p;
  p.skip(false);
  http::read_header(sock, buf, p);
  http_result out;
  out.status = static_cast<int>(p.get().result_int());
  if (out.status != 101) {
    http::read(sock, buf, p);
    out.body = p.get().body();
    out.j = json::parse(out.body, nullptr, false);
  }
  beast::error_code ec;
  sock.shutdown(tcp::socket::shutdown_both, ec);
  return out;
}

/// How a ws_client connects.
struct ws_options {
  std::string target = "/v1/ws";
  std::string token;       // sent as "Authorization: Bearer …" when set
  std::string origin;      // Origin header when set
  std::string subprotocol; // Sec-WebSocket-Protocol when set
};

/// A WebSocket client of /v1/ws whose reads give up after a timeout.
class ws_client {
public:
  explicit ws_client(uint16_t port, ws_options opts = {}) : ws_(ioc_) {
    beast::get_lowest_layer(ws_).connect(
      {net::ip::make_address("127.0.0.1"), port});
    ws_.set_option(websocket::stream_base::decorator(
      [opts](websocket::request_type& req) {
        if (!opts.token.empty())
          req.set(http::field::authorization, "Bearer " + opts.token);
        if (!opts.origin.empty())
          req.set(http::field::origin, opts.origin);
        if (!opts.subprotocol.empty())
          req.set(http::field::sec_websocket_protocol, opts.subprotocol);
      }));
    websocket::response_type res;
    ws_.handshake(res, "127.0.0.1:" + std::to_string(port), opts.target);
    if (auto i = res.find(http::field::sec_websocket_protocol); i != res.end())
      subprotocol = std::string{i->value()};
  }

  /// The subprotocol the server selected (empty: none).
  std::string subprotocol;

  /// The next frame's bytes, whatever its kind (`binary` tells which), or
  /// nothing after `limit` or on close.
  std::optional<std::string> read_raw(bool& binary,
                                      std::chrono::milliseconds limit
                                      = std::chrono::seconds(10)) {
    if (failed_)
      return std::nullopt;
    beast::flat_buffer buf;
    bool done = false;
    beast::error_code result;
    ws_.async_read(buf, [&](beast::error_code ec, std::size_t) {
      done = true;
      result = ec;
    });
    ioc_.restart();
    ioc_.run_for(limit);
    if (!done) {
      beast::get_lowest_layer(ws_).cancel();
      ioc_.restart();
      ioc_.run();
      failed_ = true;
      return std::nullopt;
    }
    if (result) {
      failed_ = true;
      last_error = result;
      return std::nullopt;
    }
    binary = ws_.got_binary();
    return beast::buffers_to_string(buf.data());
  }

  void send(const json& j) { send_text(j.dump()); }
  void send_text(const std::string& s) {
    ws_.text(true);
    ws_.write(net::buffer(s));
  }
  void send_binary(const std::string& s) {
    ws_.binary(true);
    ws_.write(net::buffer(s));
  }

  /// The next text frame as JSON, or nothing after `limit` or on close.
  std::optional<json> read(std::chrono::milliseconds limit
                           = std::chrono::seconds(10)) {
    bool binary = false;
    auto raw = read_raw(binary, limit);
    if (!raw)
      return std::nullopt;
    return json::parse(*raw, nullptr, false);
  }

  /// Reads until a frame with this op (and ref, when given); frames skipped
  /// on the way are kept in `skipped`.
  std::optional<json> read_op(const std::string& op, const json& ref = nullptr,
                              int max_frames = 10000) {
    for (int i = 0; i < max_frames; ++i) {
      auto j = read();
      if (!j)
        return std::nullopt;
      if (j->value("op", "") == op && (ref.is_null() || (*j)["ref"] == ref))
        return j;
      skipped.push_back(*j);
    }
    return std::nullopt;
  }

  /// One text message sent as `parts` frames (a fragmented message).
  void send_fragmented(const std::string& s, size_t parts) {
    ws_.text(true);
    auto step = (s.size() + parts - 1) / parts;
    for (size_t pos = 0; pos < s.size(); pos += step) {
      auto n = std::min(step, s.size() - pos);
      ws_.write_some(pos + n == s.size(), net::buffer(s.data() + pos, n));
    }
  }

  /// Sends a ping; the pongs that come back (read while reading frames)
  /// land in `pongs`.
  void ping(const std::string& payload) {
    ws_.control_callback(
      [this](websocket::frame_type kind, beast::string_view p) {
        if (kind == websocket::frame_type::pong)
          pongs.emplace_back(p);
      });
    ws_.ping(websocket::ping_data{payload.c_str()});
  }
  std::vector<std::string> pongs;

  /// Writes bytes straight to the socket, past the WebSocket framing.
  void send_raw(const std::string& bytes) {
    net::write(beast::get_lowest_layer(ws_).socket(), net::buffer(bytes));
  }

  /// The close code the server sent (after a read failed with `closed`).
  uint16_t close_code() const { return ws_.reason().code; }

  void close() {
    beast::error_code ec;
    ws_.close(websocket::close_code::normal, ec);
  }

  /// Drops the TCP connection without a close handshake.
  void drop() {
    beast::error_code ec;
    beast::get_lowest_layer(ws_).socket().close(ec);
  }

  beast::error_code last_error;
  std::vector<json> skipped;

private:
  net::io_context ioc_;
  websocket::stream<beast::tcp_stream> ws_;
  bool failed_ = false;
};

} // namespace sessionhost::test
