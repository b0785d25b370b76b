// The Beast side of the server: acceptor, HTTP connections, WebSockets.
// Everything here runs on the one io thread (each connection's handlers are
// serialized by it); `ws_conn::send_text` and `ws_conn::close` are the only
// entry points called from other threads, and they post onto it.
#include <utility> // first: Boost 1.74 Asio with g++12 misses it

#include "transport/server.hpp"

#include <array>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

namespace sessionhost::transport {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

namespace {

class ws_conn;

std::string error_body(const char* code, const std::string& message) {
  // Only fixed ASCII messages come here: no escaping needed.
  return std::string{"{\"error\":{\"code\":\""} + code + "\",\"message\":\""
         + message + "\"}}";
}

std::string path_of(beast::string_view target) {
  auto s = std::string{target};
  return s.substr(0, s.find('?'));
}

} // namespace

struct server::impl {
  impl(server_options o, std::shared_ptr<backend> b,
       std::shared_ptr<server_stats> s)
    : opts(std::move(o)), be(std::move(b)), stats(std::move(s)) {
    if (!stats)
      stats = std::make_shared<server_stats>();
  }

  void do_accept();
  void add_ws(ws_conn* c, std::weak_ptr<ws_conn> w) {
    std::lock_guard<std::mutex> guard{mtx};
    wss.emplace(c, std::move(w));
  }
  void remove_ws(ws_conn* c) {
    std::lock_guard<std::mutex> guard{mtx};
    wss.erase(c);
  }
  size_t ws_count() {
    std::lock_guard<std::mutex> guard{mtx};
    return wss.size();
  }

  server_options opts;
  std::shared_ptr<backend> be;
  std::shared_ptr<server_stats> stats;
  std::mutex mtx;
  std::map<ws_conn*, std::weak_ptr<ws_conn>> wss; // guarded by mtx
  std::thread thread;
  // Declared last: destroyed first, while everything above still exists.
  net::io_context ioc{1};
  tcp::acceptor acceptor{ioc};

  /// Queues `c` to take the frames other threads gave it. One post drains
  /// every connection queued meanwhile: a broadcast to many clients costs
  /// the io thread one wake-up, not one per client and frame.
  void mark_ready(std::shared_ptr<ws_conn> c);
  void drain_ready();
  std::mutex ready_mtx;
  std::vector<std::shared_ptr<ws_conn>> ready; // guarded by ready_mtx
  bool drain_posted = false;                   // guarded by ready_mtx
};

namespace {

// -- WebSocket ----------------------------------------------------------------

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

/// Whether a Sec-WebSocket-Protocol list offers `name`.
bool offers(beast::string_view list, const std::string& name) {
  auto s = std::string{list};
  size_t pos = 0;
  while (pos <= s.size()) {
    auto comma = s.find(',', pos);
    auto item = s.substr(pos, comma == std::string::npos ? std::string::npos
                                                         : comma - pos);
    auto b = item.find_first_not_of(" \t");
    auto e = item.find_last_not_of(" \t");
    if (b != std::string::npos && item.substr(b, e - b + 1) == name)
      return true;
    if (comma == std::string::npos)
      break;
    pos = comma + 1;
  }
  return false;
}

class ws_conn : public ws_sink, public std::enable_shared_from_this<ws_conn> {
public:
  ws_conn(tcp::socket sock, server::impl* srv, ws_upgrade up)
    : ws_(std::move(sock)), srv_(srv), proto_(up.proto),
      up_(std::make_unique<ws_upgrade>(std::move(up))) {}

  ~ws_conn() override { finish(); }

