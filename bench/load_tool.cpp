// sessionhost-load: WebSocket fan-out load against a running `sessionhost
// serve` (docs/PERFORMANCE.md, "Fan-out").
//
// Creates R sessions over REST (or takes --ids), opens P producer connections
// (each attaches as the peer of its share of the sessions and publishes into
// them) and R × C subscriber connections (C per session), then publishes for
// --duration seconds either at a fixed total --rate or as fast as --window
// unacknowledged publishes allow. Every event carries its send time (steady
// clock of this process) in its data; subscribers check seqs per connection
// (no gap, no duplicate) and record publish-to-receive latency. Prints ONE
// JSON line; exits 1 on any gap, duplicate, error or timeout, 2 on bad usage.
//
// --idle: no publishing; opens the subscribed connections, reports the
// server's resident memory per connection, holds them for --duration.
//
// --protocol=socketio|ws: the same scenarios against the comparison servers
// in bench/reference/ (Socket.IO 4.8 with rooms, plain `ws` 8): rooms named
// room-0…room-(R-1) instead of created sessions, and the producer numbers
// each room's events itself (seq in the payload), so gaps and duplicates are
// checked the same way. Those servers persist nothing.
//
// The server's own view: /metrics is scraped before and after the measured
// window and the p50/p99 of its latency histograms over the window (stage by
// stage: publish to durable, to send, to ack) are printed beside ours.
//
// --busy-poll (a diagnostic, off by default): the loop polls epoll with a
// zero timeout instead of sleeping in it, so this process's own wake-up is
// out of the publish-to-receive figure (and one CPU is spent spinning).
//
// A plain single-threaded epoll client with its own minimal HTTP/WebSocket
// framing: nothing here is shared with the server's code.
#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <memory>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sstream>
#include <string>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace {

/// Which server the tool talks to: sessionhost's own protocol, or one of the
/// comparison servers in bench/reference/.
enum class protocol { sessionhost, socketio, ws };

const char* protocol_name(protocol p) {
  switch (p) {
    case protocol::socketio: return "socketio";
    case protocol::ws: return "ws";
    default: return "sessionhost";
  }
}

using clk = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           clk::now().time_since_epoch())
    .count();
}

double secs(int64_t ns) { return static_cast<double>(ns) / 1e9; }

[[noreturn]] void die(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "sessionhost-load: %s\n", msg.c_str());
  std::exit(code);
}

// -- options ----------------------------------------------------------------

struct options {
  std::string url = "http://127.0.0.1:8080";
  std::string token;
  std::string ids; // comma-separated existing session ids
  std::string type = "echo";
  int sessions = 10;
  int clients = 10; // subscriber connections per session
  int producers = 0; // 0: min(sessions, 10)
  double rate = 0;  // published events/s in total; 0: as fast as the window allows
  int window = 1000; // unacknowledged publishes in flight, in total
  double duration = 5;
  double warmup = 0.5; // seconds after the start not counted
  int payload = 200;   // approximate event JSON size in bytes
  int max_connecting = 256; // handshakes in progress at once
  double timeout = 30; // bound for each phase (connect, drain)
  long server_pid = 0; // 0: find the process listening on the URL's port
  bool idle = false;
  protocol proto = protocol::sessionhost;
  bool busy_poll = false; // diagnostic: spin on epoll instead of sleeping
};

constexpr const char* usage =
  "usage: sessionhost-load [--url=http://HOST:PORT] [--token=T]\n"
  "         [--sessions=R | --ids=ID,ID,…] [--clients=C] [--producers=P]\n"
  "         [--rate=PUBLISHED_PER_S | --window=N] [--duration=S] [--warmup=S]\n"
  "         [--payload=BYTES] [--type=echo] [--timeout=S] [--server-pid=PID]\n"
  "         [--max-connecting=N] [--idle] [--busy-poll]\n"
  "         [--protocol=sessionhost|socketio|ws]\n";

options parse_options(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    if (a == "--idle") {
      o.idle = true;
      continue;
    }
    if (a == "--busy-poll") {
      o.busy_poll = true;
      continue;
    }
    auto eq = a.find('=');
    if (a.rfind("--", 0) != 0 || eq == std::string::npos)
      die("unexpected argument \"" + a + "\"\n" + usage, 2);
    auto key = a.substr(2, eq - 2);
    auto val = a.substr(eq + 1);
    auto num = [&](double lo, double hi) {
      char* end = nullptr;
      errno = 0;
      double v = std::strtod(val.c_str(), &end);
      if (val.empty() || *end != '\0' || errno != 0 || v < lo || v > hi)
        die("--" + key + " must be a number in [" + std::to_string(lo) + ", "
              + std::to_string(hi) + "], got \"" + val + "\"",
            2);
      return v;
    };
    if (key == "url")
      o.url = val;
    else if (key == "token")
      o.token = val;
    else if (key == "ids")
      o.ids = val;
    else if (key == "type")
      o.type = val;
    else if (key == "sessions")
      o.sessions = static_cast<int>(num(1, 1e6));
    else if (key == "clients")
      o.clients = static_cast<int>(num(0, 1e6));
    else if (key == "producers")
      o.producers = static_cast<int>(num(1, 1e5));
    else if (key == "rate")
      o.rate = num(0, 1e8);
    else if (key == "window")
      o.window = static_cast<int>(num(1, 1e7));
    else if (key == "duration")
      o.duration = num(0, 86400);
    else if (key == "warmup")
      o.warmup = num(0, 3600);
    else if (key == "payload")
      o.payload = static_cast<int>(num(0, 1 << 20));
    else if (key == "max-connecting")
      o.max_connecting = static_cast<int>(num(1, 1e6));
    else if (key == "timeout")
      o.timeout = num(0.1, 86400);
    else if (key == "server-pid")
      o.server_pid = static_cast<long>(num(1, 1e9));
    else if (key == "protocol") {
      if (val == "sessionhost")
        o.proto = protocol::sessionhost;
      else if (val == "socketio")
        o.proto = protocol::socketio;
      else if (val == "ws")
        o.proto = protocol::ws;
      else
        die("--protocol must be sessionhost, socketio or ws, got \"" + val
              + "\"",
            2);
    }
    else
      die("unknown option --" + key + "\n" + usage, 2);
  }
  return o;
}

// -- the server process: /proc ------------------------------------------------

struct proc_sample {
  double cpu_s = 0; // utime + stime
  long rss_kb = 0;
};

