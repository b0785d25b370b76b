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

/// Whether `s` is valid UTF-8 (RFC 3629: no overlongs, no surrogates).
bool valid_utf8(const std::string& s) {
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  auto end = p + s.size();
  while (p < end) {
    unsigned c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0)
        lo = 0xA0;
      else if (c == 0xED)
        hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0)
        lo = 0x90;
      else if (c == 0xF4)
        hi = 0x8F;
    } else {
      return false;
    }
    if (static_cast<size_t>(end - p) < len || p[1] < lo || p[1] > hi)
      return false;
    for (size_t i = 2; i < len; ++i)
      if (p[i] < 0x80 || p[i] > 0xBF)
        return false;
    p += len;
  }
  return true;
}

/// A control frame (close, ping, pong): payload at most 125 bytes.
wire_frame make_control_frame(uint8_t opcode, std::string_view payload) {
  auto out = std::make_shared<std::string>();
  out->push_back(static_cast<char>(0x80 | opcode));
  out->push_back(static_cast<char>(payload.size()));
  out->append(payload.data(), payload.size());
  return out;
}

wire_frame make_close_frame(uint16_t code, std::string reason) {
  if (reason.size() > 123)
    reason.resize(123);
  std::string payload;
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code & 0xFF));
  payload += reason;
  return make_control_frame(0x8, payload);
}

// Beast does the upgrade handshake; after it the connection speaks RFC 6455
// itself on the bare socket. Server frames are unmasked, so an event's wire
// frame is shared by all its subscribers, and whatever is queued goes out in
// one gathered sendmsg per connection (not one Beast write per message). All
// writes, control frames included, go through the one queue on the io
// thread: nothing can interleave inside a frame.
class ws_conn : public ws_sink, public std::enable_shared_from_this<ws_conn> {
public:
  ws_conn(tcp::socket sock, server::impl* srv, ws_upgrade up)
    : sock_(sock.get_executor()), srv_(srv), proto_(up.proto),
      hs_(std::make_unique<websocket::stream<tcp::socket>>(std::move(sock))),
      up_(std::make_unique<ws_upgrade>(std::move(up))) {}

  ~ws_conn() override { finish(); }