  void accept(http::request<http::string_body> req) {
    websocket::stream_base::timeout t;
    t.handshake_timeout = std::chrono::seconds(1); // also bounds the close
    t.idle_timeout = websocket::stream_base::none();
    t.keep_alive_pings = false;
    ws_.set_option(t);
    ws_.read_message_max(srv_->opts.max_frame);
    if (proto_)
      ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) {
          res.set(http::field::sec_websocket_protocol, proto_subprotocol);
        }));
    ws_.async_accept(req, [self = shared_from_this()](beast::error_code ec) {
      if (ec)
        return;
      self->srv_->add_ws(self.get(), self);
      self->registered_ = true;
      ++self->srv_->stats->ws_connections;
      ++self->srv_->stats->ws_open;
      self->handler_ = self->srv_->be->open_ws(self, *self->up_);
      self->up_.reset(); // not needed any more: keep idle connections small
      self->read();
    });
  }

  bool send_text(std::string text, int64_t event_ts) override {
    if (closing_.load())
      return false;
    auto n = text.size();
    auto total = queued_.fetch_add(n) + n;
    if (total > srv_->opts.client_queue_bytes) {
      queued_ -= n;
      ++srv_->stats->ws_slow_closed;
      close_impl(static_cast<uint16_t>(websocket::close_code::try_again_later),
                 "client too slow", true);
      return false;
    }
    // Frames queued from other threads meanwhile go with one post: one hop
    // to the io thread per burst, not per frame.
    bool post = false;
    {
      std::lock_guard<std::mutex> guard{incoming_mtx_};
      incoming_.push_back(frame{std::move(text), event_ts});
      post = !take_posted_;
      take_posted_ = true;
    }
    if (post)
      srv_->mark_ready(shared_from_this());
    return true;
  }

  /// On the io thread: moves the frames queued by other threads to `out_`.
  void take_incoming() {
    std::vector<frame> batch;
    {
      std::lock_guard<std::mutex> guard{incoming_mtx_};
      batch.swap(incoming_);
      take_posted_ = false;
    }
    if (close_started_) {
      for (auto& f : batch)
        queued_ -= f.text.size();
      return;
    }
    for (auto& f : batch)
      out_.push_back(std::move(f));
    if (!writing_)
      write_next();
  }

  size_t queued_bytes() const noexcept override { return queued_.load(); }

  size_t queue_limit() const noexcept override {
    return srv_->opts.client_queue_bytes;
  }

  void close(uint16_t code, std::string reason) override {
    close_impl(code, std::move(reason), false);
  }

private:
  void close_impl(uint16_t code, std::string reason, bool discard) {
    if (closing_.exchange(true))
      return;
    net::post(ws_.get_executor(), [self = shared_from_this(), code,
                                   reason = std::move(reason), discard] {
      if (discard) {
        while (self->out_count() > 0) { // not the frame being written
          self->queued_ -= self->out_.back().text.size();
          self->out_.pop_back();
        }
      }
      self->pending_close_ = websocket::close_reason{
        static_cast<websocket::close_code>(code), reason};
      if (!self->writing_)
        self->do_close();
    });
  }

  /// While several frames are queued, TCP_CORK lets the kernel put them in
  /// full segments (one transmit for many frames); uncorking when the queue
  /// is empty sends the rest at once. Beast writes one frame per call, so
  /// this is where the coalescing happens.
  void cork(bool on) {
    if (corked_ == on)
      return;
    corked_ = on;
    int v = on ? 1 : 0;
    ::setsockopt(ws_.next_layer().native_handle(), IPPROTO_TCP,
                 TCP_CORK, &v, sizeof v);
  }

  void do_close() {
    if (close_started_ || !pending_close_)
      return;
    close_started_ = true;
    cork(false);
    ws_.async_close(*pending_close_,
                    [self = shared_from_this()](beast::error_code) {});
  }

  void read() {
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec,
                                                     std::size_t) {
      if (ec) {
        if (ec == websocket::error::message_too_big)
          ++self->srv_->stats->ws_oversize_closed;
        self->closing_ = true;
        self->finish();
        return;
      }
      bool text = self->ws_.got_text();
      auto data = beast::buffers_to_string(self->buf_.data());
      // Free the read buffer between messages (Beast sizes it to at least
      // a TCP frame): ~1.5 KB per idle connection.
      self->buf_.consume(self->buf_.size());
      self->buf_.shrink_to_fit();
      if (text)
        self->handler_->on_text(std::move(data));
      else
        self->handler_->on_binary(std::move(data));
      self->read();
    });
  }

  size_t out_count() const noexcept { return out_.size() - out_head_; }

  void pop_out() {
    if (++out_head_ < out_.size())
      return;
    out_head_ = 0;
    if (out_.capacity() > 64)
      std::vector<frame>{}.swap(out_); // a burst is over
    else
      out_.clear();
  }

  void write_next() {
    writing_ = true;
    if (out_count() > 2)
      cork(true);
    writing_frame_ = std::move(out_[out_head_]);
    pop_out();
    if (writing_frame_.event_ts != 0)
      srv_->stats->publish_to_send.observe(now_us() - writing_frame_.event_ts);
    ws_.text(!proto_);
    ws_.async_write(net::buffer(writing_frame_.text),
                    [self = shared_from_this()](beast::error_code ec,
                                                std::size_t) {
                      self->writing_ = false;
                      self->queued_ -= self->writing_frame_.text.size();
                      self->writing_frame_ = frame{};
                      if (ec)
                        return; // the read fails too and finishes
                      if (self->out_count() > 0 && !self->close_started_)
                        return self->write_next();
                      self->cork(false);
                      if (self->pending_close_)
                        self->do_close();
                    });
  }

  void finish() {
    if (finished_)
      return;
    finished_ = true;
    if (registered_) {
      srv_->remove_ws(this);
      --srv_->stats->ws_open;
    }
    if (handler_)
      handler_->on_closed();
  }

  struct frame {
    std::string text;
    int64_t event_ts = 0; // a live event's publish time (histogram), or 0
  };

  // On the bare socket, not a beast::tcp_stream: the WebSocket has its own
  // timeouts, and tcp_stream's two timers cost memory per idle connection.
  websocket::stream<tcp::socket> ws_;
  server::impl* srv_;
  bool proto_; // binary protobuf frames
  std::unique_ptr<ws_upgrade> up_; // until the handler is opened
  beast::flat_buffer buf_;
  std::shared_ptr<ws_handler> handler_;
  // Frames to write, oldest at out_head_, and the one being written (owned
  // apart: the vector may reallocate meanwhile). A vector, not a std::deque:
  // an empty libstdc++ deque still holds ~600 bytes, per idle connection.
  std::vector<frame> out_;
  size_t out_head_ = 0;
  frame writing_frame_;
  std::mutex incoming_mtx_;
  std::vector<frame> incoming_; // guarded by incoming_mtx_
  bool take_posted_ = false;          // guarded by incoming_mtx_
  bool corked_ = false;
  bool writing_ = false;
  bool close_started_ = false;
  bool finished_ = false;
  bool registered_ = false;
  std::optional<websocket::close_reason> pending_close_;
  std::atomic<size_t> queued_{0};
  std::atomic<bool> closing_{false};
};

} // namespace

