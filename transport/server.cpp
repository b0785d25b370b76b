// The Beast side of the server: acceptor, HTTP connections, WebSockets.
// Everything here runs on the one io thread (each connection's handlers are
// serialized by it); `ws_conn::send_frames`, `send_text` and `close` are the
// only entry points called from other threads. Closing posts onto the io
// thread; sending writes to the socket on the caller's thread when nothing is
// queued ahead (see send_frames), else queues for the io thread.
#include <utility> // first: Boost 1.74 Asio with g++12 misses it

#include "transport/server.hpp"

#include <array>
#include <iterator>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
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
class http_conn;

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
  /// The open WebSockets, held (a connection locks its own mutex before
  /// this one: call their methods after letting go of `mtx`).
  std::vector<std::shared_ptr<ws_conn>> open_ws_conns() {
    std::vector<std::shared_ptr<ws_conn>> open;
    std::lock_guard<std::mutex> guard{mtx};
    for (auto& entry : wss)
      if (auto c = entry.second.lock())
        open.push_back(std::move(c));
    return open;
  }

  server_options opts;
  std::shared_ptr<backend> be;
  std::shared_ptr<server_stats> stats;
  std::mutex mtx;
  std::map<ws_conn*, std::weak_ptr<ws_conn>> wss; // guarded by mtx

  /// REST requests the backend is still answering. The connection waits
  /// here, not inside the backend's callback: an actor that answers (or drops
  /// the callback) after the server stopped then holds nothing of Asio's, so
  /// no socket outlives the io_context it belongs to.
  struct pending_http {
    std::mutex mtx;
    bool open = true; // false once stop() began: late answers are dropped
    std::unordered_map<http_conn*, std::shared_ptr<http_conn>> conns;
  };
  std::shared_ptr<pending_http> pending = std::make_shared<pending_http>();
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

  /// Where every WebSocket reads into (io thread only): an idle connection
  /// holds no read buffer of its own.
  std::array<char, 65536> read_buf;
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

/// The buffer a message is read into. Beast prepares room in it before the
/// first bytes arrive, so the read pending on an idle connection would hold
/// `tcp_frame_size` (1.5 KB): while empty it offers only 64 bytes. Beast
/// asks for more once the message has begun.
class lean_read_buffer : public beast::flat_buffer {
public:
  std::size_t max_size() const noexcept {
    return size() == 0 ? 64 : beast::flat_buffer::max_size();
  }
};

/// The layer under each connection's Beast WebSocket stream: reads come from
/// the socket; whatever Beast writes (the upgrade response, pongs, close
/// frames) is copied as one whole entry into the connection's outgoing queue,
/// the same queue the shared event frames go into, and the write completes
/// at once. One queue, one writer: nothing can interleave inside a frame.
class ws_next_layer {
public:
  using executor_type = tcp::socket::executor_type;

  ws_next_layer(tcp::socket sock, ws_conn* conn)
    : sock_(std::move(sock)), conn_(conn) {}

  executor_type get_executor() noexcept { return sock_.get_executor(); }

  tcp::socket& socket() noexcept { return sock_; }
  ws_conn& conn() noexcept { return *conn_; }

  template <class MutableBuffers, class ReadHandler>
  auto async_read_some(const MutableBuffers& buffers, ReadHandler&& handler) {
    return sock_.async_read_some(buffers,
                                 std::forward<ReadHandler>(handler));
  }

  template <class ConstBuffers, class WriteHandler>
  auto async_write_some(const ConstBuffers& buffers, WriteHandler&& handler) {
    return net::async_initiate<WriteHandler,
                               void(beast::error_code, size_t)>(
      [this](auto h, const ConstBuffers& b) {
        auto n = net::buffer_size(b);
        std::string bytes(n, '\0');
        net::buffer_copy(net::buffer(bytes), b);
        queue(std::move(bytes));
        net::post(sock_.get_executor(),
                  beast::bind_front_handler(std::move(h), beast::error_code{},
                                            n));
      },
      handler, buffers);
  }

  /// Beast closes the lowest layer on a timeout (handshake, close).
  friend void beast_close_socket(ws_next_layer& s);

private:
  void queue(std::string bytes); // into the connection's outgoing queue

  tcp::socket sock_;
  ws_conn* conn_;
};

/// Beast's teardown after a close frame: once the queue (the close frame
/// last) is written, shut down sending, read until the peer closes, close.
template <class TeardownHandler>
void async_teardown(beast::role_type, ws_next_layer& s,
                    TeardownHandler&& handler);

