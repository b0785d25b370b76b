#include "transport/proto_frames.hpp"

#include "sessionhost/v1/session.pb.h"

#include "host/store/codec.hpp" // to_proto

namespace sessionhost::transport {

using nlohmann::json;

namespace {

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

/// JSON text as a value; text that is not JSON stays a string.
json parse_text(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  return j.is_discarded() ? json(text) : j;
}

} // namespace

std::optional<json> client_op_to_json(const std::string& bytes,
                                      std::string& error) {
  v1::ClientOp op;
  if (!op.ParseFromString(bytes)) {
    error = "the binary frame is not a sessionhost.v1.ClientOp";
    return std::nullopt;
  }
  json j = json::object();
  if (!op.op().empty())
    j["op"] = op.op();
  if (!op.session().empty())
    j["session"] = op.session();
  if (!op.ref().empty())
    j["ref"] = parse_text(op.ref());
  if (op.has_from_seq())
    j["from_seq"] = op.from_seq();
  if (!op.data().empty()) {
    auto data = json::parse(op.data(), nullptr, false);
    if (data.is_discarded()) {
      error = "\"data\" must be JSON text";
      return std::nullopt;
    }
    j["data"] = std::move(data);
  }
  if (!op.type().empty())
    j["type"] = op.type();
  if (!op.peer().empty())
    j["peer"] = op.peer();
  if (!op.idempotency_key().empty())
    j["idempotency_key"] = op.idempotency_key();
  return j;
}

std::string server_op_to_proto(const json& j) {
  v1::ServerOp op;
  for (auto& [k, v] : j.items()) {
    if (k == "op" && v.is_string())
      op.set_op(v.get<std::string>());
    else if (k == "session" && v.is_string())
      op.set_session(v.get<std::string>());
    else if (k == "ref" && !v.is_null())
      op.set_ref(dump(v));
    else if (k == "seq" && v.is_number_unsigned())
      op.set_seq(v.get<uint64_t>());
    else if (k == "last_seq" && v.is_number_unsigned())
      op.set_last_seq(v.get<uint64_t>());
    else if (k == "code" && v.is_string())
      op.set_code(v.get<std::string>());
    else if (k == "message" && v.is_string())
      op.set_message(v.get<std::string>());
    else if (k == "peer" && v.is_string())
      op.set_peer(v.get<std::string>());
    else if (k == "peer_connected" && v.is_boolean())
      op.set_peer_connected(v.get<bool>());
    else if (k == "reconnects" && v.is_number_unsigned())
      op.set_reconnects(v.get<uint64_t>());
    else if (k == "state" && v.is_string())
      op.set_state(v.get<std::string>());
    else if (k == "ts" && v.is_number_integer())
      op.set_ts(v.get<int64_t>());
  }
  return op.SerializeAsString();
}

std::string event_to_proto(const event& e) {
  v1::ServerOp op;
  op.set_op("event");
  op.set_session(e.session_id);
  to_proto(e, *op.mutable_event());
  return op.SerializeAsString();
}

} // namespace sessionhost::transport
