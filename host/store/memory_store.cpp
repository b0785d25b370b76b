#include "host/store/memory_store.hpp"

#include <algorithm>
#include <tuple>

#include "host/store/catch_up.hpp"

namespace sessionhost {

session_store::~session_store() = default;

void check_started(const std::vector<append_batch>& sessions) {
  using code = store_error::code;
  for (auto& b : sessions) {
    if (!b.snapshot || b.snapshot->id != b.session_id)
      throw store_error(code::invalid_argument,
                        "a started session needs its own snapshot: "
                          + b.session_id);
    for (size_t k = 0; k < b.events.size(); ++k)
      if (b.events[k].seq != k + 1)
        throw store_error(code::seq_gap,
                          "seq " + std::to_string(b.events[k].seq)
                            + " does not follow " + std::to_string(k) + " in "
                            + b.session_id);
  }
}

bool operator==(const session_info& x, const session_info& y) {
  auto tie = [](const session_info& i) {
    return std::tie(i.id, i.type, i.role, i.metadata, i.state, i.created_at,
                    i.updated_at, i.last_heartbeat, i.message_count,
                    i.reconnects, i.peer, i.peer_connected, i.last_seq,
                    i.epoch, i.loaded);
  };
  return tie(x) == tie(y);
}

bool matches(const session_filter& filter, const session_info& info) {
  return (!filter.state || *filter.state == info.state)
         && (filter.role.empty() || filter.role == info.role)
         && (filter.type.empty() || filter.type == info.type);
}

namespace {

using code = store_error::code;

// Cursor: the (created_at, id) of the last entry of the previous page.
std::string make_cursor(const session_info& i) {
  return std::to_string(i.created_at) + ":" + i.id;
}

struct cursor_pos {
  micros ts = 0;
  std::string id;
};

std::optional<cursor_pos> parse_cursor(const std::string& cursor) {
  if (cursor.empty())
    return std::nullopt;
  auto colon = cursor.find(':');
  if (colon == std::string::npos)
    throw store_error(code::invalid_argument, "malformed cursor");
  cursor_pos pos;
  try {
    size_t used = 0;
    pos.ts = std::stoll(cursor.substr(0, colon), &used);
    if (used != colon)
      throw std::invalid_argument("trailing characters");
  } catch (const std::exception&) {
    throw store_error(code::invalid_argument, "malformed cursor");
  }
  pos.id = cursor.substr(colon + 1);
  return pos;
}

bool after_cursor(const session_info& i, const std::optional<cursor_pos>& c) {
  return !c || std::tie(i.created_at, i.id) > std::tie(c->ts, c->id);
}

} // namespace

void memory_store::fail_writes(bool on) {
  std::lock_guard<std::mutex> guard{mtx_};
  fail_writes_ = on;
}

session_info memory_store::view(const record& r) const {
  auto out = r.snapshot;
  out.last_seq = r.last_seq;
  out.epoch = r.epoch;
  out.loaded = false;
  return out;
}

bool memory_store::role_taken(const std::string& role,
                              const std::string& except_id) const {
  if (role.empty())
    return false;
  for (auto& [id, r] : sessions_)
    if (id != except_id && r.snapshot.role == role
        && r.snapshot.state != session_state::cleaned)
      return true;
  return false;
}

void memory_store::create(const session_info& info) {
  create_many({info});
}

void memory_store::create_many(const std::vector<session_info>& infos) {
  std::vector<record> rs(infos.size());
  for (size_t i = 0; i < infos.size(); ++i) {
    rs[i].snapshot = infos[i];
    rs[i].snapshot.last_seq = 0;
    rs[i].epoch = infos[i].epoch;
  }
  insert_new(std::move(rs));
}

void memory_store::create_started(const std::vector<append_batch>& sessions) {
  check_started(sessions);
  std::vector<record> rs(sessions.size());
  for (size_t i = 0; i < sessions.size(); ++i) {
    auto& b = sessions[i];
    auto& r = rs[i];
    r.snapshot = *b.snapshot;
    r.epoch = b.epoch;
    for (auto& e : b.events) {
      r.events.emplace(e.seq, e);
      r.last_seq = e.seq;
    }
    r.snapshot.last_seq = std::min(b.snapshot->last_seq, r.last_seq);
  }
  insert_new(std::move(rs));
}

void memory_store::insert_new(std::vector<record> rs) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (fail_writes_)
    throw store_error(code::io, "injected write failure");
  // All or none: undo this call's inserts when one of them fails.
  std::vector<std::string> done;
  done.reserve(rs.size());
  try {
    for (auto& r : rs) {
      auto id = r.snapshot.id;
      if (sessions_.count(id))
        throw store_error(code::conflict, "session " + id + " exists");
      if (role_taken(r.snapshot.role, id))
        throw store_error(code::conflict, "role " + r.snapshot.role + " is taken");
      sessions_.emplace(id, std::move(r));
      done.push_back(std::move(id));
    }
  } catch (...) {
    for (auto& id : done)
      sessions_.erase(id);
    throw;
  }
}

