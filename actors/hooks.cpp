#include "actors/hooks.hpp"

#include <algorithm>

namespace sessionhost {

session_control::~session_control() = default;

const char* to_string(hook_kind k) noexcept {
  switch (k) {
    case hook_kind::session_open: return "session_open";
    case hook_kind::session_close: return "session_close";
    case hook_kind::heartbeat_timeout: return "heartbeat_timeout";
  }
  return "unknown";
}

hook_id hook_registry::add(hook_kind kind, std::string session_id, hook_fn fn,
                           bool enabled) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto id = next_id_++;
  entries_.push_back(entry{id, kind, std::move(session_id), enabled,
                           std::make_shared<const hook_fn>(std::move(fn))});
  return id;
}

bool hook_registry::enable(hook_id id) {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& e : entries_)
    if (e.id == id) {
      e.enabled = true;
      return true;
    }
  return false;
}

bool hook_registry::remove(hook_kind kind, hook_id id) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = std::find_if(entries_.begin(), entries_.end(), [&](const entry& e) {
    return e.id == id && e.kind == kind;
  });
  if (i == entries_.end())
    return false;
  entries_.erase(i);
  return true;
}

size_t hook_registry::clear(const std::string& session_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto before = entries_.size();
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [&](const entry& e) {
                                  return !e.session_id.empty()
                                         && e.session_id == session_id;
                                }),
                 entries_.end());
  return before - entries_.size();
}

void hook_registry::clear_all() {
  std::lock_guard<std::mutex> guard{mtx_};
  entries_.clear();
}

std::vector<std::shared_ptr<const hook_fn>>
hook_registry::collect(hook_kind kind, const std::string& session_id) const {
  std::vector<std::shared_ptr<const hook_fn>> out;
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& e : entries_)
    if (e.enabled && e.kind == kind && e.session_id.empty())
      out.push_back(e.fn);
  for (auto& e : entries_)
    if (e.enabled && e.kind == kind && !e.session_id.empty()
        && e.session_id == session_id)
      out.push_back(e.fn);
  return out;
}

std::shared_ptr<const hook_fn> hook_registry::get(hook_kind kind,
                                                  hook_id id) const {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& e : entries_)
    if (e.id == id && e.kind == kind && e.enabled)
      return e.fn;
  return nullptr;
}

size_t hook_registry::size() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return entries_.size();
}

} // namespace sessionhost
