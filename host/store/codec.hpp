#pragma once
// The byte format of events and session snapshots: Protocol Buffers messages
// `sessionhost.v1.Event` and `sessionhost.v1.SessionSnapshot`
// (proto/sessionhost/v1/session.proto). Stores keep these bytes; the same
// bytes travel on WebSocket binary frames and between cluster nodes, so
// everything that reads or writes them goes through here.
//
// Thread safety: free functions without shared state; call from any thread.
// The header deliberately does not include protobuf headers.

#include <string>
#include <string_view>

#include "host/event.hpp"
#include "host/session_info.hpp"

namespace sessionhost {

namespace v1 {
class Event; // generated from proto/sessionhost/v1/session.proto
} // namespace v1

/// Copies every field of `x` into the protobuf envelope (no checks): for
/// messages that embed an Event, such as the WebSocket's ServerOp.
void to_proto(const event& x, v1::Event& out);

/// Serializes `x` as a `sessionhost.v1.Event`. Throws
/// `store_error(invalid_argument)` when a string field is not valid UTF-8
/// (proto3 strings must be, and bytes that cannot be decoded again must never
/// be acknowledged as durable).
std::string encode_event(const event& x);

/// Like `encode_event`, but reuses `out`'s buffer (hot path of the stores).
void encode_event(const event& x, std::string& out);

/// Parses a `sessionhost.v1.Event`. Throws `store_error(corrupt)` when the
/// bytes do not decode.
event decode_event(std::string_view bytes);

/// Serializes every field of `x` except `loaded` as a
/// `sessionhost.v1.SessionSnapshot`. Throws `store_error(invalid_argument)`
/// on strings that are not valid UTF-8.
std::string encode_snapshot(const session_info& x);

/// Parses a `sessionhost.v1.SessionSnapshot` (`loaded` is false). Throws
/// `store_error(corrupt)` when the bytes do not decode or the state is not a
/// known lifecycle state.
session_info decode_snapshot(std::string_view bytes);

/// True when `s` is well-formed UTF-8 (no overlong forms, no surrogates).
bool is_valid_utf8(std::string_view s) noexcept;

} // namespace sessionhost
