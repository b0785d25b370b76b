#include "host/process/process_session.hpp"

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "host/event.hpp"

namespace sessionhost {

namespace {

using json = nlohmann::json;

// Tags of what the supervisor posts (child_event kinds) and our own.
constexpr uint64_t tag_dir_removed = 16;
constexpr uint64_t quiet_timer = 1;
constexpr size_t max_block_text = 1 << 20;

// Child output need not be UTF-8: never throw on it.
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

micros to_micros(std::chrono::milliseconds d) {
  return static_cast<micros>(d.count()) * 1000;
}

} // namespace

process_session::process_session(std::shared_ptr<const process_spec> spec,
                                 std::shared_ptr<process_supervisor> supervisor)
  : spec_(std::move(spec)), sup_(std::move(supervisor)) {}

process_session::~process_session() {
  if (holding_ && child_)
    sup_->abandon(child_, spec_->grace);
}

void process_session::on_start(session_context& ctx) {
  auto& info = ctx.info();
  working_dir_ = expand_template(spec_->working_dir, info.id, spec_->name);
  switch (info.state) {
    case session_state::created:
      ctx.transition(lifecycle_event::spawn, "starting " + spec_->name);
      spawn(ctx);
      return;
    case session_state::cleaned:
      return;
    default:
      break;
  }
  // Loaded while SPAWNING, ACTIVE or TERMINATING: its process ended with the
  // host that ran it (a restart or a crash); nothing of it can be resumed.
  ctx.publish(event_type::error,
              dump({{"code", "process_lost"},
                    {"message", "the process did not survive the host that "
                                "ran it"}}));
  if (info.state != session_state::terminating)
    ctx.transition(lifecycle_event::terminate, "process lost");
  if (spec_->keep_working_dir) {
    ctx.transition(lifecycle_event::clean, "process lost");
    return;
  }
  holding_ = true;
  sup_->remove_dir(working_dir_, [poster = ctx.poster()] {
    poster.post(tag_dir_removed, {});
  });
}

void process_session::spawn(session_context& ctx) {
  auto& info = ctx.info();
  launch_request req;
  for (auto& a : spec_->command)
    req.argv.push_back(expand_template(a, info.id, spec_->name));
  bool has_path = false, has_home = false;
  for (auto& [k, v] : spec_->env) {
    req.env.push_back(k + "=" + expand_template(v, info.id, spec_->name));
    has_path |= k == "PATH";
    has_home |= k == "HOME";
  }
  for (auto& name : spec_->inherit_env)
    if (!spec_->env.count(name))
      if (auto v = std::getenv(name.c_str())) {
        req.env.push_back(name + "=" + v);
        has_path |= name == "PATH";
        has_home |= name == "HOME";
      }
  if (!has_path)
    req.env.push_back("PATH=/usr/local/bin:/usr/bin:/bin");
  if (!has_home)
    req.env.push_back("HOME=" + working_dir_);
  req.env.push_back("SESSIONHOST_SESSION_ID=" + info.id);
  req.env.push_back("SESSIONHOST_TYPE=" + spec_->name);
  req.working_dir = working_dir_;
  req.remove_working_dir = !spec_->keep_working_dir;
  req.switch_user = spec_->switch_user;
  req.uid = spec_->uid;
  req.gid = spec_->gid;
  req.groups = spec_->groups;
  req.limits = spec_->limits;
  req.max_line = spec_->max_line;
  holding_ = true;
  // Runs on the supervisor thread: only posts into the session.
  child_ = sup_->spawn(std::move(req), [poster = ctx.poster()](child_event ev) {
    switch (ev.kind) {
      case child_event::spawned:
        poster.post(ev.kind, std::to_string(ev.pid));
        break;
      case child_event::exited:
        poster.post(ev.kind, json{{"pid", ev.pid},
                                  {"exit_code", ev.exit_code},
                                  {"signal", ev.signal},
                                  {"requested", ev.requested}}
                               .dump());
        break;
      default:
        poster.post(ev.kind, std::move(ev.text));
    }
  });
}

void process_session::on_message(session_context& ctx,
                                 const std::string& data) {
  auto state = ctx.info().state;
  if (state != session_state::spawning && state != session_state::active)
    return;
  std::string line;
  auto msg = json::parse(data, nullptr, false);
  if (spec_->input == stdin_format::text && msg.is_string()) {
    line = msg.get<std::string>();
    if (line.find_first_of("\r\n") != std::string::npos) {
      ctx.publish(event_type::error,
                  dump({{"code", "bad_input"},
                        {"message", "a message for a process is one line: "
                                    "it must not contain a line break"}}));
      return;
    }
  } else {
    line = msg.is_discarded() ? data : dump(msg);
  }
  if (block_open_)
    complete_block(ctx, "next_message");
  open_block(ctx);
  sup_->write_line(child_, std::move(line));
}

void process_session::open_block(session_context& ctx) {
  block_open_ = true;
  ++blocks_;
  text_.clear();
  lines_ = 0;
  truncated_ = false;
  ctx.publish(event_type::block_start,
              dump({{"block_id", "t" + std::to_string(blocks_)}}));
  last_output_ = ctx.now();
  arm_quiet(ctx, to_micros(spec_->turn_quiet));
}

void process_session::complete_block(session_context& ctx, const char* reason) {
  if (!block_open_)
    return;
  block_open_ = false;
  json j{{"block_id", "t" + std::to_string(blocks_)},
         {"text", text_},
         {"lines", lines_},
         {"reason", reason}};
  if (truncated_)
    j["truncated"] = true;
  ctx.publish(event_type::block_complete, dump(j));
  text_.clear();
  text_.shrink_to_fit();
}

void process_session::arm_quiet(session_context& ctx, micros after) {
  if (quiet_armed_ || spec_->turn_quiet.count() <= 0)
    return;
  quiet_armed_ = true;
  ctx.set_timer(std::chrono::milliseconds((after + 999) / 1000), quiet_timer);
}

void process_session::on_timer(session_context& ctx, uint64_t timer_id) {
  if (timer_id != quiet_timer)
    return;
  quiet_armed_ = false;
  if (!block_open_)
    return;
  auto quiet = to_micros(spec_->turn_quiet);
  auto idle = ctx.now() - last_output_;
  if (idle >= quiet)
    complete_block(ctx, "quiet");
  else
    arm_quiet(ctx, quiet - idle); // one timer in flight, re-armed lazily
}

void process_session::on_line(session_context& ctx, const std::string& line) {
  if (!spec_->turn_end_line.empty() && line == spec_->turn_end_line) {
    complete_block(ctx, "end_line");
    return;
  }
  if (!block_open_)
    open_block(ctx); // output nobody asked for (a banner, say)
  ctx.publish(event_type::block_delta,
              dump({{"block_id", "t" + std::to_string(blocks_)},
                    {"delta", line}}));
  ++lines_;
  if (text_.size() + line.size() + 1 <= max_block_text) {
    if (lines_ > 1)
      text_ += '\n';
    text_ += line;
  } else {
    truncated_ = true;
  }
  last_output_ = ctx.now();
  arm_quiet(ctx, to_micros(spec_->turn_quiet));
}

void process_session::on_stop(session_context&, const std::string&) {
  if (holding_ && child_)
    sup_->terminate(child_, spec_->grace);
}

void process_session::finish(session_context& ctx, const std::string& reason) {
  holding_ = false;
  auto state = ctx.info().state;
  if (state != session_state::terminating && state != session_state::cleaned)
    ctx.transition(lifecycle_event::terminate, reason);
  if (ctx.info().state == session_state::terminating)
    ctx.transition(lifecycle_event::clean, reason);
}

void process_session::on_external(session_context& ctx, uint64_t tag,
                                  const std::string& data) {
  switch (tag) {
    case child_event::out_line:
      sup_->consumed(child_);
      on_line(ctx, data);
      return;
    case child_event::err_line:
      sup_->consumed(child_);
      ctx.publish(event_type::log,
                  dump({{"stream", "stderr"}, {"message", data}}));
      return;
    case child_event::spawned:
      if (ctx.info().state == session_state::spawning)
        ctx.transition(lifecycle_event::activate, "process " + data + " running");
      return;
    case child_event::spawn_failed:
      complete_block(ctx, "exit"); // a message sent while it was starting
      ctx.publish(event_type::error,
                  dump({{"code", "spawn_failed"},
                        {"message", spec_->name + ": " + data}}));
      finish(ctx, "spawn failed");
      return;
    case child_event::exited: {
      complete_block(ctx, "exit");
      auto st = json::parse(data, nullptr, false);
      int code = st.value("exit_code", -1);
      int sig = st.value("signal", 0);
      bool requested = st.value("requested", false);
      std::string how = sig != 0 ? "killed by signal " + std::to_string(sig)
                                 : "exited with code " + std::to_string(code);
      json j{{"message", "process " + how}, {"exit_code", code},
             {"signal", sig}};
      if (!requested && (code != 0 || sig != 0)) {
        j["code"] = "process_failed";
        ctx.publish(event_type::error, dump(j));
      } else {
        ctx.publish(event_type::log, dump(j));
      }
      finish(ctx, "process " + how);
      return;
    }
    case tag_dir_removed:
      finish(ctx, "process lost");
      return;
    default:
      return;
  }
}

} // namespace sessionhost