void memory_store::append(const std::vector<append_batch>& batches) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (fail_writes_)
    throw store_error(code::io, "injected write failure");
  // Validate everything first: the batch is all or nothing. Several batches of
  // one session may follow each other, so track the seq we would reach.
  std::unordered_map<std::string, uint64_t> next_last;
  for (auto& b : batches) {
    auto i = sessions_.find(b.session_id);
    if (i == sessions_.end())
      throw store_error(code::not_found, "unknown session " + b.session_id);
    if (b.epoch < i->second.epoch)
      throw store_error(code::stale_epoch,
                        "stale epoch " + std::to_string(b.epoch) + " < "
                          + std::to_string(i->second.epoch) + " for "
                          + b.session_id);
    auto [it, fresh] = next_last.emplace(b.session_id, i->second.last_seq);
    for (auto& e : b.events) {
      if (e.seq != it->second + 1)
        throw store_error(code::seq_gap,
                          "seq " + std::to_string(e.seq) + " does not follow "
                            + std::to_string(it->second) + " in "
                            + b.session_id);
      it->second = e.seq;
    }
    if (b.snapshot && role_taken(b.snapshot->role, b.session_id))
      throw store_error(code::conflict, "role " + b.snapshot->role + " is taken");
  }
  for (auto& b : batches) {
    auto& r = sessions_[b.session_id];
    r.epoch = std::max(r.epoch, b.epoch);
    for (auto& e : b.events) {
      r.events.emplace(e.seq, e);
      r.last_seq = e.seq;
    }
    if (b.snapshot)
      r.snapshot = *b.snapshot;
  }
}

std::vector<event> memory_store::read_events(const std::string& id,
                                             uint64_t after_seq, size_t limit) {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<event> out;
  auto i = sessions_.find(id);
  if (i == sessions_.end())
    return out;
  auto& evs = i->second.events;
  for (auto k = evs.upper_bound(after_seq); k != evs.end() && out.size() < limit;
       ++k)
    out.push_back(k->second);
  return out;
}

std::optional<session_info> memory_store::load(const std::string& id) {
  session_info info;
  uint64_t covered = 0; // the events the snapshot includes
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = sessions_.find(id);
    if (i == sessions_.end())
      return std::nullopt;
    info = view(i->second);
    covered = i->second.snapshot.last_seq;
  }
  catch_up(*this, info, covered);
  return info;
}

uint64_t memory_store::activate(const std::string& id) {
  return activate_many({id}).front();
}

std::vector<uint64_t> memory_store::activate_many(const std::vector<std::string>& ids) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (fail_writes_)
    throw store_error(code::io, "injected write failure");
  for (auto& id : ids) // all or none
    if (!sessions_.count(id))
      throw store_error(code::not_found, "unknown session " + id);
  std::vector<uint64_t> epochs;
  epochs.reserve(ids.size());
  for (auto& id : ids)
    epochs.push_back(++sessions_[id].epoch);
  return epochs;
}