  void accept(http::request<http::string_body> req) {
    websocket::stream_base::timeout t;
    t.handshake_timeout = std::chrono::seconds(1);
    t.idle_timeout = websocket::stream_base::none();
    t.keep_alive_pings = false;
    hs_->set_option(t);
    if (proto_)
      hs_->set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) {
          res.set(http::field::sec_websocket_protocol, proto_subprotocol);
        }));
    hs_->async_accept(req, [self = shared_from_this()](beast::error_code ec) {
      if (ec)
        return;
      // From here on the bare socket: the Beast stream (and its buffers)
      // goes, which also keeps idle connections small.
      self->sock_ = std::move(self->hs_->next_layer());
      self->hs_.reset();
      beast::error_code ignored;
      self->sock_.non_blocking(true, ignored);
      self->sock_.set_option(tcp::no_delay(true), ignored);
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
    return send_frames(std::move(one));
  }

  bool send_frames(std::vector<outgoing_frame> frames) override {
    if (closing_.load())
      return false;
    size_t n = 0;
    for (auto& f : frames)
      n += f.wire->size();
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
      if (incoming_.empty())
        incoming_ = std::move(frames);
      else
        for (auto& f : frames)
          incoming_.push_back(std::move(f));
      post = !take_posted_;
      take_posted_ = true;
    }
    if (post)
      srv_->mark_ready(shared_from_this());
    return true;
  }

  /// On the io thread: moves the frames queued by other threads to `out_`.
  void take_incoming() {
    std::vector<outgoing_frame> batch;
    {
      std::lock_guard<std::mutex> guard{incoming_mtx_};
      batch.swap(incoming_);
      take_posted_ = false;
    }
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
    net::post(sock_.get_executor(), [self = shared_from_this(), code,
                                     reason = std::move(reason), discard] {
      if (discard)
        self->discard_unsent();
      self->queue_close(code, reason);
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

  /// Drops the queued frames not yet started (a partly written one stays:
  /// the peer must get whole frames).
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

  /// Queues a close frame after what is queued; nothing follows it.
  void queue_close(uint16_t code, const std::string& reason) {
    closing_ = true;
    if (close_queued_ || !sock_.is_open())
      return;
    close_queued_ = true;
    close_wire_ = make_close_frame(code, reason);
    queued_ += close_wire_->size();
    out_.push_back({close_wire_, 0});
    flush();
  }

  /// Control frames (pong) go into the same queue as everything else.
  void queue_control(wire_frame f) {
    if (close_queued_)
      return;
    queued_ += f->size();
    out_.push_back({std::move(f), 0});
    flush();
  }

  /// Writes as much of the queue as the socket takes, many frames per
  /// sendmsg; waits for the socket when it is full.
  void flush() {
    if (write_waiting_ || write_failed_ || !sock_.is_open())
      return;
    int fd = sock_.native_handle();
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
      auto sent = ::sendmsg(fd, &mh, MSG_NOSIGNAL);
      if (sent < 0) {
        if (errno == EINTR)
          continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
          return wait_writable();
        write_failed_ = true; // the peer is gone: the read side ends it
        discard_unsent();
        shutdown_socket();
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
        if (f.event_ts != 0)
          srv_->stats->publish_to_send.observe(now - f.event_ts);
        bool was_close = close_wire_ && f.wire == close_wire_;
        pop_out();
        if (was_close)
          close_written();
      }
    }
  }

  void wait_writable() {
    write_waiting_ = true;
    sock_.async_wait(tcp::socket::wait_write,
                     [self = shared_from_this()](beast::error_code ec) {
                       self->write_waiting_ = false;
                       if (!ec)
                         self->flush();
                     });
  }

  /// Our close frame is out: the peer answers with its own (then we close
  /// the TCP connection), or we stop waiting after a second.
  void close_written() {
    if (peer_closed_)
      return shutdown_socket();
    close_timer_ = std::make_unique<net::steady_timer>(sock_.get_executor());
    close_timer_->expires_after(std::chrono::seconds(1));
    close_timer_->async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec)
        self->shutdown_socket();
    });
  }

  void shutdown_socket() {
    if (close_timer_)
      close_timer_->cancel();
    if (!sock_.is_open())
      return;
    beast::error_code ignored;
    sock_.shutdown(tcp::socket::shutdown_both, ignored);
    sock_.close(ignored); // the pending read wait ends: finish()
  }

  // -- reading ----------------------------------------------------------------

  void read() {
    if (!sock_.is_open())
      return finish();
    sock_.async_wait(tcp::socket::wait_read,
                     [self = shared_from_this()](beast::error_code ec) {
                       self->on_readable(ec);
                     });
  }

  void on_readable(beast::error_code ec) {
    if (ec)
      return finish();
    auto& buf = srv_->read_buf;
    auto n = ::recv(sock_.native_handle(), buf.data(), buf.size(), 0);
    if (n == 0)
      return gone();
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return read();
      return gone();
    }
    // After a protocol error the rest is read and dropped (closing the
    // socket with unread bytes would reset it before the peer reads our
    // close frame).
    if (!draining_ && !consume(buf.data(), static_cast<size_t>(n))
        && !draining_)
      return;
    read();
  }

  /// The peer went away (or reset): nothing more can be sent.
  void gone() {
    write_failed_ = true;
    discard_unsent();
    shutdown_socket();
    finish();
  }

  /// A protocol violation: close with `code` (queued frames are dropped);
  /// the peer's messages reach nobody any more. `framing_ok`: the frames
  /// can still be followed (to see the peer's close), else the rest of the
  /// input is dropped unread.
  void fail(uint16_t code, const char* reason, bool framing_ok) {
    if (!framing_ok)
      draining_ = true;
    finish();
    if (close_queued_)
      return; // ours is on its way already
    discard_unsent();
    queue_close(code, reason);
  }

  /// Parses the frames in the bytes read; returns false when reading stops.
  bool consume(const char* data, size_t n) {
    std::string joined;
    if (!partial_.empty()) {
      partial_.append(data, n);
      joined.swap(partial_);
      data = joined.data();
      n = joined.size();
    }
    size_t pos = 0;
    while (pos < n) {
      if (skip_ > 0) { // the rest of a refused frame
        auto k = static_cast<size_t>(std::min<uint64_t>(skip_, n - pos));
        pos += k;
        skip_ -= k;
        continue;
      }
      auto used = frame_at(data + pos, n - pos);
      if (used < 0)
        return false;
      if (used == 0 && skip_ == 0)
        break;
      pos += static_cast<size_t>(used);
    }
    if (pos < n)
      partial_.assign(data + pos, n - pos);
    else
      std::string{}.swap(partial_);
    return true;
  }

  /// Handles the frame at `p` if it is complete: returns the bytes it took,
  /// 0 when more are needed, -1 when reading stops.
  ptrdiff_t frame_at(const char* p, size_t n) {
    auto b = reinterpret_cast<const unsigned char*>(p);
    if (n < 2)
      return 0;
    bool fin = b[0] & 0x80;
    unsigned opcode = b[0] & 0x0F;
    bool masked = b[1] & 0x80;
    uint64_t len = b[1] & 0x7F;
    size_t hdr = 2;
    if (len == 126) {
      if (n < 4)
        return 0;
      len = (uint64_t{b[2]} << 8) | b[3];
      hdr = 4;
    } else if (len == 127) {
      if (n < 10)
        return 0;
      len = 0;
      for (int i = 0; i < 8; ++i)
        len = (len << 8) | b[2 + i];
      hdr = 10;
    }
    bool control = opcode & 0x8;
    if ((b[0] & 0x70) != 0 || !masked
        || (control && (!fin || len > 125 || opcode > 0xA))
        || (!control && opcode > 0x2)
        || (opcode == 0 && !msg_active_)
        || ((opcode == 1 || opcode == 2) && msg_active_)) {
      fail(static_cast<uint16_t>(websocket::close_code::protocol_error),
           "protocol error", false);
      return -1;
    }
    if (!control && (len > srv_->opts.max_frame
                     || msg_.size() + len > srv_->opts.max_frame)) {
      if (!close_queued_)
        ++srv_->stats->ws_oversize_closed;
      fail(static_cast<uint16_t>(websocket::close_code::too_big),
           "message too big", true);
      // Skipped unread (not held in memory), then the frames go on.
      msg_active_ = false;
      std::string{}.swap(msg_);
      skip_ = hdr + 4 + len;
      return 0;
    }
    hdr += 4;
    if (n < hdr || n - hdr < len)
      return 0;
    const unsigned char* key = b + hdr - 4;
    std::string payload(p + hdr, static_cast<size_t>(len));
    for (size_t i = 0; i < payload.size(); ++i)
      payload[i] = static_cast<char>(payload[i] ^ key[i % 4]);
    auto used = static_cast<ptrdiff_t>(hdr + len);
    if (control)
      return on_control(opcode, std::move(payload)) ? used : -1;
    if (close_queued_)
      return used; // closing: the peer's messages reach nobody
    if (opcode != 0) {
      msg_active_ = true;
      msg_binary_ = opcode == 2;
      msg_ = std::move(payload);
    } else {
      msg_ += payload;
    }
    if (!fin)
      return used;
    msg_active_ = false;
    auto msg = std::move(msg_);
    std::string{}.swap(msg_);
    if (msg_binary_) {
      handler_->on_binary(std::move(msg));
    } else {
      if (!valid_utf8(msg)) {
        fail(static_cast<uint16_t>(websocket::close_code::bad_payload),
             "invalid UTF-8", true);
        return used;
      }
      handler_->on_text(std::move(msg));
    }
    return used;
  }

  bool on_control(unsigned opcode, std::string payload) {
    if (opcode == 0x9) {
      queue_control(make_control_frame(0xA, payload));
      return true;
    }
    if (opcode == 0xA)
      return true;
    // Close: echo the code (unless we are closing already), then close TCP.
    peer_closed_ = true;
    closing_ = true;
    if (close_queued_) {
      // Ours is queued or out already: once it is written we close.
      if (out_count() == 0)
        shutdown_socket();
      finish();
      return false;
    }
    uint16_t code = static_cast<uint16_t>(websocket::close_code::normal);
    if (payload.size() >= 2)
      code = static_cast<uint16_t>(
        (static_cast<unsigned char>(payload[0]) << 8)
        | static_cast<unsigned char>(payload[1]));
    finish();
    queue_close(code, "");
    return false;
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

  tcp::socket sock_;
  server::impl* srv_;
  bool proto_; // binary protobuf frames
  // Until the upgrade is done: Beast's stream, then only the socket.
  std::unique_ptr<websocket::stream<tcp::socket>> hs_;
  std::unique_ptr<ws_upgrade> up_; // until the handler is opened
  std::shared_ptr<ws_handler> handler_;
  // Frames to write, oldest at out_head_, of which out_offset_ bytes are
  // written. A vector, not a std::deque: an empty libstdc++ deque still
  // holds ~600 bytes, per idle connection.
  std::vector<outgoing_frame> out_;
  size_t out_head_ = 0;
  size_t out_offset_ = 0;
  wire_frame close_wire_; // our close frame, once queued
  std::unique_ptr<net::steady_timer> close_timer_;
  std::string partial_; // bytes of an incomplete frame
  std::string msg_;     // a fragmented message so far
  std::mutex incoming_mtx_;
  std::vector<outgoing_frame> incoming_; // guarded by incoming_mtx_
  bool take_posted_ = false;             // guarded by incoming_mtx_
  bool msg_active_ = false;
  bool msg_binary_ = false;
  bool write_waiting_ = false;
  bool write_failed_ = false;
  bool close_queued_ = false;
  bool peer_closed_ = false;
  bool draining_ = false; // after a framing error: input is dropped
  uint64_t skip_ = 0;     // bytes of a refused frame still to drop
  bool finished_ = false;
  bool registered_ = false;
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