bool sample_proc(long pid, proc_sample& out) {
  if (pid <= 0)
    return false;
  std::ifstream stat{"/proc/" + std::to_string(pid) + "/stat"};
  std::string line;
  if (!std::getline(stat, line))
    return false;
  auto rp = line.rfind(')');
  if (rp == std::string::npos)
    return false;
  std::istringstream rest{line.substr(rp + 2)};
  std::string field;
  unsigned long utime = 0, stime = 0;
  // Fields from 3 (state) on; utime and stime are fields 14 and 15.
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14)
      utime = std::stoul(field);
    if (i == 15)
      stime = std::stoul(field);
  }
  out.cpu_s = static_cast<double>(utime + stime)
              / static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream status{"/proc/" + std::to_string(pid) + "/status"};
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0)
      out.rss_kb = std::atol(line.c_str() + 6);
  return true;
}

/// Steal time of this machine's CPUs (1/100 s each, from /proc/stat): time
/// the hypervisor ran something else while a vCPU had work. On a shared VM
/// it moves latency figures more than anything in the server, so every run
/// reports it.
std::vector<long> sample_steal() {
  std::vector<long> out;
  std::ifstream stat{"/proc/stat"};
  std::string line;
  while (std::getline(stat, line)) {
    if (line.rfind("cpu", 0) != 0)
      break;
    if (line.size() < 4 || line[3] == ' ')
      continue; // the aggregate line: per CPU below
    std::istringstream in{line};
    std::string name;
    in >> name;
    long v = 0, steal = 0;
    // user nice system idle iowait irq softirq steal
    for (int i = 0; i < 8 && in >> v; ++i)
      if (i == 7)
        steal = v;
    out.push_back(steal);
  }
  return out;
}

/// The pid of the process with a listening TCP socket on `port`, or 0.
long find_listener(uint16_t port) {
  std::vector<std::string> inodes;
  for (auto file : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in{file};
    std::string line;
    std::getline(in, line); // header
    while (std::getline(in, line)) {
      std::istringstream s{line};
      std::string sl, local, remote, st, queues, tr, retr, uid, timeout, inode;
      s >> sl >> local >> remote >> st >> queues >> tr >> retr >> uid
        >> timeout >> inode;
      auto colon = local.rfind(':');
      if (st != "0A" || colon == std::string::npos)
        continue;
      if (std::stoul(local.substr(colon + 1), nullptr, 16) == port)
        inodes.push_back("socket:[" + inode + "]");
    }
  }
  if (inodes.empty())
    return 0;
  std::unique_ptr<DIR, int (*)(DIR*)> proc{opendir("/proc"), closedir};
  if (!proc)
    return 0;
  while (auto* d = readdir(proc.get())) {
    char* end = nullptr;
    long pid = std::strtol(d->d_name, &end, 10);
    if (*end != '\0' || pid <= 0)
      continue;
    auto fddir = "/proc/" + std::string{d->d_name} + "/fd";
    std::unique_ptr<DIR, int (*)(DIR*)> fds{opendir(fddir.c_str()), closedir};
    if (!fds)
      continue;
    while (auto* f = readdir(fds.get())) {
      char buf[64];
      auto path = fddir + "/" + f->d_name;
      auto n = readlink(path.c_str(), buf, sizeof buf - 1);
      if (n <= 0)
        continue;
      buf[n] = '\0';
      for (auto& ino : inodes)
        if (ino == buf)
          return pid;
    }
  }
  return 0;
}

// -- sockets ------------------------------------------------------------------

struct endpoint {
  std::string host;
  uint16_t port = 0;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
};

endpoint parse_url(const std::string& url) {
  endpoint ep;
  auto rest = url;
  for (auto scheme : {"http://", "ws://"})
    if (rest.rfind(scheme, 0) == 0)
      rest = rest.substr(std::strlen(scheme));
  if (auto slash = rest.find('/'); slash != std::string::npos)
    rest = rest.substr(0, slash);
  auto colon = rest.rfind(':');
  if (colon == std::string::npos)
    die("--url needs a port: " + url, 2);
  ep.host = rest.substr(0, colon);
  if (ep.host.size() > 2 && ep.host.front() == '[')
    ep.host = ep.host.substr(1, ep.host.size() - 2);
  ep.port = static_cast<uint16_t>(std::atoi(rest.c_str() + colon + 1));
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(ep.host.c_str(), std::to_string(ep.port).c_str(), &hints,
                  &res)
        != 0
      || !res)
    die("cannot resolve " + ep.host, 2);
  std::memcpy(&ep.addr, res->ai_addr, res->ai_addrlen);
  ep.addr_len = res->ai_addrlen;
  freeaddrinfo(res);
  return ep;
}

int open_socket(const endpoint& ep, bool nonblocking) {
  int fd = socket(ep.addr.ss_family,
                  SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0),
                  0);
  if (fd < 0)
    die(std::string{"socket: "} + std::strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// -- REST: blocking, one keep-alive connection ----------------------------------

class rest_client {
public:
  rest_client(const endpoint& ep, std::string token, double timeout)
    : ep_(ep), token_(std::move(token)) {
    fd_ = open_socket(ep_, false);
    timeval tv{static_cast<time_t>(timeout),
               static_cast<suseconds_t>((timeout - static_cast<long>(timeout))
                                        * 1e6)};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd_, reinterpret_cast<const sockaddr*>(&ep_.addr), ep_.addr_len)
        != 0)
      die("cannot connect to " + ep_.host + ":" + std::to_string(ep_.port)
          + ": " + std::strerror(errno));
  }
  ~rest_client() { close(fd_); }

  /// Returns the status; `body` gets the response body.
  int request(const std::string& method, const std::string& target,
              const std::string& req_body, std::string& body) {
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + ep_.host
                      + "\r\nContent-Type: application/json\r\nContent-Length: "
                      + std::to_string(req_body.size()) + "\r\n";
    if (!token_.empty())
      req += "Authorization: Bearer " + token_ + "\r\n";
    req += "\r\n" + req_body;
    for (size_t off = 0; off < req.size();) {
      auto n = ::send(fd_, req.data() + off, req.size() - off, MSG_NOSIGNAL);
      if (n <= 0)
        die(std::string{"REST send failed: "} + std::strerror(errno));
      off += static_cast<size_t>(n);
    }
    size_t head_end;
    while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos)
      fill();
    auto head = buf_.substr(0, head_end);
    int status = std::atoi(head.c_str() + head.find(' ') + 1);
    size_t length = 0;
    std::string lower = head;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    if (auto cl = lower.find("content-length:"); cl != std::string::npos)
      length = std::strtoul(head.c_str() + cl + 15, nullptr, 10);
    while (buf_.size() < head_end + 4 + length)
      fill();
    body = buf_.substr(head_end + 4, length);
    buf_.erase(0, head_end + 4 + length);
    return status;
  }