std::optional<std::string> memory_store::find_by_role(const std::string& role) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (role.empty())
    return std::nullopt;
  for (auto& [id, r] : sessions_)
    if (r.snapshot.role == role && r.snapshot.state != session_state::cleaned)
      return id;
  return std::nullopt;
}

session_page memory_store::list(const session_filter& filter,
                                const std::string& cursor, size_t limit) {
  if (limit == 0)
    throw store_error(code::invalid_argument, "limit must be at least 1");
  auto from = parse_cursor(cursor);
  std::vector<std::pair<session_info, uint64_t>> all; // with what it covers
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& [id, r] : sessions_)
      if (matches(filter, r.snapshot) && after_cursor(r.snapshot, from))
        all.emplace_back(view(r), r.snapshot.last_seq);
  }
  std::sort(all.begin(), all.end(), [](auto& x, auto& y) {
    return std::tie(x.first.created_at, x.first.id)
           < std::tie(y.first.created_at, y.first.id);
  });
  session_page page;
  if (all.size() > limit) {
    all.resize(limit);
    page.next_cursor = make_cursor(all.back().first);
  }
  for (auto& [info, covered] : all) {
    catch_up(*this, info, covered);
    page.sessions.push_back(std::move(info));
  }
  return page;
}

uint64_t memory_store::count(const session_filter& filter) {
  std::lock_guard<std::mutex> guard{mtx_};
  uint64_t n = 0;
  for (auto& [id, r] : sessions_)
    n += matches(filter, r.snapshot) ? 1 : 0;
  return n;
}

void memory_store::remove(const std::string& id) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (fail_writes_)
    throw store_error(code::io, "injected write failure");
  sessions_.erase(id);
}

purge_result memory_store::purge(const retention_policy& policy, micros now) {
  purge_result out;
  auto chunk = std::max<size_t>(policy.chunk_rows, 1);
  auto budget_left = [&] {
    return policy.max_rows == 0 || out.events + out.sessions < policy.max_rows;
  };
  // One chunk per lock hold, like the durable stores' transactions.
  if (policy.max_event_age.count() > 0) {
    auto cutoff = now - policy.max_event_age.count();
    for (bool more = true; more && budget_left();) {
      std::lock_guard<std::mutex> guard{mtx_};
      if (fail_writes_)
        throw store_error(code::io, "injected write failure");
      size_t n = 0;
      for (auto& [id, r] : sessions_) {
        auto bound = std::min(r.snapshot.last_seq,
                              r.last_seq > policy.keep_events
                                ? r.last_seq - policy.keep_events
                                : 0);
        for (auto i = r.events.begin();
             i != r.events.end() && i->first <= bound && n < chunk;) {
          if (i->second.ts < cutoff) {
            i = r.events.erase(i);
            ++n;
          } else {
            ++i;
          }
        }
      }
      out.events += n;
      more = n == chunk;
    }
  }
  if (policy.cleaned_grace.count() > 0) {
    auto cutoff = now - policy.cleaned_grace.count();
    for (bool more = true; more && budget_left();) {
      std::lock_guard<std::mutex> guard{mtx_};
      if (fail_writes_)
        throw store_error(code::io, "injected write failure");
      more = false;
      for (auto i = sessions_.begin(); i != sessions_.end();) {
        auto& snap = i->second.snapshot;
        if (snap.state != session_state::cleaned || snap.updated_at >= cutoff) {
          ++i;
          continue;
        }
        if (i->second.events.size() >= chunk) {
          // Events first, in chunks; the session row goes with the last one.
          auto& evs = i->second.events;
          auto end = evs.begin();
          std::advance(end, static_cast<std::ptrdiff_t>(chunk));
          evs.erase(evs.begin(), end);
          out.events += chunk;
          more = true;
          break;
        }
        out.events += i->second.events.size();
        ++out.sessions;
        i = sessions_.erase(i);
      }
    }
  }
  out.truncated = !budget_left();
  return out;
}

} // namespace sessionhost
