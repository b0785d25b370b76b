#include "host/process/process_supervisor.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>

#include <spdlog/spdlog.h>

namespace sessionhost {

namespace {

using steady = std::chrono::steady_clock;

// What an epoll key's low bits say.
enum fd_kind : uint64_t { k_out = 0, k_err = 1, k_in = 2, k_status = 3, k_pid = 4 };
constexpr uint64_t wake_key = ~uint64_t{0};
constexpr size_t stdin_limit = 1 << 20; // queued bytes per child

uint64_t key_of(uint64_t id, fd_kind k) { return (id << 3) | k; }

void close_fd(int& fd) {
  if (fd >= 0)
    ::close(fd);
  fd = -1;
}

// Where the child's setup failed, reported through the exec-status pipe.
enum setup_stage : int {
  st_dup = 1, st_chdir, st_rlimit, st_groups, st_gid, st_uid, st_exec, st_parent
};

const char* stage_name(int stage) {
  switch (stage) {
    case st_dup: return "dup2";
    case st_chdir: return "chdir";
    case st_rlimit: return "setrlimit";
    case st_groups: return "setgroups";
    case st_gid: return "setgid";
    case st_uid: return "setuid";
    case st_exec: return "exec";
    case st_parent: return "parent gone";
    default: return "setup";
  }
}

// Everything the child needs, prepared before fork: after fork only
// async-signal-safe calls are made (no allocation).
struct child_setup {
  const char* path = nullptr;
  std::vector<char*> argv;
  std::vector<char*> envp;
  const char* working_dir = nullptr;
  std::vector<std::pair<int, rlim_t>> limits;
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
  const std::vector<gid_t>* groups = nullptr;
  int in_r = -1, out_w = -1, err_w = -1, status_w = -1;
  pid_t parent = 0;
};

[[noreturn]] void child_fail(const child_setup& s, int stage) {
  int msg[2] = {stage, errno};
  auto n = ::write(s.status_w, msg, sizeof msg);
  (void) n;
  ::_exit(127);
}

[[noreturn]] void child_main(const child_setup& s) {
  // The server blocks SIGTERM/SIGINT (and the supervisor SIGPIPE) in its
  // threads, and a runtime may ignore some: the child starts clean.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP)
      ::sigaction(sig, &dfl, nullptr);
  ::setpgid(0, 0);
  if (::dup2(s.in_r, 0) < 0 || ::dup2(s.out_w, 1) < 0 || ::dup2(s.err_w, 2) < 0)
    child_fail(s, st_dup);
  // Nothing of the server's leaks into the child: every other descriptor is
  // closed on exec (the status pipe already is).
  if (::syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) != 0) {
    long max = ::sysconf(_SC_OPEN_MAX);
    for (int fd = 3; fd < max; ++fd)
      if (fd != s.status_w)
        ::close(fd);
  }
  if (::chdir(s.working_dir) != 0)
    child_fail(s, st_chdir);
  for (auto& [res, value] : s.limits) {
    rlimit rl{value, value};
    if (::setrlimit(res, &rl) != 0)
      child_fail(s, st_rlimit);
  }
  if (s.switch_user) {
    if (::setgroups(s.groups->size(), s.groups->data()) != 0)
      child_fail(s, st_groups);
    if (::setgid(s.gid) != 0)
      child_fail(s, st_gid);
    if (::setuid(s.uid) != 0)
      child_fail(s, st_uid);
  }
  // If the server dies (even kill -9), its children go too.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != s.parent) {
    errno = ESRCH;
    child_fail(s, st_parent);
  }
  ::execve(s.path, s.argv.data(), s.envp.data());
  child_fail(s, st_exec);
}

// argv[0] as a path: as given when it has a '/', else searched in the
// child's PATH.
std::optional<std::string> resolve(const launch_request& req) {
  auto& cmd = req.argv[0];
  if (cmd.find('/') != std::string::npos)
    return cmd;
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (auto& e : req.env)
    if (e.rfind("PATH=", 0) == 0)
      path = e.substr(5);
  size_t pos = 0;
  while (pos <= path.size()) {
    auto colon = path.find(':', pos);
    auto dir = path.substr(pos, colon == std::string::npos ? std::string::npos
                                                           : colon - pos);
    if (!dir.empty()) {
      auto full = dir + "/" + cmd;
      if (::access(full.c_str(), X_OK) == 0)
        return full;
    }
    if (colon == std::string::npos)
      break;
    pos = colon + 1;
  }
  return std::nullopt;
}

bool set_nonblocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  return fl >= 0 && ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

} // namespace