private:
  void fill() {
    char tmp[65536];
    auto n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0)
      die(std::string{"REST connection failed: "}
          + (n == 0 ? "closed by the server" : std::strerror(errno)));
    buf_.append(tmp, static_cast<size_t>(n));
  }

  endpoint ep_;
  std::string token_;
  int fd_ = -1;
  std::string buf_;
};

// -- the server's latency histograms (/metrics) ---------------------------------

/// One histogram's cumulative buckets: (upper bound in seconds, count), in
/// order, +Inf last.
using buckets = std::vector<std::pair<double, double>>;
/// Every `sessionhost_*` histogram of one /metrics scrape, by name.
using histograms = std::map<std::string, buckets>;

histograms parse_histograms(const std::string& body) {
  histograms out;
  std::istringstream in{body};
  const std::string tag = "_bucket{le=\"";
  for (std::string line; std::getline(in, line);) {
    auto b = line.find(tag);
    auto sp = line.rfind(' ');
    if (line.rfind("sessionhost_", 0) != 0 || b == std::string::npos
        || sp == std::string::npos)
      continue;
    auto le = line.substr(b + tag.size(),
                          line.find('"', b + tag.size()) - b - tag.size());
    out[line.substr(0, b)].emplace_back(
      le == "+Inf" ? HUGE_VAL : std::strtod(le.c_str(), nullptr),
      std::strtod(line.c_str() + sp + 1, nullptr));
  }
  return out;
}

/// GET /metrics; nothing when the server does not answer it with 200.
histograms scrape_histograms(const endpoint& ep, const options& o) {
  rest_client rest{ep, o.token, o.timeout};
  std::string body;
  if (rest.request("GET", "/metrics", "", body) != 200)
    return {};
  return parse_histograms(body);
}

/// The q-quantile in µs of what was observed between scrapes `a` and `b`,
/// interpolated linearly inside its bucket (as Prometheus'
/// histogram_quantile does; a quantile in +Inf gives the last finite bound).
/// -1 when nothing was observed.
double quantile_us(const buckets& a, const buckets& b, double q) {
  auto delta = [&](size_t i) {
    return b[i].second - (i < a.size() ? a[i].second : 0.0);
  };
  if (b.empty() || delta(b.size() - 1) <= 0)
    return -1;
  auto rank = q * delta(b.size() - 1);
  for (size_t i = 0; i < b.size(); ++i) {
    if (delta(i) < rank)
      continue;
    double lo = i == 0 ? 0.0 : b[i - 1].first;
    if (std::isinf(b[i].first))
      return lo * 1e6;
    double below = i == 0 ? 0.0 : delta(i - 1);
    double in = delta(i) - below;
    double frac = in > 0 ? (rank - below) / in : 1.0;
    return (lo + (b[i].first - lo) * frac) * 1e6;
  }
  return -1;
}

/// `"server_latency_us":{…},` for the JSON line: count, p50 and p99 of each
/// histogram over the window; empty when the server has none.
std::string server_latency_json(const histograms& before,
                                const histograms& after) {
  std::string out;
  for (auto& [name, b] : after) {
    auto i = before.find(name);
    static const buckets none;
    auto& a = i == before.end() ? none : i->second;
    if (a.size() > b.size())
      continue; // the server restarted between the scrapes
    auto stage = name.substr(std::strlen("sessionhost_")); // parse checked
    if (auto s = stage.rfind("_seconds"); s != std::string::npos)
      stage = stage.substr(0, s);
    // How many took longer than 5 ms: a few long commits hold many events.
    double over_5ms = 0;
    for (size_t k = 0; k < b.size(); ++k)
      if (b[k].first == 0.005)
        over_5ms = (b.back().second - b[k].second)
                   - (k < a.size() ? a.back().second - a[k].second : 0.0);
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%s\"%s\":{\"count\":%.0f,\"p50\":%.0f,\"p99\":%.0f,"
                  "\"over_5ms\":%.0f}",
                  out.empty() ? "" : ",", stage.c_str(),
                  b.back().second - (a.empty() ? 0.0 : a.back().second),
                  quantile_us(a, b, 0.50), quantile_us(a, b, 0.99), over_5ms);
    out += buf;
  }
  if (out.empty())
    return out;
  return "\"server_latency_us\":{\"source\":\"/metrics bucket deltas over "
         "the window, interpolated\","
         + out + "},";
}

/// The value of the first `"key":"…"` string in `json` (no escapes expected).
std::string json_string(const std::string& json, const char* key) {
  auto k = std::string{"\""} + key + "\":\"";
  auto i = json.find(k);
  if (i == std::string::npos)
    return {};
  i += k.size();
  auto j = json.find('"', i);
  return j == std::string::npos ? std::string{} : json.substr(i, j - i);
}

/// The integer after `"key":` in [p, end), or -1.
int64_t json_int(const char* p, const char* end, const char* key, size_t klen) {
  auto* hit = std::search(p, end, key, key + klen);
  if (hit == end)
    return -1;
  hit += klen;
  if (hit == end || *hit < '0' || *hit > '9')
    return -1;
  int64_t v = 0;
  while (hit != end && *hit >= '0' && *hit <= '9')
    v = v * 10 + (*hit++ - '0');
  return v;
}

bool contains(const char* p, const char* end, const char* s) {
  auto n = std::strlen(s);
  return std::search(p, end, s, s + n) != end;
}

// -- WebSocket connections ------------------------------------------------------

enum class conn_state { idle, connecting, handshake, open, closed };

struct connection {
  int fd = -1;
  conn_state st = conn_state::idle;
  bool producer = false;
  std::string out;
  size_t out_off = 0;
  std::vector<char> in;
  size_t in_len = 0;
  std::string frag; // a fragmented message being collected
  // subscriber
  int session = -1;
  bool subscribed = false;
  uint64_t next_seq = 0; // next expected seq, valid once subscribed
  uint64_t gaps = 0, dups = 0;
  // producer
  std::vector<int> sessions;
  size_t rr = 0;
  int inflight = 0;
  int window = 0;
  int attach_pending = 0;
  // Socket.IO: the Engine.IO open packet and the namespace connect came
  bool sio_connected = false;
};

struct session_state {
  std::string id;
  int producer = -1;
  uint64_t last_acked = 0; // highest seq acknowledged by the server
  uint64_t last_published = 0; // reference protocols: the producer's own seq
};