void server::impl::mark_ready(std::shared_ptr<ws_conn> c) {
  std::lock_guard<std::mutex> guard{ready_mtx};
  ready.push_back(std::move(c));
  if (!drain_posted) {
    drain_posted = true;
    net::post(ioc, [this] { drain_ready(); });
  }
}

void server::impl::drain_ready() {
  std::vector<std::shared_ptr<ws_conn>> batch;
  {
    std::lock_guard<std::mutex> guard{ready_mtx};
    batch.swap(ready);
    drain_posted = false;
  }
  for (auto& c : batch)
    c->take_incoming();
}

namespace {

// -- HTTP -------------------------------------------------------------------

class http_conn : public std::enable_shared_from_this<http_conn> {
public:
  http_conn(tcp::socket sock, server::impl* srv)
    : stream_(std::move(sock)), srv_(srv) {}

  void read() {
    parser_.emplace();
    parser_->body_limit(srv_->opts.max_body);
    stream_.expires_after(std::chrono::seconds(60));
    http::async_read(stream_, buf_, *parser_,
                     [self = shared_from_this()](beast::error_code ec,
                                                 std::size_t) {
                       self->on_read(ec);
                     });
  }

private:
  void on_read(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      http_response r{413, "application/json",
                      error_body("too_large",
                                 "request body exceeds "
                                   + std::to_string(srv_->opts.max_body)
                                   + " bytes")};
      draining_ = true; // read the rest so the client sees the 413
      write(std::move(r), 11, false);
      return;
    }
    if (ec) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
      return;
    }
    ++srv_->stats->http_requests;
    auto req = parser_->release();
    auto version = req.version();
    auto keep_alive = req.keep_alive();
    std::string auth;
    if (auto i = req.find(http::field::authorization); i != req.end())
      auth = std::string{i->value()};
    if (websocket::is_upgrade(req)) {
      if (path_of(req.target()) != "/v1/ws") {
        write({404, "application/json",
               error_body("not_found", "WebSockets live at /v1/ws")},
              version, false);
        return;
      }
      ws_upgrade up;
      up.target = std::string{req.target()};
      up.authorization = auth;
      if (auto i = req.find(http::field::origin); i != req.end())
        up.origin = std::string{i->value()};
      if (auto i = req.find(http::field::host); i != req.end())
        up.host = std::string{i->value()};
      if (auto i = req.find(http::field::sec_websocket_protocol);
          i != req.end())
        up.proto = offers(i->value(), proto_subprotocol);
      if (auto refusal = srv_->be->check_upgrade(up)) {
        ++srv_->stats->ws_refused;
        write(std::move(*refusal), version, false);
        return;
      }
      stream_.expires_never();
      std::make_shared<ws_conn>(stream_.release_socket(), srv_, std::move(up))
        ->accept(std::move(req));
      return;
    }
    http_request r;
    r.method = std::string{req.method_string()};
    r.target = std::string{req.target()};
    r.body = std::move(req.body());
    r.authorization = std::move(auth);
    stream_.expires_never(); // the backend answers in bounded time
    srv_->be->handle_http(
      std::move(r), [self = shared_from_this(), version,
                     keep_alive](http_response resp) {
        net::post(self->stream_.get_executor(),
                  [self, version, keep_alive, resp = std::move(resp)]() mutable {
                    self->write(std::move(resp), version, keep_alive);
                  });
      });
  }

  void write(http_response r, unsigned version, bool keep_alive) {
    auto res = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(r.status), version);
    res->set(http::field::server, "sessionhost");
    res->set(http::field::content_type, r.content_type);
    res->body() = std::move(r.body);
    res->keep_alive(keep_alive);
    res->prepare_payload();
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res,
                       keep_alive](beast::error_code ec, std::size_t) {
                        if (ec || !keep_alive) {
                          beast::error_code ignored;
                          self->stream_.socket().shutdown(
                            tcp::socket::shutdown_send, ignored);
                          if (!ec && self->draining_)
                            self->drain(0);
                          return;
                        }
                        self->read();
                      });
  }

  /// Discards what the client still sends (bounded in bytes and time), so
  /// closing does not reset the connection before it read our answer.
  void drain(size_t total) {
    if (total > (64u << 20))
      return;
    if (total == 0)
      stream_.expires_after(std::chrono::seconds(5));
    auto chunk = std::make_shared<std::array<char, 65536>>();
    stream_.async_read_some(
      net::buffer(*chunk), [self = shared_from_this(), chunk,
                            total](beast::error_code ec, std::size_t n) {
        if (!ec)
          self->drain(total + n);
      });
  }

  beast::tcp_stream stream_;
  server::impl* srv_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool draining_ = false;
};

} // namespace