struct process_supervisor::child {
  uint64_t id = 0;
  pid_t pid = -1;
  int pidfd = -1, in = -1, out = -1, err = -1, status = -1;
  event_fn on_event; // empty once abandoned
  std::shared_ptr<child_flow> flow;
  std::string out_buf, err_buf; // partial lines
  std::string in_buf;           // queued for stdin
  bool started = false;         // exec succeeded
  std::string failure;          // why it never ran
  bool term_requested = false;
  bool paused = false;
  bool exiting = false; // draining what it wrote before it died
  std::optional<steady::time_point> kill_at;
  std::string path; // what it execs
  std::string working_dir;
  bool remove_dir = true;
  size_t max_line = 64 * 1024;
  int exit_code = -1;
  int signal = 0;
};

process_supervisor::process_supervisor() {
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_ < 0 || wake_ < 0)
    throw std::runtime_error(std::string{"process supervisor: "}
                             + std::strerror(errno));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = wake_key;
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &ev);
  thread_ = std::thread{[this] { run(); }};
}

process_supervisor::~process_supervisor() {
  stop();
  // Closed only here: a late post() (after stop) must never write to a
  // descriptor number that was reused meanwhile.
  close_fd(wake_);
  close_fd(epoll_);
}

void process_supervisor::post(command cmd) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    queue_.push_back(std::move(cmd));
  }
  uint64_t one = 1;
  auto n = ::write(wake_, &one, sizeof one);
  (void) n;
}

process_supervisor::handle process_supervisor::spawn(launch_request req,
                                                     event_fn on_event) {
  handle h;
  h.flow = std::make_shared<child_flow>();
  {
    std::lock_guard<std::mutex> guard{mtx_};
    h.id = next_id_++;
  }
  command cmd{command::spawn};
  cmd.id = h.id;
  cmd.req = std::move(req);
  cmd.on_event = std::move(on_event);
  cmd.flow = h.flow;
  post(std::move(cmd));
  return h;
}

void process_supervisor::write_line(const handle& h, std::string line) {
  command cmd{command::write};
  cmd.id = h.id;
  cmd.data = std::move(line);
  cmd.data += '\n';
  post(std::move(cmd));
}

void process_supervisor::terminate(const handle& h,
                                   std::chrono::milliseconds grace) {
  command cmd{command::terminate};
  cmd.id = h.id;
  cmd.grace = grace;
  post(std::move(cmd));
}

void process_supervisor::abandon(const handle& h,
                                 std::chrono::milliseconds grace) {
  command cmd{command::abandon};
  cmd.id = h.id;
  cmd.grace = grace;
  post(std::move(cmd));
}

void process_supervisor::consumed(const handle& h, int64_t n) {
  if (!h.flow)
    return;
  auto left = h.flow->unconsumed -= n;
  // Pairs with the supervisor's paused-then-check: one side always resumes.
  if (left <= max_unconsumed / 2 && h.flow->paused.exchange(false)) {
    command cmd{command::resume};
    cmd.id = h.id;
    post(std::move(cmd));
  }
}

void process_supervisor::remove_dir(std::string path,
                                    std::function<void()> done) {
  command cmd{command::remove_dir};
  cmd.data = std::move(path);
  cmd.done = std::move(done);
  post(std::move(cmd));
}

void process_supervisor::stop() {
  std::lock_guard<std::mutex> guard{stop_mtx_};
  if (stopped_)
    return;
  stopped_ = true;
  stopping_ = true;
  uint64_t one = 1;
  auto n = ::write(wake_, &one, sizeof one);
  (void) n;
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id())
      thread_.detach(); // dropped from one of its own callbacks
    else
      thread_.join();
  }
}

// -- the supervisor thread ---------------------------------------------------

void process_supervisor::run() {
  // A child that closed its stdin must give EPIPE, not a process-wide SIGPIPE.
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_only, nullptr);
  epoll_event events[64];
  std::optional<steady::time_point> stop_deadline;
  for (;;) {
    if (stopping_ && !stop_deadline) {
      run_commands(); // starts nothing new, but lets owners hear of it
      for (auto& [id, c] : children_) {
        c->term_requested = true;
        signal_group(*c, SIGKILL);
      }
      stop_deadline = steady::now() + std::chrono::seconds(10);
    }
    if (stop_deadline && (children_.empty() || steady::now() > *stop_deadline))
      break;
    int n = ::epoll_wait(epoll_, events, 64,
                         stop_deadline ? 100 : next_timeout());
    if (n < 0 && errno != EINTR) {
      spdlog::error("process supervisor: epoll_wait: {}", std::strerror(errno));
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == wake_key) {
        uint64_t v;
        auto r = ::read(wake_, &v, sizeof v);
        (void) r;
        run_commands();
        continue;
      }
      on_ready(events[i].data.u64, events[i].events);
    }
    fire_deadlines();
  }
  if (!children_.empty())
    spdlog::error("process supervisor: {} children not reaped at stop",
                  children_.size());
}

