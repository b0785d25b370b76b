#pragma once
// The process types a server declares (sessionhost.process-types.*), each
// registered as a session type, and the one supervisor their children run
// under. `sessionhost serve` makes one from its config; an embedder may too.

#include <memory>
#include <string>
#include <vector>

#include <caf/fwd.hpp>

#include "host/process/process_spec.hpp"
#include "host/process/process_supervisor.hpp"
#include "host/session_type.hpp"

namespace sessionhost {

/// The declared process types of one host and the supervisor their children
/// run under.
class process_types {
public:
  /// Reads `sessionhost.process-types.*` (see process_spec.hpp); throws
  /// std::invalid_argument on a bad declaration. Starts the supervisor.
  process_types(const caf::actor_system_config& cfg, const std::string& data_dir);
  /// From specs already read.
  explicit process_types(std::vector<process_spec> specs);
  /// stop().
  ~process_types();

  /// Registers every type by name; throws std::invalid_argument if a name
  /// is taken already (e.g. a built-in type).
  void install(session_type_registry& types) const;
  /// The declared types' names.
  std::vector<std::string> names() const;
  /// The supervisor of their children.
  process_supervisor& supervisor() noexcept { return *sup_; }
  /// Kills every child still running and stops the supervisor. Call it after
  /// the host stopped (its shutdown terminates process sessions cleanly).
  void stop();

private:
  std::vector<std::shared_ptr<const process_spec>> specs_;
  std::shared_ptr<process_supervisor> sup_;
};

} // namespace sessionhost
