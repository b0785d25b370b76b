// transport::server against a backend that answers late: an actor may hold a
// REST request's callback after the server stopped (a session answering a
// request during shutdown). Calling or dropping that callback then must
// touch nothing of the stopped server (under ASan a use-after-free of the
// io_context's socket service aborts the test).

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