class load_run {
public:
  explicit load_run(options o) : o_(std::move(o)), ep_(parse_url(o_.url)) {
    ep_fd_ = epoll_create1(EPOLL_CLOEXEC);
    // Padding so that a delivered event's frame is about --payload bytes in
    // every protocol (sessionhost's events carry more fields around it).
    int overhead = o_.proto == protocol::sessionhost ? 150 : 80;
    padding_.assign(static_cast<size_t>(std::max(0, o_.payload - overhead)), 'x');
  }

  int run();

private:
  // setup
  void create_sessions();
  void open(connection& c, int idx);
  void want_write(connection& c, int idx, bool on);
  void send_frame(connection& c, int idx, const std::string& text);
  void flush(connection& c, int idx);
  // the loop
  bool poll_once(int timeout_ms);
  void on_readable(connection& c, int idx);
  void on_message(connection& c, int idx, const char* p, size_t n);
  void on_event(connection& c, const char* p, size_t n);
  void on_ack(connection& c, int idx, const char* p, size_t n);
  // the protocols
  void on_upgraded(connection& c, int idx);
  void on_upgraded_reference(connection& c, int idx);
  void on_message_socketio(connection& c, int idx, const char* p, size_t n);
  std::string publish_frame(int s);
  std::string publish_frame_reference(int s);
  void fail(const std::string& what);
  void close_conn(connection& c, const std::string& why);
  // publishing
  void publish(connection& c, int idx);
  int next_producer_with_room();

  options o_;
  endpoint ep_;
  int ep_fd_ = -1;
  std::vector<session_state> sessions_;
  std::unordered_map<std::string, int> session_index_;
  std::vector<connection> conns_; // producers first, then subscribers
  int nproducers_ = 0;
  int connecting_ = 0;
  size_t next_to_open_ = 0;
  int attached_ = 0;
  int subscribed_ = 0;
  bool measuring_ = false;
  bool publishing_ = false;
  int64_t window_start_ = 0, window_end_ = 0;
  uint64_t delivered_total_ = 0, delivered_window_ = 0;
  uint64_t published_ = 0, acked_ = 0, published_window_ = 0;
  uint64_t errors_ = 0, closed_unexpectedly_ = 0, behind_ = 0;
  std::vector<uint32_t> latencies_us_;
  std::string first_error_;
  std::string padding_;
  size_t rr_producer_ = 0;
  size_t last_event_bytes_ = 0; // one delivered event's frame payload
};

void load_run::fail(const std::string& what) {
  ++errors_;
  if (first_error_.empty())
    first_error_ = what;
}

void load_run::create_sessions() {
  if (!o_.ids.empty()) {
    std::stringstream s{o_.ids};
    std::string id;
    while (std::getline(s, id, ','))
      if (!id.empty())
        sessions_.push_back({id});
    return;
  }
  if (o_.proto != protocol::sessionhost) {
    // The reference servers have rooms, made by joining: nothing to create.
    for (int i = 0; i < o_.sessions; ++i)
      sessions_.push_back({"room-" + std::to_string(i)});
    return;
  }
  rest_client rest{ep_, o_.token, o_.timeout};
  std::string body;
  for (int i = 0; i < o_.sessions; ++i) {
    auto status = rest.request("POST", "/v1/sessions",
                               "{\"type\":\"" + o_.type + "\"}", body);
    if (status != 201)
      die("POST /v1/sessions answered " + std::to_string(status) + ": " + body);
    auto id = json_string(body, "id");
    if (id.empty())
      die("POST /v1/sessions: no id in " + body);
    sessions_.push_back({id});
  }
}

void load_run::want_write(connection& c, int idx, bool on) {
  epoll_event ev{};
  ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
  ev.data.u32 = static_cast<uint32_t>(idx);
  epoll_ctl(ep_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void load_run::open(connection& c, int idx) {
  c.fd = open_socket(ep_, true);
  c.in.resize(c.producer ? 1 << 16 : 1 << 14);
  auto rc = connect(c.fd, reinterpret_cast<const sockaddr*>(&ep_.addr),
                    ep_.addr_len);
  if (rc != 0 && errno != EINPROGRESS)
    die(std::string{"connect: "} + std::strerror(errno));
  c.st = conn_state::connecting;
  ++connecting_;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u32 = static_cast<uint32_t>(idx);
  epoll_ctl(ep_fd_, EPOLL_CTL_ADD, c.fd, &ev);
  const char* path = o_.proto == protocol::socketio
                       ? "/socket.io/?EIO=4&transport=websocket"
                       : (o_.proto == protocol::ws ? "/" : "/v1/ws");
  c.out = std::string{"GET "} + path + " HTTP/1.1\r\nHost: " + ep_.host + ":"
          + std::to_string(ep_.port)
          + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: c2Vzc2lvbmhvc3QtbG9hZA==\r\n"
            "Sec-WebSocket-Version: 13\r\n";
  if (!o_.token.empty())
    c.out += "Authorization: Bearer " + o_.token + "\r\n";
  c.out += "\r\n";
  c.out_off = 0;
}

/// Queues one masked text frame (the mask key is zero: loopback load, and
/// XOR with zero leaves the payload as it is).
void load_run::send_frame(connection& c, int idx, const std::string& text) {
  auto n = text.size();
  bool was_empty = c.out_off == c.out.size();
  c.out.push_back(static_cast<char>(0x81));
  if (n < 126) {
    c.out.push_back(static_cast<char>(0x80 | n));
  } else if (n < 65536) {
    c.out.push_back(static_cast<char>(0x80 | 126));
    c.out.push_back(static_cast<char>(n >> 8));
    c.out.push_back(static_cast<char>(n & 0xff));
  } else {
    c.out.push_back(static_cast<char>(0x80 | 127));
    for (int s = 56; s >= 0; s -= 8)
      c.out.push_back(static_cast<char>((static_cast<uint64_t>(n) >> s) & 0xff));
  }
  c.out.append(4, '\0');
  c.out += text;
  if (was_empty && c.st == conn_state::open)
    flush(c, idx);
}

void load_run::flush(connection& c, int idx) {
  while (c.out_off < c.out.size()) {
    auto n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
                    MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        want_write(c, idx, true);
        return;
      }
      close_conn(c, std::string{"send: "} + std::strerror(errno));
      return;
    }
    c.out_off += static_cast<size_t>(n);
  }
  c.out.clear();
  c.out_off = 0;
  want_write(c, idx, false);
}