void server::impl::do_accept() {
  acceptor.async_accept(ioc, [this](beast::error_code ec, tcp::socket sock) {
    if (ec)
      return; // closed: stop accepting
    std::make_shared<http_conn>(std::move(sock), this)->read();
    do_accept();
  });
}

server::server(server_options opts, std::shared_ptr<backend> be,
               std::shared_ptr<server_stats> stats)
  : impl_(std::make_shared<impl>(std::move(opts), std::move(be),
                                 std::move(stats))) {}

server::~server() { stop(); }

uint16_t server::start() {
  auto& i = *impl_;
  tcp::endpoint ep{net::ip::make_address(i.opts.host), i.opts.port};
  i.acceptor.open(ep.protocol());
  i.acceptor.set_option(net::socket_base::reuse_address(true));
  i.acceptor.bind(ep);
  i.acceptor.listen(net::socket_base::max_listen_connections);
  auto port = i.acceptor.local_endpoint().port();
  i.do_accept();
  i.thread = std::thread{[&i] { i.ioc.run(); }};
  return port;
}

void server::stop_accepting() {
  auto* i = impl_.get();
  net::post(i->ioc, [i] {
    beast::error_code ignored;
    i->acceptor.close(ignored);
  });
}

size_t server::close_websockets(uint16_t code, int timeout_ms) {
  auto* i = impl_.get();
  {
    std::lock_guard<std::mutex> guard{i->mtx};
    for (auto& [ptr, weak] : i->wss)
      if (auto c = weak.lock())
        c->close(code, "server shutting down");
  }
  auto deadline = std::chrono::steady_clock::now()
                  + std::chrono::milliseconds(timeout_ms);
  while (i->ws_count() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return i->ws_count();
}

void server::stop() {
  auto& i = *impl_;
  if (!i.thread.joinable())
    return;
  stop_accepting();
  i.ioc.stop();
  i.thread.join();
}

server_stats& server::stats() noexcept { return *impl_->stats; }

} // namespace sessionhost::transport
