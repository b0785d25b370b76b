#pragma once
// The `list` cursor of the SQL stores: an opaque token naming the
// (created_at, id) of the last session of a page, so the next page starts
// strictly after it (keyset pagination: stable while sessions are added or
// removed, no OFFSET scans). Callers must treat it as opaque; its spelling is
// this file's business.
//
// Thread safety: pure functions.

#include <string>

#include "host/clock.hpp"

namespace sessionhost {

/// Where a page ends: the ordering key of its last session.
struct list_position {
  micros created_at = 0;
  std::string id;
};

/// Encodes `pos` as a cursor token.
std::string encode_list_cursor(const list_position& pos);

/// Decodes a token made by `encode_list_cursor`. Throws
/// `store_error(invalid_argument)` on anything else.
list_position decode_list_cursor(const std::string& cursor);

} // namespace sessionhost