void process_supervisor::run_commands() {
  std::deque<command> cmds;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    cmds.swap(queue_);
  }
  for (auto& cmd : cmds) {
    if (cmd.kind == command::spawn) {
      start_child(cmd);
      continue;
    }
    if (cmd.kind == command::remove_dir) {
      std::error_code ec;
      std::filesystem::remove_all(cmd.data, ec);
      if (cmd.done)
        cmd.done();
      continue;
    }
    auto i = children_.find(cmd.id);
    if (i == children_.end())
      continue; // already gone: nothing to do
    auto& c = *i->second;
    switch (cmd.kind) {
      case command::write:
        if (c.in < 0)
          break;
        if (c.in_buf.size() + cmd.data.size() > stdin_limit) {
          emit(c, child_event{child_event::err_line,
                              "sessionhost: stdin is full, input dropped"});
          break;
        }
        c.in_buf += cmd.data;
        flush_stdin(c);
        break;
      case command::abandon:
        c.on_event = nullptr;
        c.flow->paused = false;
        c.paused = false;
        update_interest(c);
        [[fallthrough]];
      case command::terminate: {
        auto at = steady::now() + cmd.grace;
        if (!c.term_requested) {
          c.term_requested = true;
          signal_group(c, SIGTERM);
        }
        if (!c.kill_at || at < *c.kill_at)
          c.kill_at = at;
        break;
      }
      case command::resume:
        c.paused = false;
        update_interest(c);
        break;
      default:
        break;
    }
  }
}

void process_supervisor::start_child(command& cmd) {
  auto c = std::make_unique<child>();
  c->id = cmd.id;
  c->on_event = std::move(cmd.on_event);
  c->flow = std::move(cmd.flow);
  c->working_dir = cmd.req.working_dir;
  c->remove_dir = cmd.req.remove_working_dir;
  c->max_line = cmd.req.max_line;
  auto& req = cmd.req;
  auto fail_now = [&](std::string why) {
    if (c->remove_dir && !c->working_dir.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(c->working_dir, ec);
    }
    child_event ev{child_event::spawn_failed, std::move(why)};
    if (c->on_event)
      c->on_event(std::move(ev));
  };
  if (stopping_)
    return fail_now("the host is shutting down");
  if (req.argv.empty() || req.argv[0].empty())
    return fail_now("empty command");
  auto path = resolve(req);
  if (!path)
    return fail_now("command not found in PATH: " + req.argv[0]);
  std::error_code ec;
  std::filesystem::create_directories(req.working_dir, ec);
  if (ec)
    return fail_now("cannot create working directory " + req.working_dir + ": "
                    + ec.message());
  ::chmod(req.working_dir.c_str(), 0700);
  if (req.switch_user
      && ::chown(req.working_dir.c_str(), req.uid, req.gid) != 0)
    return fail_now("cannot hand working directory " + req.working_dir
                    + " to the user: " + std::strerror(errno));
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1},
      status[2] = {-1, -1};
  auto close_all = [&] {
    for (int* p : {in, out, err, status}) {
      close_fd(p[0]);
      close_fd(p[1]);
    }
  };
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0
      || ::pipe2(err, O_CLOEXEC) != 0 || ::pipe2(status, O_CLOEXEC) != 0) {
    auto why = std::string{"pipe: "} + std::strerror(errno);
    close_all();
    return fail_now(why);
  }
  child_setup s;
  s.path = path->c_str();
  for (auto& a : req.argv)
    s.argv.push_back(a.data());
  s.argv.push_back(nullptr);
  for (auto& e : req.env)
    s.envp.push_back(e.data());
  s.envp.push_back(nullptr);
  s.working_dir = req.working_dir.c_str();
  auto add_limit = [&](int res, const std::optional<uint64_t>& v) {
    if (v)
      s.limits.emplace_back(res, static_cast<rlim_t>(*v));
  };
  add_limit(RLIMIT_CPU, req.limits.cpu_seconds);
  add_limit(RLIMIT_AS, req.limits.address_space);
  add_limit(RLIMIT_NOFILE, req.limits.open_files);
  add_limit(RLIMIT_NPROC, req.limits.processes);
  add_limit(RLIMIT_FSIZE, req.limits.file_size);
  add_limit(RLIMIT_CORE, req.limits.core_size);
  s.switch_user = req.switch_user;
  s.uid = req.uid;
  s.gid = req.gid;
  s.groups = &req.groups;
  s.in_r = in[0];
  s.out_w = out[1];
  s.err_w = err[1];
  s.status_w = status[1];
  s.parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0)
    child_main(s);
  if (pid < 0) {
    auto why = std::string{"fork: "} + std::strerror(errno);
    close_all();
    return fail_now(why);
  }
  ::setpgid(pid, pid); // also done by the child: whichever runs first
  close_fd(in[0]);
  close_fd(out[1]);
  close_fd(err[1]);
  close_fd(status[1]);
  c->pid = pid;
  c->path = *path;
  c->in = in[1];
  c->out = out[0];
  c->err = err[0];
  c->status = status[0];
  c->pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  live_++;
  if (c->pidfd < 0) {
    // Cannot watch it: stop it at once and report.
    auto why = std::string{"pidfd_open: "} + std::strerror(errno);
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
    live_--;
    close_fd(c->in);
    close_fd(c->out);
    close_fd(c->err);
    close_fd(c->status);
    return fail_now(why);
  }
  for (int fd : {c->in, c->out, c->err, c->status})
    set_nonblocking(fd);
  auto add = [&](int fd, fd_kind k, uint32_t what) {
    epoll_event ev{};
    ev.events = what;
    ev.data.u64 = key_of(c->id, k);
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
  };
  add(c->out, k_out, EPOLLIN);
  add(c->err, k_err, EPOLLIN);
  add(c->in, k_in, 0); // EPOLLOUT only while input is queued
  add(c->status, k_status, EPOLLIN);
  add(c->pidfd, k_pid, EPOLLIN);
  children_.emplace(c->id, std::move(c));
}