void load_run::close_conn(connection& c, const std::string& why) {
  if (c.st == conn_state::closed)
    return;
  if (c.st == conn_state::connecting || c.st == conn_state::handshake)
    --connecting_;
  c.st = conn_state::closed;
  epoll_ctl(ep_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
  ::close(c.fd);
  ++closed_unexpectedly_;
  fail((c.producer ? "producer" : "subscriber") + std::string{" connection: "}
       + why);
}

void load_run::on_readable(connection& c, int idx) {
  for (;;) {
    if (c.in_len == c.in.size())
      c.in.resize(c.in.size() * 2);
    auto space = c.in.size() - c.in_len;
    auto n = ::recv(c.fd, c.in.data() + c.in_len, space, 0);
    if (n == 0)
      return close_conn(c, "closed by the server");
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      return close_conn(c, std::string{"recv: "} + std::strerror(errno));
    }
    c.in_len += static_cast<size_t>(n);
    if (static_cast<size_t>(n) < space)
      break; // read all there was
  }
  size_t off = 0;
  const char* b = c.in.data();
  if (c.st == conn_state::handshake) {
    auto* end = b + c.in_len;
    const char crlf2[] = "\r\n\r\n";
    auto* hit = std::search(b, end, crlf2, crlf2 + 4);
    if (hit == end)
      return;
    if (!contains(b, hit, " 101 "))
      return close_conn(c, "upgrade refused: "
                             + std::string{b, std::min<size_t>(hit - b, 200)});
    off = static_cast<size_t>(hit - b) + 4;
    c.st = conn_state::open;
    --connecting_;
    on_upgraded(c, idx);
    flush(c, idx);
  }
  while (c.st == conn_state::open) {
    size_t avail = c.in_len - off;
    if (avail < 2)
      break;
    auto* p = reinterpret_cast<const unsigned char*>(b + off);
    bool fin = p[0] & 0x80;
    int opcode = p[0] & 0x0f;
    uint64_t len = p[1] & 0x7f;
    size_t hdr = 2;
    if (len == 126) {
      if (avail < 4)
        break;
      len = (uint64_t{p[2]} << 8) | p[3];
      hdr = 4;
    } else if (len == 127) {
      if (avail < 10)
        break;
      len = 0;
      for (int i = 0; i < 8; ++i)
        len = (len << 8) | p[2 + i];
      hdr = 10;
    }
    if (p[1] & 0x80)
      return close_conn(c, "masked frame from the server");
    if (avail < hdr + len)
      break;
    const char* payload = b + off + hdr;
    off += hdr + len;
    if (opcode == 0x8) {
      return close_conn(
        c, "close frame from the server, code "
             + std::to_string(len >= 2 ? (static_cast<unsigned char>(payload[0]) << 8)
                                           | static_cast<unsigned char>(payload[1])
                                       : 0));
    } else if (opcode == 0x9) {
      std::string pong = "\x8a";
      pong.push_back(static_cast<char>(0x80 | len));
      pong.append(4, '\0');
      pong.append(payload, len);
      bool was_empty = c.out_off == c.out.size();
      c.out += pong;
      if (was_empty)
        flush(c, idx);
    } else if (opcode == 0xA) {
      // pong: nothing to do
    } else if (opcode == 0x0 || !fin) {
      c.frag.append(payload, len);
      if (fin) {
        if (o_.proto == protocol::socketio)
          on_message_socketio(c, idx, c.frag.data(), c.frag.size());
        else
          on_message(c, idx, c.frag.data(), c.frag.size());
        c.frag.clear();
      }
    } else if (opcode == 0x1) {
      if (o_.proto == protocol::socketio)
        on_message_socketio(c, idx, payload, len);
      else
        on_message(c, idx, payload, len);
    } else {
      fail("unexpected frame opcode " + std::to_string(opcode));
    }
  }
  if (off > 0 && c.st != conn_state::closed) {
    std::memmove(c.in.data(), c.in.data() + off, c.in_len - off);
    c.in_len -= off;
  }
}

/// sessionhost's messages; the ws reference server speaks the same shapes.
void load_run::on_message(connection& c, int idx, const char* p, size_t n) {
  auto end = p + n;
  if (contains(p, end, "\"op\":\"event\""))
    return on_event(c, p, n);
  if (contains(p, end, "\"op\":\"ack\""))
    return on_ack(c, idx, p, n);
  if (contains(p, end, "\"op\":\"subscribed\"")) {
    auto last = json_int(p, end, "\"last_seq\":", 11);
    c.subscribed = true;
    c.next_seq = static_cast<uint64_t>(std::max<int64_t>(last, 0)) + 1;
    ++subscribed_;
    return;
  }
  if (contains(p, end, "\"op\":\"error\""))
    return fail("error from the server: " + std::string{p, std::min<size_t>(n, 300)});
  fail("unexpected frame: " + std::string{p, std::min<size_t>(n, 200)});
}

/// One delivered event (any protocol): its seq against the connection's
/// next expected one, its latency from the send time `"t"` in its data.
void load_run::on_event(connection& c, const char* p, size_t n) {
  static const char k_seq[] = "\"seq\":";
  static const char k_t[] = "\"t\":";
  auto end = p + n;
  if (c.producer || !c.subscribed)
    return;
  auto seq = json_int(p, end, k_seq, sizeof k_seq - 1);
  if (seq < 0)
    return fail("event without a seq: " + std::string{p, std::min<size_t>(n, 200)});
  last_event_bytes_ = n;
  auto s = static_cast<uint64_t>(seq);
  if (s < c.next_seq) {
    ++c.dups;
    return;
  }
  if (s > c.next_seq)
    c.gaps += s - c.next_seq;
  c.next_seq = s + 1;
  ++delivered_total_;
  if (measuring_) {
    ++delivered_window_;
    auto t = json_int(p, end, k_t, sizeof k_t - 1);
    if (t > 0) {
      auto us = (now_ns() - t) / 1000;
      latencies_us_.push_back(static_cast<uint32_t>(
        std::min<int64_t>(std::max<int64_t>(us, 0), UINT32_MAX)));
    }
  }
}

/// An acknowledgement to a producer (any protocol): `"ref"` is the session's
/// index, `"seq"` the acknowledged seq.
void load_run::on_ack(connection& c, int idx, const char* p, size_t n) {
  static const char k_seq[] = "\"seq\":";
  static const char k_ref[] = "\"ref\":";
  auto end = p + n;
  auto ref = json_int(p, end, k_ref, sizeof k_ref - 1);
  if (ref < 0 || ref >= static_cast<int64_t>(sessions_.size()))
    return fail("ack with an unknown ref: " + std::string{p, n});
  if (c.attach_pending > 0) {
    if (--c.attach_pending == 0)
      ++attached_;
    return;
  }
  auto seq = json_int(p, end, k_seq, sizeof k_seq - 1);
  auto& s = sessions_[static_cast<size_t>(ref)];
  if (seq > 0)
    s.last_acked = std::max(s.last_acked, static_cast<uint64_t>(seq));
  --c.inflight;
  ++acked_;
  if (publishing_ && o_.rate <= 0)
    publish(c, idx);
}

