// transport::server against a backend that outlives it: an actor may hold a
// REST request's callback, or a WebSocket's sink, after the server stopped (a
// session answering a request or broadcasting an event during shutdown).
// Calling or dropping either then must touch nothing of the stopped server
// (under ASan a use-after-free of the server or of the io_context's socket
// service aborts the test).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "transport/server.hpp"

using namespace sessionhost::transport;
using namespace std::chrono_literals;

namespace {

/// Keeps every REST callback without answering it.
class holding_backend : public backend {
public:
  void handle_http(http_request req, respond_fn respond) override {
    std::lock_guard<std::mutex> guard{mtx};
    targets.push_back(req.target);
    held.push_back(std::move(respond));
    cv.notify_all();
  }
  std::optional<http_response> check_upgrade(const ws_upgrade&) override {
    return http_response{403, "application/json", "{}"};
  }
  std::shared_ptr<ws_handler> open_ws(std::shared_ptr<ws_sink>,
                                      const ws_upgrade&) override {
    return nullptr;
  }
  bool wait_for(size_t n) {
    std::unique_lock<std::mutex> guard{mtx};
    return cv.wait_for(guard, 5s, [&] { return held.size() >= n; });
  }

  std::mutex mtx;
  std::condition_variable cv;
  std::vector<std::string> targets;
  std::vector<respond_fn> held;
};

/// Accepts every WebSocket and keeps its sink, as a connection actor does.
class sink_keeping_backend : public backend {
public:
  struct quiet_handler : ws_handler {
    void on_text(std::string) override {}
    void on_binary(std::string) override {}
    void on_closed() override {}
  };
  void handle_http(http_request, respond_fn respond) override {
    respond({404, "application/json", "{}"});
  }
  std::optional<http_response> check_upgrade(const ws_upgrade&) override {
    return std::nullopt;
  }
  std::shared_ptr<ws_handler> open_ws(std::shared_ptr<ws_sink> sink,
                                      const ws_upgrade&) override {
    std::lock_guard<std::mutex> guard{mtx};
    sinks.push_back(std::move(sink));
    cv.notify_all();
    return std::make_shared<quiet_handler>();
  }
  bool wait_for(size_t n) {
    std::unique_lock<std::mutex> guard{mtx};
    return cv.wait_for(guard, 5s, [&] { return sinks.size() >= n; });
  }

  std::mutex mtx;
  std::condition_variable cv;
  std::vector<std::shared_ptr<ws_sink>> sinks;
};

/// A blocking client socket to 127.0.0.1:port with a 5 s receive timeout.
int connect_to(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void send_get(int fd, const std::string& path) {
  auto req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(req.size()));
}

/// What the client reads until the server closes (or 5 s pass).
std::string read_to_close(int fd) {
  std::string got;
  char buf[4096];
  for (;;) {
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0)
      return got;
    got.append(buf, static_cast<size_t>(n));
  }
}

/// Opens a WebSocket on `fd` (the upgrade's answer is read and dropped).
void upgrade(int fd) {
  std::string req = "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n";
  ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(req.size()));
  std::string got;
  char c;
  while (got.find("\r\n\r\n") == std::string::npos && ::recv(fd, &c, 1, 0) == 1)
    got += c;
  ASSERT_EQ(got.rfind("HTTP/1.1 101", 0), 0u) << got;
}

} // namespace