// Beast owns the WebSocket protocol for the connection's life: handshake,
// reading and validating client frames (masking, fragments, UTF-8, size),
// answering pings, the close handshake. We write only the data frames:
// server frames are unmasked, so an event's wire frame is shared by all its
// subscribers and goes straight into the queue; everything queued (Beast's
// frames included) goes out in one gathered sendmsg per connection.
class ws_conn : public ws_sink, public std::enable_shared_from_this<ws_conn> {
public:
  ws_conn(tcp::socket sock, server::impl* srv, ws_upgrade up)
    : srv_(srv), queue_limit_(srv->opts.client_queue_bytes), proto_(up.proto),
      ws_(std::in_place, std::move(sock), this),
      up_(std::make_unique<ws_upgrade>(std::move(up))) {
    fd_ = ws_->next_layer().socket().native_handle();
  }

  ~ws_conn() override { finish(); }

  void accept(http::request<http::string_body> req) {
    websocket::stream_base::timeout t;
    t.handshake_timeout = std::chrono::seconds(1);
    t.idle_timeout = websocket::stream_base::none();
    t.keep_alive_pings = false;
    ws_->set_option(t);
    ws_->read_message_max(srv_->opts.max_frame);
    ws_->auto_fragment(false);
    if (proto_)
      ws_->set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) {
          res.set(http::field::sec_websocket_protocol, proto_subprotocol);
        }));
    ws_->async_accept(req, [self = shared_from_this()](beast::error_code ec) {
      if (ec)
        return self->shutdown_socket();
      self->handshake_done_ = true;
      // Beast's close timeout would run while our close frame waits behind
      // queued frames; the clock starts once it is written (close_written).
      websocket::stream_base::timeout open;
      open.handshake_timeout = websocket::stream_base::none();
      open.idle_timeout = websocket::stream_base::none();
      open.keep_alive_pings = false;
      self->ws_->set_option(open);
      beast::error_code ignored;
      self->sock().set_option(tcp::no_delay(true), ignored);
      {
        std::lock_guard<std::recursive_mutex> guard{self->wmtx_};
        self->direct_ok_ = true;
      }
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
    std::vector<outgoing_frame> one;
    one.push_back({make_wire_frame(text, proto_), event_ts});
    return send_frames(one);
  }

  bool send_frames(std::vector<outgoing_frame>& frames) override {
    // Everything under the lock: detach() takes it too, so a sender either
    // finishes before the server stops or finds the connection closing and
    // touches nothing of the server.
    std::lock_guard<std::recursive_mutex> guard{wmtx_};
    struct taken { // the caller's vector is left empty, however this ends
      std::vector<outgoing_frame>& v;
      ~taken() { v.clear(); }
    } emptied{frames};
    if (closing_.load())
      return false;
    size_t n = 0;
    for (auto& f : frames)
      n += f.wire->size();
    auto total = queued_.fetch_add(n) + n;
    if (total > queue_limit_) {
      queued_ -= n;
      ++srv_->stats->ws_slow_closed;
      close_impl(static_cast<uint16_t>(websocket::close_code::try_again_later),
                 "client too slow", true);
      return false;
    }
    bool post = false;
    if (can_write_directly()) {
      // Nothing queued ahead and the socket open: write on this thread.
      // Waking the io thread to write would cost two context switches
      // per burst, most of the work at a moderate event rate; what the
      // socket does not take now is left to the io thread.
      // Moved into out_'s own buffer, kept between bursts (pop_out): no
      // allocation per call on either side.
      out_.clear();
      out_.insert(out_.end(), std::make_move_iterator(frames.begin()),
                  std::make_move_iterator(frames.end()));
      out_head_ = 0;
      out_offset_ = 0;
      flush(false);
      if (out_count() == 0)
        return true;
      post = !take_posted_;
      take_posted_ = true;
    } else {
      // Frames queued from other threads meanwhile go with one post: one
      // hop to the io thread per burst, not per frame.
      incoming_.insert(incoming_.end(), std::make_move_iterator(frames.begin()),
                       std::make_move_iterator(frames.end()));
      post = !take_posted_;
      take_posted_ = true;
    }
    if (post)
      srv_->mark_ready(shared_from_this());
    return true;
  }

  /// The server stops (io thread joined, Asio still alive): the connection
  /// goes inert for whoever still holds it. Senders are refused from now on,
  /// the handler hears it closed, and the socket and timers go now, so the
  /// object may outlive the server and its io_context.
  void detach() {
    std::lock_guard<std::recursive_mutex> guard{wmtx_};
    closing_ = true;
    finish();
    out_.clear();
    out_head_ = 0;
    out_offset_ = 0;
    incoming_.clear();
    queued_ = 0;
    teardown_.reset();
    shutdown_socket();
    close_timer_.reset();
    ws_.reset();
  }

  /// On the io thread: moves the frames queued by other threads to `out_`
  /// (behind what a direct write left there) and writes.
  void take_incoming() {
    std::lock_guard<std::recursive_mutex> guard{wmtx_};
    std::vector<outgoing_frame> batch;
    batch.swap(incoming_);
    take_posted_ = false;
    if (close_queued_) {
      for (auto& f : batch)
        queued_ -= f.wire->size();
      return;
    }
    if (out_count() == 0) {
      out_.swap(batch);
      out_head_ = 0;
    } else {
      for (auto& f : batch)
        out_.push_back(std::move(f));
    }
    flush();
  }

  size_t queued_bytes() const noexcept override { return queued_.load(); }

  size_t queue_limit() const noexcept override { return queue_limit_; }

  void close(uint16_t code, std::string reason) override {
    close_impl(code, std::move(reason), false);
  }

  // -- for ws_next_layer (io thread) -------------------------------------------

  /// Queues bytes Beast wrote: one whole frame (or the upgrade response).
  /// After a close frame nothing else is queued.
  void queue_from_beast(std::string bytes) {
    std::lock_guard<std::recursive_mutex> guard{wmtx_};
    if (close_queued_ || bytes.empty())
      return;
    auto f = std::make_shared<const std::string>(std::move(bytes));
    if (handshake_done_ && (static_cast<unsigned char>((*f)[0]) & 0x0F) == 0x8) {
      close_queued_ = true;
      closing_ = true;
      close_wire_ = f;
    }
    queued_ += f->size();
    out_.push_back({std::move(f), 0});
    flush();
  }

  template <class Handler>
  void start_teardown(Handler&& handler) {
    std::lock_guard<std::recursive_mutex> guard{wmtx_};
    teardown_.emplace(std::forward<Handler>(handler));
    teardown_waiting_ = true;
    if (out_count() == 0 || write_failed_ || !sock().is_open())
      teardown_flushed();
  }

  void shutdown_socket() {
    std::lock_guard<std::recursive_mutex> guard{wmtx_};
    if (close_timer_)
      close_timer_->cancel();
    fd_ = -1; // no direct write from now on (the number may be reused)
    if (!sock().is_open())
      return;
    beast::error_code ignored;
    sock().shutdown(tcp::socket::shutdown_both, ignored);
    sock().close(ignored); // pending reads and waits end
  }

private:
  tcp::socket& sock() noexcept { return ws_->next_layer().socket(); }

  void close_impl(uint16_t code, std::string reason, bool discard) {
    std::lock_guard<std::recursive_mutex> guard{wmtx_}; // see send_frames
    if (closing_.exchange(true))
      return;
    net::post(sock().get_executor(), [self = shared_from_this(), code,
                                      reason = std::move(reason), discard] {
      std::lock_guard<std::recursive_mutex> guard{self->wmtx_};
      if (discard)
        self->discard_unsent();
      if (self->close_queued_ || !self->sock().is_open())
        return;
      // Beast writes the close frame (into the queue, after what is
      // there) and completes the handshake through the pending read.
      self->ws_->async_close(
        websocket::close_reason{static_cast<websocket::close_code>(code),
                                reason},
        [self](beast::error_code) {});
    });
  }

  // -- writing ----------------------------------------------------------------

  size_t out_count() const noexcept { return out_.size() - out_head_; }

  void pop_out() {
    if (++out_head_ < out_.size())
      return;
    out_head_ = 0;
    if (out_.capacity() > 64)
      std::vector<outgoing_frame>{}.swap(out_); // a burst is over
    else
      out_.clear();
  }

  /// Drops the queued event frames not yet started (a partly written one
  /// stays: the peer must get whole frames).
  void discard_unsent() {
    auto keep = out_head_ + (out_offset_ > 0 ? 1 : 0);
    while (out_.size() > keep && out_.size() > out_head_) {
      queued_ -= out_.back().wire->size();
      out_.pop_back();
    }
    if (out_count() == 0) {
      out_.clear();
      out_head_ = 0;
    }
  }

  /// Whether a sender may write on its own thread (wmtx_ held): the
  /// WebSocket is open, nothing is queued or waiting, no close has begun.
  bool can_write_directly() const noexcept {
    return direct_ok_ && fd_ >= 0 && !close_queued_ && !write_waiting_
           && !write_failed_ && !teardown_waiting_ && out_count() == 0
           && incoming_.empty() && !take_posted_;
  }

  /// Writes as much of the queue as the socket takes, many frames per
  /// sendmsg (wmtx_ held). On the io thread it waits for the socket when it
  /// is full and ends the connection when the write fails; elsewhere
  /// (`on_io` false) it leaves both to the io thread and returns.
  void flush(bool on_io = true) {
    if (write_waiting_ || write_failed_ || fd_ < 0)
      return;
    int fd = fd_;
    while (out_count() > 0) {
      std::array<iovec, 64> iov;
      size_t k = 0;
      for (size_t i = out_head_; i < out_.size() && k < iov.size(); ++i, ++k) {
        auto& w = *out_[i].wire;
        auto off = k == 0 ? out_offset_ : 0;
        iov[k].iov_base = const_cast<char*>(w.data() + off);
        iov[k].iov_len = w.size() - off;
      }
      msghdr mh{};
      mh.msg_iov = iov.data();
      mh.msg_iovlen = k;
      auto sent = ::sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent < 0) {
        if (errno == EINTR)
          continue;
        if (!on_io)
          return; // the io thread writes the rest, or meets the error
        if (errno == EAGAIN || errno == EWOULDBLOCK)
          return wait_writable();
        write_failed_ = true; // the peer is gone: the read side ends it
        discard_unsent();
        shutdown_socket();
        if (teardown_waiting_)
          teardown_flushed();
        return;
      }
      auto now = now_us();
      auto left = static_cast<size_t>(sent);
      while (left > 0) {
        auto& f = out_[out_head_];
        auto rest = f.wire->size() - out_offset_;
        if (left < rest) {
          out_offset_ += left;
          break;
        }
        left -= rest;
        out_offset_ = 0;
        queued_ -= f.wire->size();
        if (f.event_ts > 0)
          srv_->stats->publish_to_send.observe(now - f.event_ts);
        else if (f.event_ts < 0)
          srv_->stats->publish_to_ack.observe(now + f.event_ts);
        bool was_close = close_wire_ && f.wire == close_wire_;
        pop_out();
        if (was_close)
          close_written();
      }
    }
    if (teardown_waiting_)
      teardown_flushed();
  }

  void wait_writable() {
    write_waiting_ = true;
    sock().async_wait(tcp::socket::wait_write,
                      [self = shared_from_this()](beast::error_code ec) {
                        std::lock_guard<std::recursive_mutex> guard{
                          self->wmtx_};
                        self->write_waiting_ = false;
                        if (!ec)
                          self->flush();
                        else if (self->teardown_waiting_)
                          self->teardown_flushed();
                      });
  }

  /// A close frame is out: the close handshake and teardown get a second,
  /// then the TCP connection is closed regardless.
  void close_written() {
    close_timer_ = std::make_unique<net::steady_timer>(sock().get_executor());
    close_timer_->expires_after(std::chrono::seconds(1));
    close_timer_->async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec)
        self->shutdown_socket();
    });
  }

  /// Teardown, once the queue is written: stop sending, read (and drop)
  /// until the peer closes, so closing does not reset the connection
  /// before the peer read our close frame.
  void teardown_flushed() {
    teardown_waiting_ = false;
    if (!sock().is_open())
      return teardown_done();
    beast::error_code ignored;
    sock().shutdown(tcp::socket::shutdown_send, ignored);
    drain_input();
  }

  void drain_input() {
    sock().async_read_some(
      net::buffer(srv_->read_buf),
      [self = shared_from_this()](beast::error_code ec, size_t) {
        if (!ec)
          return self->drain_input();
        self->teardown_done();
      });
  }

  void teardown_done() {
    shutdown_socket();
    // Completed from a handler of our own, never inside async_teardown.
    net::post(sock().get_executor(), [self = shared_from_this()] {
      self->teardown_.maybe_invoke();
    });
  }

  // -- reading ----------------------------------------------------------------

  void read() {
    ws_->async_read(rd_, [self = shared_from_this()](beast::error_code ec,
                                                    size_t) {
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    if (ec) {
      if (ec == websocket::error::message_too_big)
        ++srv_->stats->ws_oversize_closed;
      finish();
      if (ec != websocket::error::closed)
        shutdown_socket(); // failed or reset: nothing more to say
      return;
    }
    // The message leaves the buffer, and the buffer its memory: an idle
    // connection holds no message buffer.
    auto msg = beast::buffers_to_string(rd_.data());
    rd_.clear();
    rd_.shrink_to_fit();
    if (!close_queued_) { // closing: the peer's messages reach nobody
      if (ws_->got_binary())
        handler_->on_binary(std::move(msg));
      else
        handler_->on_text(std::move(msg));
    }
    read();
  }

  void finish() {
    if (finished_)
      return;
    finished_ = true;
    closing_ = true;
    if (registered_) {
      srv_->remove_ws(this);
      --srv_->stats->ws_open;
    }
    if (handler_)
      handler_->on_closed();
  }

  server::impl* srv_;
  size_t queue_limit_; // the server's option, kept: the server may go first
  bool proto_; // binary protobuf frames
  // Frames to write, oldest at out_head_, of which out_offset_ bytes are
  // written. A vector, not a std::deque: an empty libstdc++ deque still
  // holds ~600 bytes, per idle connection. Declared before the stream:
  // Beast may queue into it while the stream is destroyed.
  // Guards the outgoing side, which senders on other threads write to
  // directly: out_*, incoming_, take_posted_, fd_, direct_ok_ and the
  // write and close flags. Recursive: Beast queues its frames from inside
  // calls made under it. Declared before the stream, like out_.
  std::recursive_mutex wmtx_;
  std::vector<outgoing_frame> out_;
  size_t out_head_ = 0;
  size_t out_offset_ = 0;
  wire_frame close_wire_; // the close frame, once queued
  std::unique_ptr<net::steady_timer> close_timer_;
  beast::saved_handler teardown_; // Beast's teardown, until done
  // Beast registers every stream with its io_context, so a stream must go
  // before the io_context does: detach() ends it early when the server stops
  // while someone still holds the connection.
  std::optional<websocket::stream<ws_next_layer, false>> ws_;
  std::unique_ptr<ws_upgrade> up_; // until the handler is opened
  std::shared_ptr<ws_handler> handler_;
  lean_read_buffer rd_; // the message being read (empty when idle)
  std::vector<outgoing_frame> incoming_; // queued for the io thread
  bool take_posted_ = false;             // a take_incoming is posted
  int fd_ = -1;             // the socket, until it is closed
  bool direct_ok_ = false;  // open for senders' direct writes
  bool write_waiting_ = false;
  bool write_failed_ = false;
  bool close_queued_ = false;
  bool teardown_waiting_ = false;
  bool finished_ = false;
  bool registered_ = false;
  bool handshake_done_ = false; // until then Beast writes HTTP, not frames
  std::atomic<size_t> queued_{0};
  std::atomic<bool> closing_{false};
};

void ws_next_layer::queue(std::string bytes) {
  conn_->queue_from_beast(std::move(bytes));
}

void beast_close_socket(ws_next_layer& s) { s.conn().shutdown_socket(); }

template <class TeardownHandler>
void async_teardown(beast::role_type, ws_next_layer& s,
                    TeardownHandler&& handler) {
  s.conn().start_teardown(
    beast::bind_front_handler(std::forward<TeardownHandler>(handler),
                              beast::error_code{}));
}

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
    auto pending = srv_->pending;
    {
      std::lock_guard<std::mutex> guard{pending->mtx};
      pending->conns.emplace(this, shared_from_this());
    }
    srv_->be->handle_http(
      std::move(r),
      [wp = std::weak_ptr<server::impl::pending_http>{pending}, conn = this,
       version, keep_alive](http_response resp) {
        auto p = wp.lock();
        if (!p)
          return; // the server is gone
        std::lock_guard<std::mutex> guard{p->mtx};
        auto i = p->conns.find(conn);
        if (!p->open || i == p->conns.end())
          return; // stopping: the connection is dropped
        auto self = std::move(i->second);
        p->conns.erase(i);
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
  for (auto& c : i->open_ws_conns())
    c->close(code, "server shutting down");
  auto deadline = std::chrono::steady_clock::now()
                  + std::chrono::milliseconds(timeout_ms);
  while (i->ws_count() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return i->ws_count();
}

void server::stop() {
  auto& i = *impl_;
  {
    std::lock_guard<std::mutex> guard{i.pending->mtx};
    i.pending->open = false; // answers from now on find no connection
  }
  if (!i.thread.joinable())
    return;
  stop_accepting();
  i.ioc.stop();
  i.thread.join();
  // Connections still waiting for the backend close here, while Asio lives.
  decltype(i.pending->conns) waiting;
  {
    std::lock_guard<std::mutex> guard{i.pending->mtx};
    waiting.swap(i.pending->conns);
  }
  // WebSockets an actor may still hold and write to: inert from now on.
  for (auto& c : i.open_ws_conns())
    c->detach();
  std::lock_guard<std::mutex> guard{i.ready_mtx};
  i.ready.clear();
}

server_stats& server::stats() noexcept { return *impl_->stats; }

} // namespace sessionhost::transport
