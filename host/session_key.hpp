#pragma once
// The host's key for a session id in its index of loaded sessions. The ids
// the host generates are canonical UUIDs: packed into 16 bytes they need no
// heap block of their own. Any other id (an embedder's own id generator) is
// kept as a string. An idle session costs its host one key.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace sessionhost {

/// The canonical text of a UUID from its 128 bits (`hi` the first 8 bytes):
/// 36 lowercase characters, 8-4-4-4-12.
std::string format_uuid(uint64_t hi, uint64_t lo);

class session_key {
public:
  /// The key of `id`.
  explicit session_key(const std::string& id);

  session_key(session_key&&) noexcept = default;
  session_key& operator=(session_key&&) noexcept = default;

  /// The id again, as given.
  std::string str() const;

  /// Same id.
  bool operator==(const session_key& x) const noexcept;

  /// For hash maps.
  size_t hash() const noexcept;

private:
  uint64_t hi_ = 0;
  uint64_t lo_ = 0;
  std::unique_ptr<std::string> other_; // null: a canonical UUID
};

/// Hashes a session_key.
struct session_key_hash {
  size_t operator()(const session_key& k) const noexcept { return k.hash(); }
};

} // namespace sessionhost