TEST(server_shutdown, an_answer_after_the_server_stopped_is_dropped) {
  auto be = std::make_shared<holding_backend>();
  auto srv = std::make_unique<server>(server_options{"127.0.0.1", 0}, be);
  auto port = srv->start();
  int early = connect_to(port);
  int late = connect_to(port);
  ASSERT_GE(early, 0);
  ASSERT_GE(late, 0);
  send_get(early, "/early");
  ASSERT_TRUE(be->wait_for(1));
  send_get(late, "/late");
  ASSERT_TRUE(be->wait_for(2));

  // Answered while the server runs: the client gets it.
  be->held[0]({200, "application/json", "{\"ok\":true}"});
  char buf[4096];
  auto n = ::recv(early, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_NE(std::string(buf, static_cast<size_t>(n)).find("{\"ok\":true}"),
            std::string::npos);

  // The server goes while the second request still waits for its answer:
  // its client sees the connection closed, with no answer.
  srv.reset();
  EXPECT_EQ(read_to_close(late), "");

  // The backend answers late, then drops the callback: nothing happens.
  be->held[1]({200, "application/json", "{\"late\":true}"});
  be->held.clear();
  ::close(early);
  ::close(late);
}

TEST(server_shutdown, a_callback_dropped_after_the_server_stopped_is_harmless) {
  auto be = std::make_shared<holding_backend>();
  auto srv = std::make_unique<server>(server_options{"127.0.0.1", 0}, be);
  int fd = connect_to(srv->start());
  ASSERT_GE(fd, 0);
  send_get(fd, "/never-answered");
  ASSERT_TRUE(be->wait_for(1));
  srv.reset();
  EXPECT_EQ(read_to_close(fd), "");
  be->held.clear(); // as an actor's behavior does when it terminates late
  EXPECT_EQ(be->targets, std::vector<std::string>{"/never-answered"});
  ::close(fd);
}

TEST(server_shutdown, a_websocket_sink_used_after_the_server_stopped_is_inert) {
  auto be = std::make_shared<sink_keeping_backend>();
  auto srv = std::make_unique<server>(server_options{"127.0.0.1", 0}, be);
  int fd = connect_to(srv->start());
  ASSERT_GE(fd, 0);
  upgrade(fd);
  ASSERT_TRUE(be->wait_for(1));
  auto sink = be->sinks[0];
  ASSERT_TRUE(sink->send_text("{\"before\":true}"));
  char buf[256];
  ASSERT_GT(::recv(fd, buf, sizeof buf, 0), 0); // the frame arrived

  srv.reset(); // the actor still holds the sink
  EXPECT_EQ(read_to_close(fd), "") << "the connection is closed, nothing sent";
  EXPECT_FALSE(sink->send_text("{\"after\":true}"));
  std::vector<outgoing_frame> late{{make_wire_frame("{}", false), 0}};
  EXPECT_FALSE(sink->send_frames(late));
  EXPECT_TRUE(late.empty()) << "taken even when refused";
  sink->close(1001, "late");
  EXPECT_EQ(sink->queued_bytes(), 0u);
  be->sinks.clear();
  sink.reset(); // the last owner: the connection goes without its server
  ::close(fd);
}

TEST(server_shutdown, websocket_senders_racing_the_servers_stop_are_harmless) {
  auto be = std::make_shared<sink_keeping_backend>();
  auto srv = std::make_unique<server>(server_options{"127.0.0.1", 0}, be);
  auto port = srv->start();
  constexpr size_t clients = 4;
  std::vector<int> fds;
  for (size_t k = 0; k < clients; ++k) {
    fds.push_back(connect_to(port));
    ASSERT_GE(fds.back(), 0);
    upgrade(fds.back());
  }
  ASSERT_TRUE(be->wait_for(clients));
  // Senders on their own threads, as actors on CAF's workers, keep sending
  // until the server has stopped under them (bounded: 5,000,000 frames
  // each), then try ten more times.
  std::atomic<bool> stopped{false};
  std::atomic<size_t> refused_after_stop{0};
  std::vector<std::thread> senders;
  for (auto& sink : be->sinks)
    senders.emplace_back([sink, &stopped, &refused_after_stop] {
      for (int i = 0; i < 5'000'000 && !stopped.load(); ++i)
        sink->send_text("{\"n\":" + std::to_string(i) + "}");
      for (int i = 0; i < 10; ++i)
        if (!sink->send_text("{\"late\":true}"))
          ++refused_after_stop;
      sink->close(1001, "done");
    });
  std::this_thread::sleep_for(5ms);
  srv.reset();
  stopped = true;
  for (auto& t : senders)
    t.join();
  EXPECT_EQ(refused_after_stop.load(), clients * 10)
    << "every send after the stop is refused";
  be->sinks.clear(); // the sinks go last, without their server
  for (int fd : fds)
    ::close(fd);
}