/// The WebSocket upgrade succeeded: attach (producers) or subscribe.
void load_run::on_upgraded(connection& c, int idx) {
  if (o_.proto != protocol::sessionhost)
    return on_upgraded_reference(c, idx);
  if (c.producer) {
    for (auto s : c.sessions) {
      ++c.attach_pending;
      send_frame(c, idx,
                 "{\"op\":\"attach\",\"session\":\"" + sessions_[s].id
                   + "\",\"peer\":\"load-" + std::to_string(idx)
                   + "\",\"ref\":" + std::to_string(s) + "}");
    }
  } else {
    send_frame(c, idx, "{\"op\":\"subscribe\",\"session\":\""
                         + sessions_[c.session].id + "\",\"ref\":0}");
  }
}

// -- the reference servers (bench/reference/) ----------------------------------

void load_run::on_upgraded_reference(connection& c, int idx) {
  if (o_.proto == protocol::socketio)
    return; // the server speaks first (Engine.IO open packet)
  // ws: a producer needs no attach (the rooms are its own); a subscriber
  // joins its room and counts once "subscribed" comes back.
  if (c.producer)
    ++attached_;
  else
    send_frame(c, idx, "{\"op\":\"join\",\"room\":\""
                         + sessions_[static_cast<size_t>(c.session)].id
                         + "\",\"ref\":0}");
}

/// One Engine.IO v4 / Socket.IO v5 packet (one WebSocket text frame):
///   0{…} open → we send 40 (connect to "/"); 40{"sid":…} connected;
///   2 ping → 3 pong; 42[…] event; 43<id>[…] ack; 44 connect error; 1 close.
void load_run::on_message_socketio(connection& c, int idx, const char* p,
                                   size_t n) {
  auto end = p + n;
  auto text = [&] { return std::string{p, std::min<size_t>(n, 200)}; };
  if (n == 0)
    return fail("empty Engine.IO packet");
  switch (p[0]) {
    case '0': // open: {"sid":…,"pingInterval":…,…}
      send_frame(c, idx, "40");
      return;
    case '2': // ping
      send_frame(c, idx, "3");
      return;
    case '1':
      return close_conn(c, "Engine.IO close packet");
    case '4':
      break; // a Socket.IO packet: below
    default:
      return fail("unexpected Engine.IO packet: " + text());
  }
  if (n < 2)
    return fail("short Socket.IO packet: " + text());
  switch (p[1]) {
    case '0': // connected to "/"
      if (c.sio_connected)
        return fail("second connect packet: " + text());
      c.sio_connected = true;
      if (c.producer)
        ++attached_;
      else // join with an ack (id 0): subscribed once it comes back
        send_frame(c, idx, "420[\"join\",\""
                             + sessions_[static_cast<size_t>(c.session)].id
                             + "\"]");
      return;
    case '2': // event: 42["event",{room,ref,seq,data}]
      if (!contains(p, end, "[\"event\","))
        return fail("unexpected Socket.IO event: " + text());
      return on_event(c, p, n);
    case '3': // ack: 43<id>[…]
      if (contains(p, end, "\"error\""))
        return fail("error from the server: " + text());
      if (c.producer)
        return on_ack(c, idx, p, n);
      if (c.subscribed)
        return fail("unexpected ack: " + text());
      c.subscribed = true;
      c.next_seq = 1; // joined before the first publish: the room's seq 1
      ++subscribed_;
      return;
    case '4':
      return fail("Socket.IO connect error: " + text());
    default:
      return fail("unexpected Socket.IO packet: " + text());
  }
}

/// A publish into room `s` for the reference servers: the producer numbers
/// the room's events itself, since those servers keep no sequence.
std::string load_run::publish_frame_reference(int s) {
  auto& room = sessions_[static_cast<size_t>(s)];
  auto body = "{\"room\":\"" + room.id + "\",\"ref\":" + std::to_string(s)
              + ",\"seq\":" + std::to_string(++room.last_published)
              + ",\"data\":{\"p\":\"" + padding_ + "\",\"t\":"
              + std::to_string(now_ns()) + "}}";
  if (o_.proto == protocol::socketio) // ack id: any number; the ack's ref says which room
    return "42" + std::to_string(published_) + "[\"publish\"," + body + "]";
  return "{\"op\":\"publish\"," + body.substr(1);
}

std::string load_run::publish_frame(int s) {
  if (o_.proto != protocol::sessionhost)
    return publish_frame_reference(s);
  // Keys in the order the server's JSON keeps them does not matter: the
  // receiver looks for "t" anywhere in the event.
  return "{\"op\":\"publish\",\"session\":\"" + sessions_[s].id
         + "\",\"type\":\"load\",\"ref\":" + std::to_string(s)
         + ",\"data\":{\"p\":\"" + padding_ + "\",\"t\":"
         + std::to_string(now_ns()) + "}}";
}

/// One publish from producer `c` into its next session.
void load_run::publish(connection& c, int idx) {
  if (c.sessions.empty() || c.st != conn_state::open)
    return;
  int s = c.sessions[c.rr++ % c.sessions.size()];
  std::string frame = publish_frame(s);
  ++c.inflight;
  ++published_;
  if (measuring_)
    ++published_window_;
  send_frame(c, idx, frame);
}

int load_run::next_producer_with_room() {
  for (int k = 0; k < nproducers_; ++k) {
    auto i = static_cast<int>(rr_producer_++ % static_cast<size_t>(nproducers_));
    auto& c = conns_[static_cast<size_t>(i)];
    if (c.st == conn_state::open && c.inflight < c.window)
      return i;
  }
  return -1;
}

