#include "host/process/process_spec.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>

#include <caf/actor_system_config.hpp>
#include <caf/config_value.hpp>
#include <caf/settings.hpp>

namespace sessionhost {

namespace {

using caf::config_value;

[[noreturn]] void fail(const std::string& type, const std::string& key,
                       const std::string& what) {
  throw std::invalid_argument("sessionhost.process-types." + type
                              + (key.empty() ? "" : "." + key) + ": " + what);
}

// Replaces ${data_dir}; ${session_id} and ${type} wait for the spawn. Any
// other ${…} is left as it is (a shell command keeps its own variables).
std::string checked_template(const std::string&, const std::string&,
                             const std::string& text,
                             const std::string& data_dir) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 11, "${data_dir}") == 0) {
      out += data_dir;
      i += 11;
    } else {
      out += text[i++];
    }
  }
  return out;
}

// CAF 0.17's INI parser keeps only the last of several
// [sessionhost.process-types.NAME] sections (each replaces the group), so a
// file with more than one would silently lose types: refuse it.
void check_sections(const caf::actor_system_config& cfg) {
  std::string path = cfg.config_file_path;
  if (auto p = caf::get_if<std::string>(&cfg.content, "config-file"))
    path = *p;
  std::ifstream in{path};
  std::string line;
  int dotted = 0;
  while (std::getline(in, line)) {
    auto b = line.find_first_not_of(" \t");
    if (b != std::string::npos
        && line.compare(b, 27, "[sessionhost.process-types.") == 0)
      ++dotted;
  }
  if (dotted > 1)
    throw std::invalid_argument(
      path + ": CAF keeps only the last of several "
             "[sessionhost.process-types.NAME] sections; declare the types "
             "as NAME = { … } entries of one [sessionhost.process-types] "
             "section");
}

std::string string_of(const std::string& type, const std::string& key,
                      const config_value& v) {
  if (auto s = caf::get_if<std::string>(&v))
    return *s;
  fail(type, key, "must be a quoted string");
}

std::vector<std::string> strings_of(const std::string& type,
                                    const std::string& key,
                                    const config_value& v) {
  auto xs = caf::get_if<config_value::list>(&v);
  if (!xs)
    fail(type, key, "must be a list of quoted strings, e.g. [\"/bin/cat\"]");
  std::vector<std::string> out;
  for (auto& x : *xs)
    out.push_back(string_of(type, key, x));
  return out;
}

std::chrono::milliseconds duration_of(const std::string& type,
                                      const std::string& key,
                                      const config_value& v) {
  auto ts = caf::get_if<caf::timespan>(&v);
  if (!ts || ts->count() < 0)
    fail(type, key, "must be a duration such as 500ms or 5s");
  return std::chrono::duration_cast<std::chrono::milliseconds>(*ts);
}

bool bool_of(const std::string& type, const std::string& key,
             const config_value& v) {
  if (auto b = caf::get_if<bool>(&v))
    return *b;
  fail(type, key, "must be true or false");
}

// A count or a size: an integer, or a string with a K/M/G suffix (powers of
// 1024).
uint64_t amount_of(const std::string& type, const std::string& key,
                   const config_value& v) {
  if (auto i = caf::get_if<int64_t>(&v)) {
    if (*i < 0)
      fail(type, key, "must not be negative");
    return static_cast<uint64_t>(*i);
  }
  if (auto s = caf::get_if<std::string>(&v)) {
    size_t pos = 0;
    uint64_t n = 0;
    try {
      n = std::stoull(*s, &pos);
    } catch (const std::exception&) {
      fail(type, key, "must be a number, optionally with K, M or G");
    }
    auto rest = s->substr(pos);
    uint64_t mult = rest.empty() ? 1
                    : rest == "K" ? 1ull << 10
                    : rest == "M" ? 1ull << 20
                    : rest == "G" ? 1ull << 30
                                  : 0;
    if (mult == 0 || (*s)[0] == '-')
      fail(type, key, "must be a number, optionally with K, M or G");
    return n * mult;
  }
  fail(type, key, "must be a number (or a string like \"512M\")");
}

