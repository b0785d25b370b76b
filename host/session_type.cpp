#include "host/session_type.hpp"

#include <nlohmann/json.hpp>

#include "host/event.hpp"

namespace sessionhost {

session_context::~session_context() = default;
session_type::~session_type() = default;

namespace {

using json = nlohmann::json;

// Answers every message with one block that repeats it in up to three
// deltas: what a streaming agent looks like to its clients.
class echo_type final : public session_type {
public:
  bool spawns_nothing() const override { return true; }

  void on_message(session_context& ctx, const std::string& data) override {
    auto parsed = json::parse(data, nullptr, false);
    std::string text = parsed.is_string() ? parsed.get<std::string>() : data;
    auto block = "b" + std::to_string(++blocks_);
    ctx.publish(event_type::block_start, json{{"block_id", block}}.dump());
    size_t chunk = text.size() / 3 + 1;
    for (size_t pos = 0; pos < text.size(); pos += chunk)
      ctx.publish(event_type::block_delta,
                  json{{"block_id", block}, {"delta", text.substr(pos, chunk)}}
                    .dump());
    ctx.publish(event_type::block_complete,
                json{{"block_id", block}, {"text", text}}.dump());
    ctx.publish(event_type::status_changed,
                json{{"state", to_string(ctx.info().state)},
                     {"previous", to_string(ctx.info().state)},
                     {"runtime", "idle"}}
                  .dump());
  }

private:
  uint64_t blocks_ = 0;
};

// Does nothing by itself: an outside agent drives the session (so it needs
// no start of its own).
class agent_type final : public session_type {
public:
  bool quiet_start() const override { return true; }
};

} // namespace

std::shared_ptr<session_type_registry> session_type_registry::with_builtins() {
  auto reg = std::make_shared<session_type_registry>();
  reg->add("echo", [] { return std::make_unique<echo_type>(); });
  reg->add("agent", [] { return std::make_unique<agent_type>(); });
  return reg;
}

void session_type_registry::add(const std::string& name,
                                session_type_factory factory) {
  std::lock_guard<std::mutex> guard{mtx_};
  factories_[name] = std::move(factory);
}

bool session_type_registry::contains(const std::string& name) const {
  std::lock_guard<std::mutex> guard{mtx_};
  return factories_.count(name) > 0;
}

std::unique_ptr<session_type>
session_type_registry::make(const std::string& name) const {
  session_type_factory f;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = factories_.find(name);
    if (i == factories_.end())
      return nullptr;
    f = i->second;
  }
  return f();
}

std::vector<std::string> session_type_registry::names() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<std::string> out;
  for (auto& [name, f] : factories_)
    out.push_back(name);
  return out;
}

} // namespace sessionhost