bool load_run::poll_once(int timeout_ms) {
  // Open more connections while few handshakes are in progress.
  while (next_to_open_ < conns_.size() && connecting_ < o_.max_connecting) {
    auto i = next_to_open_++;
    open(conns_[i], static_cast<int>(i));
  }
  epoll_event evs[512];
  int n = epoll_wait(ep_fd_, evs, 512, timeout_ms);
  if (n < 0 && errno != EINTR)
    die(std::string{"epoll_wait: "} + std::strerror(errno));
  for (int k = 0; k < n; ++k) {
    if (evs[k].data.u32 == UINT32_MAX)
      return true; // the timer: the caller handles it
    auto idx = static_cast<int>(evs[k].data.u32);
    auto& c = conns_[static_cast<size_t>(idx)];
    if (c.st == conn_state::closed)
      continue;
    if (c.st == conn_state::connecting) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        close_conn(c, std::string{"connect: "} + std::strerror(err));
        continue;
      }
      if (!(evs[k].events & (EPOLLOUT | EPOLLIN)))
        continue;
      c.st = conn_state::handshake;
      flush(c, idx);
      continue;
    }
    if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
      on_readable(c, idx);
    if (c.st != conn_state::closed && (evs[k].events & EPOLLOUT))
      flush(c, idx);
  }
  return false;
}