void read_limits(process_spec& spec, const config_value& v) {
  auto d = caf::get_if<caf::settings>(&v);
  if (!d)
    fail(spec.name, "limits", "must be a group { cpu-seconds = … }");
  for (auto& [k, x] : *d) {
    auto key = "limits." + k;
    auto n = amount_of(spec.name, key, x);
    auto& l = spec.limits;
    if (k == "cpu-seconds")
      l.cpu_seconds = n;
    else if (k == "address-space")
      l.address_space = n;
    else if (k == "open-files")
      l.open_files = n;
    else if (k == "processes")
      l.processes = n;
    else if (k == "file-size")
      l.file_size = n;
    else if (k == "core-size")
      l.core_size = n;
    else
      fail(spec.name, key, "unknown limit (cpu-seconds, address-space, "
                           "open-files, processes, file-size, core-size)");
  }
}

void check_limit(const process_spec& spec, const char* key, int resource,
                 const std::optional<uint64_t>& value) {
  if (!value || ::geteuid() == 0)
    return;
  rlimit cur{};
  if (::getrlimit(resource, &cur) == 0 && cur.rlim_max != RLIM_INFINITY
      && *value > cur.rlim_max)
    fail(spec.name, std::string{"limits."} + key,
         "above the server's own hard limit " + std::to_string(cur.rlim_max)
           + " (only root may raise it)");
}

void resolve_user(process_spec& spec) {
  bool root = ::geteuid() == 0;
  if (spec.user.empty()) {
    if (root)
      fail(spec.name, "user",
           "the server runs as root: name the unprivileged user the process "
           "runs as (e.g. user = \"nobody\")");
    return;
  }
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwnam_r(spec.user.c_str(), &pw, buf.data(), buf.size(), &found) != 0
      || found == nullptr)
    fail(spec.name, "user", "no user " + spec.user);
  if (pw.pw_uid == 0)
    fail(spec.name, "user", "a process never runs as root");
  if (!root) {
    if (pw.pw_uid != ::geteuid())
      fail(spec.name, "user", "the server is not root and cannot run "
                              "processes as " + spec.user);
    return; // already that user
  }
  spec.switch_user = true;
  spec.uid = pw.pw_uid;
  spec.gid = pw.pw_gid;
  int n = 64;
  std::vector<gid_t> groups(static_cast<size_t>(n));
  if (::getgrouplist(spec.user.c_str(), pw.pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<size_t>(n));
    ::getgrouplist(spec.user.c_str(), pw.pw_gid, groups.data(), &n);
  }
  groups.resize(static_cast<size_t>(n));
  spec.groups = std::move(groups);
}

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 64)
    return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'
          || c == '.'))
      return false;
  return true;
}

