#pragma once
// Binary WebSocket frames of the subprotocol "sessionhost.v1.proto"
// (proto/sessionhost/v1/session.proto: ClientOp in, ServerOp out). The
// connection actor speaks JSON ops internally; these functions translate at
// the edge, except events, which go out as the stored Event envelope.
// Thread safety: pure functions. No CAF, no Beast, no protobuf in the header.

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "host/event.hpp"

namespace sessionhost::transport {

/// A ClientOp frame as the JSON op it stands for (fields that are not set
/// are left out); nothing, with `error` set, when the bytes do not parse.
std::optional<nlohmann::json> client_op_to_json(const std::string& bytes,
                                                std::string& error);

/// A server op (the JSON the text protocol sends) as a ServerOp frame.
std::string server_op_to_proto(const nlohmann::json& op);

/// An "event" op carrying `e` as its Event envelope (the bytes a store
/// keeps).
std::string event_to_proto(const event& e);

} // namespace sessionhost::transport