int load_run::run() {
  proc_sample s0, s_sub, s1, s2;
  long pid = o_.server_pid;
  if (pid == 0)
    pid = find_listener(ep_.port);

  auto t0 = now_ns();
  create_sessions();
  auto create_s = secs(now_ns() - t0);
  auto R = static_cast<int>(sessions_.size());
  for (int i = 0; i < R; ++i)
    session_index_[sessions_[static_cast<size_t>(i)].id] = i;

  nproducers_ = o_.idle ? 0 : (o_.producers > 0 ? std::min(o_.producers, R)
                                                : std::min(R, 10));
  auto nsubs = static_cast<size_t>(R) * static_cast<size_t>(o_.clients);
  conns_.resize(static_cast<size_t>(nproducers_));
  for (int p = 0; p < nproducers_; ++p) {
    auto& c = conns_[static_cast<size_t>(p)];
    c.producer = true;
    c.window = std::max(1, o_.window / nproducers_
                             + (p < o_.window % nproducers_ ? 1 : 0));
  }
  for (int s = 0; s < R; ++s) {
    if (nproducers_ > 0) {
      sessions_[static_cast<size_t>(s)].producer = s % nproducers_;
      conns_[static_cast<size_t>(s % nproducers_)].sessions.push_back(s);
    }
  }

  auto bounded_wait = [&](auto done, const char* what) {
    auto deadline = now_ns() + static_cast<int64_t>(o_.timeout * 1e9);
    while (!done()) {
      if (now_ns() > deadline) {
        fail(std::string{"timed out "} + what);
        return false;
      }
      poll_once(10);
    }
    return true;
  };

  // Producers first (attaching emits events: subscribers start after them).
  auto t1 = now_ns();
  bool ok = bounded_wait(
    [&] { return attached_ == nproducers_ || errors_ > 0; },
    "attaching the producers");
  // Then the subscribers: connection k watches session k % R.
  sample_proc(pid, s0);
  auto t2 = now_ns();
  conns_.resize(static_cast<size_t>(nproducers_) + nsubs);
  for (size_t k = 0; k < nsubs; ++k)
    conns_[static_cast<size_t>(nproducers_) + k].session =
      static_cast<int>(k % static_cast<size_t>(R));
  if (ok)
    ok = bounded_wait(
      [&] {
        return static_cast<size_t>(subscribed_) == nsubs || errors_ > 0;
      },
      "opening and subscribing the subscribers");
  auto connect_s = secs(now_ns() - t1);
  auto subscribe_s = secs(now_ns() - t2);
  sample_proc(pid, s_sub);

  int64_t measured_ns = 0;
  double server_cpu_s = 0;
  std::vector<long> steal1, steal2; // per CPU, over the measured window
  histograms hist1, hist2;          // the server's, around the window
  std::thread scrape1; // off the loop: a blocking request would delay reads
  if (ok && o_.idle) {
    // Hold the connections; anything the server closes is an error.
    auto until = now_ns() + static_cast<int64_t>(o_.duration * 1e9);
    while (now_ns() < until && errors_ == 0)
      poll_once(50);
    sample_proc(pid, s2);
  } else if (ok) {
    int tfd = -1;
    if (o_.rate > 0) {
      tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
      auto period_ns = std::max<int64_t>(50'000, static_cast<int64_t>(1e9 / o_.rate));
      itimerspec its{};
      its.it_interval.tv_sec = period_ns / 1'000'000'000;
      its.it_interval.tv_nsec = period_ns % 1'000'000'000;
      its.it_value = its.it_interval;
      timerfd_settime(tfd, 0, &its, nullptr);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = UINT32_MAX;
      epoll_ctl(ep_fd_, EPOLL_CTL_ADD, tfd, &ev);
    }
    latencies_us_.reserve(1 << 20);
    publishing_ = true;
    auto start = now_ns();
    auto warm_end = start + static_cast<int64_t>(o_.warmup * 1e9);
    auto end = warm_end + static_cast<int64_t>(o_.duration * 1e9);
    if (o_.rate <= 0)
      for (int p = 0; p < nproducers_; ++p) {
        auto& c = conns_[static_cast<size_t>(p)];
        while (c.st == conn_state::open && c.inflight < c.window)
          publish(c, p); // (a closed producer publishes nothing: no spin)
      }
    uint64_t due_sent = 0;
    for (;;) {
      auto now = now_ns();
      if (!measuring_ && now >= warm_end) {
        measuring_ = true;
        window_start_ = now;
        sample_proc(pid, s1);
        steal1 = sample_steal();
        if (o_.proto == protocol::sessionhost) // the others have no /metrics
          scrape1 = std::thread{[&] { hist1 = scrape_histograms(ep_, o_); }};
      }
      if (now >= end || errors_ > 0)
        break;
      bool tick = poll_once(o_.busy_poll ? 0 : 10);
      if (tick) {
        uint64_t expirations = 0;
        if (read(tfd, &expirations, sizeof expirations) < 0) {
          // spurious: nothing to do
        }
        auto due = static_cast<uint64_t>(secs(now_ns() - start) * o_.rate);
        while (due_sent < due) {
          auto p = next_producer_with_room();
          if (p < 0) {
            behind_ += due - due_sent; // the window is full: skipped
            due_sent = due;
            break;
          }
          publish(conns_[static_cast<size_t>(p)], p);
          ++due_sent;
        }
      }
    }
    window_end_ = now_ns();
    measuring_ = false;
    publishing_ = false;
    sample_proc(pid, s2);
    steal2 = sample_steal();
    if (scrape1.joinable()) {
      scrape1.join();
      hist2 = scrape_histograms(ep_, o_);
    }
    measured_ns = window_end_ - window_start_;
    server_cpu_s = s2.cpu_s - s1.cpu_s;
    if (tfd >= 0)
      close(tfd);
    // Drain: every publish acknowledged, every subscriber up to the last seq.
    bounded_wait(
      [&] {
        for (int p = 0; p < nproducers_; ++p)
          if (conns_[static_cast<size_t>(p)].inflight > 0
              && conns_[static_cast<size_t>(p)].st == conn_state::open)
            return false;
        for (size_t k = static_cast<size_t>(nproducers_); k < conns_.size();
             ++k) {
          auto& c = conns_[k];
          if (c.st == conn_state::open
              && c.next_seq <= sessions_[static_cast<size_t>(c.session)].last_acked)
            return false;
        }
        return true;
      },
      "draining (acks and deliveries)");
  }

  // Gaps and duplicates per connection, summed; a subscriber short of the
  // last acknowledged seq of its session missed the rest.
  uint64_t gaps = 0, dups = 0, conns_with_gaps = 0, conns_with_dups = 0;
  for (size_t k = static_cast<size_t>(nproducers_); k < conns_.size(); ++k) {
    auto& c = conns_[k];
    auto g = c.gaps;
    auto last = sessions_[static_cast<size_t>(c.session)].last_acked;
    if (c.subscribed && c.next_seq <= last)
      g += last + 1 - c.next_seq;
    gaps += g;
    dups += c.dups;
    conns_with_gaps += g > 0;
    conns_with_dups += c.dups > 0;
  }

  auto pct = [&](double q) -> uint64_t {
    if (latencies_us_.empty())
      return 0;
    auto k = static_cast<size_t>(q * static_cast<double>(latencies_us_.size() - 1));
    std::nth_element(latencies_us_.begin(), latencies_us_.begin() + static_cast<long>(k),
                     latencies_us_.end());
    return latencies_us_[k];
  };
  auto p50 = pct(0.50), p99 = pct(0.99), p999 = pct(0.999);
  uint64_t mx = latencies_us_.empty()
                  ? 0
                  : *std::max_element(latencies_us_.begin(), latencies_us_.end());
  auto window_s = secs(measured_ns);
  auto per_s = [&](uint64_t n) {
    return window_s > 0 ? static_cast<double>(n) / window_s : 0.0;
  };

  // Steal per CPU over the measured window, in % of that CPU's time.
  std::string steal_json = "[";
  for (size_t i = 0; i < steal1.size() && i < steal2.size(); ++i) {
    char buf[32];
    double pct = window_s > 0 ? 100.0 * static_cast<double>(steal2[i] - steal1[i])
                                  / static_cast<double>(sysconf(_SC_CLK_TCK)) / window_s
                              : 0.0;
    std::snprintf(buf, sizeof buf, "%s%.1f", i ? "," : "", pct);
    steal_json += buf;
  }
  steal_json += "]";

  std::string err_json;
  for (char ch : first_error_) {
    if (ch == '"' || ch == '\\')
      err_json += '\\';
    if (static_cast<unsigned char>(ch) >= 0x20)
      err_json += ch;
  }
  std::printf(
    "{\"tool\":\"sessionhost-load\",\"protocol\":\"%s\",\"mode\":\"%s\","
    "\"event_bytes\":%zu,\"sessions\":%d,"
    "\"clients_per_session\":%d,\"subscribers\":%zu,\"producers\":%d,"
    "\"rate\":%.0f,\"window\":%d,\"duration_s\":%.3f,"
    "\"published\":%" PRIu64 ",\"acked\":%" PRIu64
    ",\"published_per_s\":%.0f,\"delivered\":%" PRIu64
    ",\"delivered_per_s\":%.0f,\"behind\":%" PRIu64 ","
    "\"latency_us\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"p999\":%" PRIu64
    ",\"max\":%" PRIu64 ",\"samples\":%zu},"
    "\"gaps\":%" PRIu64 ",\"duplicates\":%" PRIu64
    ",\"connections_with_gaps\":%" PRIu64 ",\"connections_with_duplicates\":%" PRIu64
    ",\"errors\":%" PRIu64 ",\"create_s\":%.3f,\"connect_s\":%.3f,"
    "\"subscribe_s\":%.3f,"
    "\"server\":{\"pid\":%ld,\"cpu_s\":%.2f,\"cpu_pct\":%.1f,"
    "\"delivered_per_cpu_s\":%.0f,"
    "\"rss_kb_before_subscribers\":%ld,\"rss_kb_subscribed\":%ld,"
    "\"rss_kb_end\":%ld,\"kb_per_subscriber\":%.2f},%s%s"
    "\"machine\":{\"steal_pct_per_cpu\":%s}%s%s%s}\n",
    protocol_name(o_.proto), o_.idle ? "idle" : (o_.rate > 0 ? "rate" : "window"),
    last_event_bytes_, R, o_.clients, nsubs,
    nproducers_, o_.rate, o_.window, window_s, published_, acked_,
    per_s(published_window_), delivered_total_, per_s(delivered_window_),
    behind_, p50, p99, p999, mx, latencies_us_.size(), gaps, dups,
    conns_with_gaps, conns_with_dups, errors_, create_s, connect_s,
    subscribe_s, pid, server_cpu_s,
    window_s > 0 ? 100.0 * server_cpu_s / window_s : 0.0,
    server_cpu_s > 0 ? static_cast<double>(delivered_window_) / server_cpu_s
                     : 0.0, s0.rss_kb,
    s_sub.rss_kb, s2.rss_kb,
    nsubs > 0 && s_sub.rss_kb > 0 && s0.rss_kb > 0
      ? static_cast<double>(s_sub.rss_kb - s0.rss_kb) / static_cast<double>(nsubs)
      : 0.0,
    server_latency_json(hist1, hist2).c_str(),
    o_.busy_poll ? "\"busy_poll_diagnostic\":true," : "",
    steal_json.c_str(),
    err_json.empty() ? "" : ",\"first_error\":\"", err_json.c_str(),
    err_json.empty() ? "" : "\"");
  std::fflush(stdout);
  for (auto& c : conns_)
    if (c.st != conn_state::closed && c.fd >= 0)
      ::close(c.fd);
  return (gaps > 0 || dups > 0 || errors_ > 0) ? 1 : 0;
}

} // namespace

int main(int argc, char** argv) {
  auto o = parse_options(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  // Many connections: raise the soft fd limit as far as the hard one allows.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  // A backstop for the whole run: every phase is bounded, this too.
  alarm(static_cast<unsigned>(o.warmup + o.duration + 4 * o.timeout + 60));
  load_run run{o};
  return run.run();
}