void process_supervisor::on_ready(uint64_t key, uint32_t events) {
  auto i = children_.find(key >> 3);
  if (i == children_.end())
    return;
  auto& c = *i->second;
  switch (static_cast<fd_kind>(key & 7)) {
    case k_out:
      read_output(c, k_out);
      break;
    case k_err:
      read_output(c, k_err);
      break;
    case k_in:
      if (events & (EPOLLERR | EPOLLHUP)) {
        ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.in, nullptr);
        close_fd(c.in);
        c.in_buf.clear();
      } else {
        flush_stdin(c);
      }
      break;
    case k_status:
      on_exec_status(c);
      break;
    case k_pid:
      on_exit(c); // erases c
      break;
  }
}

void process_supervisor::emit(child& c, child_event ev) {
  if (!c.on_event)
    return;
  if (ev.kind == child_event::out_line || ev.kind == child_event::err_line)
    c.flow->unconsumed++;
  c.on_event(std::move(ev));
}

void process_supervisor::pause_if_needed(child& c) {
  if (!c.on_event || c.exiting || c.flow->unconsumed.load() < max_unconsumed)
    return;
  c.flow->paused = true;
  // Pairs with consumed(): if the owner caught up meanwhile, go on.
  if (c.flow->unconsumed.load() <= max_unconsumed / 2
      && c.flow->paused.exchange(false))
    return;
  c.paused = true;
  update_interest(c);
}

void process_supervisor::update_interest(child& c) {
  for (auto [fd, k] : {std::pair{c.out, k_out}, std::pair{c.err, k_err}}) {
    if (fd < 0)
      continue;
    epoll_event ev{};
    ev.events = c.paused ? 0u : static_cast<uint32_t>(EPOLLIN);
    ev.data.u64 = key_of(c.id, k);
    ::epoll_ctl(epoll_, EPOLL_CTL_MOD, fd, &ev);
  }
}

void process_supervisor::read_output(child& c, int which) {
  int& fd = which == k_out ? c.out : c.err;
  auto& buf = which == k_out ? c.out_buf : c.err_buf;
  auto kind = which == k_out ? child_event::out_line : child_event::err_line;
  char chunk[65536];
  while (fd >= 0 && !c.paused) {
    auto n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      return;
    if (n <= 0) { // EOF (or an error, which ends the stream the same way)
      if (!buf.empty())
        emit(c, child_event{kind, std::move(buf)});
      buf.clear();
      ::epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
      close_fd(fd);
      return;
    }
    buf.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (;;) {
      auto nl = buf.find('\n', start);
      if (nl == std::string::npos) {
        if (buf.size() - start >= c.max_line) { // cut an endless line
          emit(c, child_event{kind, buf.substr(start, c.max_line)});
          start += c.max_line;
          continue;
        }
        break;
      }
      auto len = nl - start;
      if (len > 0 && buf[nl - 1] == '\r')
        --len;
      emit(c, child_event{kind, buf.substr(start, len)});
      start = nl + 1;
    }
    buf.erase(0, start);
    pause_if_needed(c);
  }
}

