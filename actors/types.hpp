#pragma once
// Registers sessionhost's message types with a CAF config. Every node of a
// cluster must register the same types (CAF guide §3).

namespace caf { class actor_system_config; }

namespace sessionhost {

/// Registers sessionhost's message types on `cfg` (sessionhost_config does
/// this already). Call it before the actor system is started.
void register_types(caf::actor_system_config& cfg);

} // namespace sessionhost