process_spec read_spec(const std::string& name, const config_value& v,
                       const std::string& data_dir) {
  process_spec spec;
  spec.name = name;
  if (!valid_name(name))
    fail(name, "", "a type name has 1-64 characters of [A-Za-z0-9_.-]");
  auto d = caf::get_if<caf::settings>(&v);
  if (!d)
    fail(name, "", "must be a group: " + name + " = { command = [\"…\"] }");
  spec.working_dir = "${data_dir}/process/${session_id}";
  for (auto& [k, x] : *d) {
    if (k == "command")
      spec.command = strings_of(name, k, x);
    else if (k == "working-dir")
      spec.working_dir = string_of(name, k, x);
    else if (k == "keep-working-dir")
      spec.keep_working_dir = bool_of(name, k, x);
    else if (k == "env") {
      auto env = caf::get_if<caf::settings>(&x);
      if (!env)
        fail(name, k, "must be a group { NAME = \"value\" }");
      for (auto& [var, val] : *env) {
        if (var.empty() || var.find('=') != std::string::npos)
          fail(name, k, "bad variable name " + var);
        spec.env[var] = checked_template(name, "env." + var,
                                         string_of(name, "env." + var, val),
                                         data_dir);
      }
    } else if (k == "inherit-env")
      spec.inherit_env = strings_of(name, k, x);
    else if (k == "user")
      spec.user = string_of(name, k, x);
    else if (k == "limits")
      read_limits(spec, x);
    else if (k == "grace")
      spec.grace = duration_of(name, k, x);
    else if (k == "turn-quiet")
      spec.turn_quiet = duration_of(name, k, x);
    else if (k == "turn-end-line")
      spec.turn_end_line = string_of(name, k, x);
    else if (k == "stdin") {
      auto f = string_of(name, k, x);
      if (f == "text")
        spec.input = stdin_format::text;
      else if (f == "json")
        spec.input = stdin_format::json;
      else
        fail(name, k, "must be \"text\" or \"json\"");
    } else if (k == "max-line") {
      spec.max_line = amount_of(name, k, x);
      if (spec.max_line < 16 || spec.max_line > (16u << 20))
        fail(name, k, "must be 16 bytes to 16M");
    } else
      fail(name, k, "unknown key (command, working-dir, keep-working-dir, "
                    "env, inherit-env, user, limits, grace, turn-quiet, "
                    "turn-end-line, stdin, max-line)");
  }
  if (spec.command.empty() || spec.command[0].empty())
    fail(name, "command", "is required: a non-empty list, e.g. [\"/bin/cat\"]");
  for (auto& a : spec.command)
    a = checked_template(name, "command", a, data_dir);
  spec.working_dir = checked_template(name, "working-dir", spec.working_dir,
                                      data_dir);
  if (spec.working_dir.empty() || spec.working_dir[0] != '/')
    fail(name, "working-dir", "must be an absolute path");
  if (!spec.keep_working_dir
      && spec.working_dir.find("${session_id}") == std::string::npos)
    fail(name, "working-dir",
         "must contain ${session_id} (it is removed after the process "
         "exits), or set keep-working-dir = true");
  resolve_user(spec);
  check_limit(spec, "cpu-seconds", RLIMIT_CPU, spec.limits.cpu_seconds);
  check_limit(spec, "address-space", RLIMIT_AS, spec.limits.address_space);
  check_limit(spec, "open-files", RLIMIT_NOFILE, spec.limits.open_files);
  check_limit(spec, "processes", RLIMIT_NPROC, spec.limits.processes);
  check_limit(spec, "file-size", RLIMIT_FSIZE, spec.limits.file_size);
  check_limit(spec, "core-size", RLIMIT_CORE, spec.limits.core_size);
  return spec;
}

} // namespace

std::vector<process_spec> process_specs_from(const caf::actor_system_config& cfg,
                                             const std::string& data_dir) {
  std::vector<process_spec> out;
  auto group = caf::get_if<caf::settings>(&cfg.content, "sessionhost");
  if (!group)
    return out;
  auto types = group->find("process-types");
  if (types == group->end())
    return out;
  auto d = caf::get_if<caf::settings>(&types->second);
  if (!d)
    throw std::invalid_argument("sessionhost.process-types must be a section "
                                "of NAME = { command = [\"…\"], … } entries");
  if (data_dir.empty() || data_dir[0] != '/')
    throw std::invalid_argument("process types need an absolute data dir");
  check_sections(cfg);
  for (auto& [name, v] : *d)
    out.push_back(read_spec(name, v, data_dir));
  return out;
}

std::string expand_template(const std::string& text,
                            const std::string& session_id,
                            const std::string& type) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 13, "${session_id}") == 0) {
      out += session_id;
      i += 13;
    } else if (text.compare(i, 7, "${type}") == 0) {
      out += type;
      i += 7;
    } else {
      out += text[i++];
    }
  }
  return out;
}

} // namespace sessionhost