void process_supervisor::flush_stdin(child& c) {
  while (c.in >= 0 && !c.in_buf.empty()) {
    auto n = ::write(c.in, c.in_buf.data(), c.in_buf.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      break;
    if (n < 0) { // EPIPE: the child closed its stdin
      ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.in, nullptr);
      close_fd(c.in);
      c.in_buf.clear();
      return;
    }
    c.in_buf.erase(0, static_cast<size_t>(n));
  }
  if (c.in < 0)
    return;
  epoll_event ev{};
  ev.events = c.in_buf.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT);
  ev.data.u64 = key_of(c.id, k_in);
  ::epoll_ctl(epoll_, EPOLL_CTL_MOD, c.in, &ev);
}

void process_supervisor::on_exec_status(child& c) {
  if (c.status < 0)
    return;
  int msg[2] = {0, 0};
  ssize_t n;
  do
    n = ::read(c.status, msg, sizeof msg);
  while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN)
    return;
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.status, nullptr);
  close_fd(c.status);
  if (n == static_cast<ssize_t>(sizeof msg)) {
    c.failure = std::string{stage_name(msg[0])};
    if (msg[0] == st_exec)
      c.failure += " " + c.path;
    else if (msg[0] == st_chdir)
      c.failure += " " + c.working_dir;
    c.failure += std::string{": "} + std::strerror(msg[1]);
    return; // reported once the child is reaped
  }
  c.started = true; // closed on exec: it runs
  child_event ev;
  ev.kind = child_event::spawned;
  ev.pid = c.pid;
  emit(c, std::move(ev));
}

void process_supervisor::on_exit(child& c) {
  if (c.status >= 0) // the status pipe is closed by now: read it first
    on_exec_status(c);
  // The leader is a zombie until reaped, so its group id cannot be reused:
  // whatever it left behind in its group goes now.
  ::kill(-c.pid, SIGKILL);
  int st = 0;
  pid_t r;
  do
    r = ::waitpid(c.pid, &st, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0)
    return; // not yet (cannot happen once the pidfd is readable)
  if (r == c.pid) {
    if (WIFEXITED(st))
      c.exit_code = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
      c.signal = WTERMSIG(st);
  }
  c.paused = false;
  c.exiting = true;
  // What it wrote before it died is still in the pipes.
  read_output(c, k_out);
  read_output(c, k_err);
  finish(c);
}

void process_supervisor::finish(child& c) {
  for (int* fd : {&c.in, &c.out, &c.err, &c.status, &c.pidfd}) {
    if (*fd >= 0)
      ::epoll_ctl(epoll_, EPOLL_CTL_DEL, *fd, nullptr);
    close_fd(*fd);
  }
  for (auto* buf : {&c.out_buf, &c.err_buf})
    if (!buf->empty())
      emit(c, child_event{buf == &c.out_buf ? child_event::out_line
                                            : child_event::err_line,
                          std::move(*buf)});
  if (c.remove_dir && !c.working_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(c.working_dir, ec);
    if (ec)
      spdlog::warn("process supervisor: cannot remove {}: {}", c.working_dir,
                   ec.message());
  }
  live_--;
  child_event ev;
  ev.pid = c.pid;
  if (c.started) {
    ev.kind = child_event::exited;
    ev.exit_code = c.exit_code;
    ev.signal = c.signal;
    ev.requested = c.term_requested;
  } else {
    ev.kind = child_event::spawn_failed;
    ev.text = c.failure.empty() ? "the process ended before it ran"
                                : c.failure;
  }
  auto owner = std::move(c.on_event);
  children_.erase(c.id); // c is gone from here on
  if (owner)
    owner(std::move(ev));
}

void process_supervisor::signal_group(child& c, int sig) {
  if (c.pid > 0 && ::kill(-c.pid, sig) != 0)
    ::kill(c.pid, sig);
}

int process_supervisor::next_timeout() const {
  std::optional<steady::time_point> first;
  for (auto& [id, c] : children_)
    if (c->kill_at && (!first || *c->kill_at < *first))
      first = c->kill_at;
  if (!first)
    return -1;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                *first - steady::now())
                .count();
  return left < 0 ? 0 : static_cast<int>(left) + 1;
}

void process_supervisor::fire_deadlines() {
  auto now = steady::now();
  for (auto& [id, c] : children_)
    if (c->kill_at && *c->kill_at <= now) {
      c->kill_at.reset();
      signal_group(*c, SIGKILL);
    }
}

} // namespace sessionhost
