#pragma once
// A process type as the server's config declares it: which command a session
// of that type runs, where, with which environment, as which user and under
// which limits. Clients only ever name a type; they never supply any of this.
//
// Read from CAF's own config (the INI file given with --config-file, or
// caf-application.ini), one entry per type in one section:
//
//   [sessionhost.process-types]
//   cat = { command = ["/bin/cat"], grace = 2s }
//   agent = {
//     command = ["/usr/bin/agent", "--stdio"]
//     working-dir = "${data_dir}/process/${session_id}"
//     env = { LANG = "C.UTF-8" }
//     user = "nobody"
//     limits = { cpu-seconds = 60, address-space = "1G", open-files = 64 }
//   }
//
// docs/PROCESS_TYPES.md lists every key. Validation happens once, at start:
// a bad declaration stops the server with a message naming the key.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <caf/fwd.hpp>

namespace sessionhost {

/// Resource limits applied to the child (setrlimit, soft = hard); unset
/// means inherited.
struct process_limits {
  std::optional<uint64_t> cpu_seconds;   ///< RLIMIT_CPU
  std::optional<uint64_t> address_space; ///< RLIMIT_AS, bytes
  std::optional<uint64_t> open_files;    ///< RLIMIT_NOFILE
  std::optional<uint64_t> processes;     ///< RLIMIT_NPROC (counted per user)
  std::optional<uint64_t> file_size;     ///< RLIMIT_FSIZE, bytes
  std::optional<uint64_t> core_size;     ///< RLIMIT_CORE, bytes
};

/// What a session's stdin line is made of.
enum class stdin_format {
  /// A JSON string is written as its text, anything else as compact JSON.
  text,
  /// Always the message's compact JSON.
  json,
};

/// One declared process type, validated.
struct process_spec {
  std::string name;
  /// argv; `${session_id}` and `${type}` are substituted at spawn,
  /// `${data_dir}` when read (they come from the server, never a client).
  std::vector<std::string> command;
  /// The child's working directory (templated like command); made for the
  /// child and, unless keep_working_dir, removed after it exits.
  std::string working_dir;
  bool keep_working_dir = false;
  /// The child's environment: exactly this (templated), plus the variables
  /// named in inherit_env copied from the server's, plus
  /// SESSIONHOST_SESSION_ID and SESSIONHOST_TYPE. Default PATH if unset.
  std::map<std::string, std::string> env;
  std::vector<std::string> inherit_env;
  /// The user the child runs as (required when the server runs as root;
  /// never root). Empty: the server's own user.
  std::string user;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  bool switch_user = false;
  process_limits limits;
  /// SIGTERM to the process group, SIGKILL after this.
  std::chrono::milliseconds grace{5000};
  /// A turn (one message → its output block) completes after this long
  /// without output (0: never by time) …
  std::chrono::milliseconds turn_quiet{500};
  /// … or when the child prints this line (not published). Empty: none.
  std::string turn_end_line;
  stdin_format input = stdin_format::text;
  /// Longest output line; longer ones are cut into pieces of this size.
  size_t max_line = 64 * 1024;
};

/// Reads every `sessionhost.process-types.*` section of `cfg`. Throws
/// std::invalid_argument naming the type and key on a bad declaration
/// (unknown key, wrong value type, unknown user, root as user, a removed
/// working directory without ${session_id}, several
/// [sessionhost.process-types.NAME] sections, …). `data_dir` fills
/// `${data_dir}` and must be absolute.
std::vector<process_spec> process_specs_from(const caf::actor_system_config& cfg,
                                             const std::string& data_dir);

/// Replaces `${session_id}` and `${type}` in `text` (`${data_dir}` was
/// replaced when the spec was read).
std::string expand_template(const std::string& text,
                            const std::string& session_id,
                            const std::string& type);

} // namespace sessionhost
