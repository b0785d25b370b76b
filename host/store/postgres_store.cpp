#include "host/store/postgres_store.hpp"

#include <pqxx/pqxx>

#include <algorithm>
#include <condition_variable>
#include <limits>
#include <map>
#include <mutex>

#include "host/store/catch_up.hpp"
#include "host/store/codec.hpp"
#include "host/store/list_cursor.hpp"

namespace sessionhost {

namespace {

using code = store_error::code;

// Events per INSERT statement: one round trip per chunk instead of per
// event, with parameters of a few MB at most.
constexpr size_t insert_chunk = 10'000;

// Serializes schema creation among processes and nodes opening one database.
constexpr int64_t schema_lock_key = 0x5348535400000001;

constexpr const char* schema_v1 = R"sql(
CREATE TABLE sessionhost.sessions (
  id         text COLLATE "C" PRIMARY KEY,
  type       text COLLATE "C" NOT NULL DEFAULT '',
  role       text COLLATE "C" NOT NULL DEFAULT '',
  state      text NOT NULL,
  created_at bigint NOT NULL,
  last_seq   bigint NOT NULL DEFAULT 0,
  epoch      bigint NOT NULL DEFAULT 0,
  snapshot   bytea NOT NULL
);
CREATE INDEX sessions_by_created ON sessionhost.sessions (created_at, id);
CREATE INDEX sessions_by_type ON sessionhost.sessions (type);
CREATE UNIQUE INDEX sessions_live_role ON sessionhost.sessions (role)
  WHERE role <> '' AND state <> 'CLEANED';
CREATE TABLE sessionhost.events (
  session_id text COLLATE "C" NOT NULL,
  seq        bigint NOT NULL,
  envelope   bytea NOT NULL,
  PRIMARY KEY (session_id, seq)
);
)sql";
// Version 2: what retention filters by becomes columns (see migrate_to_2).
constexpr const char* schema_v2 = R"sql(
ALTER TABLE sessionhost.sessions
  ADD COLUMN updated_at bigint NOT NULL DEFAULT 0,
  ADD COLUMN snapshot_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE sessionhost.events ADD COLUMN ts bigint NOT NULL DEFAULT 0;
CREATE INDEX sessions_cleaned ON sessionhost.sessions (updated_at)
  WHERE state = 'CLEANED';
)sql";
// Ids are compared with COLLATE "C" (bytewise) so that list order is the same
// as the other stores' whatever the database's locale.

/// libpq passes text parameters as C strings and the database is UTF-8: a
/// string with a NUL or invalid UTF-8 cannot be a stored id.
bool storable_text(const std::string& s) {
  return s.find('\0') == std::string::npos && is_valid_utf8(s);
}

void check_text(const std::string& s, const char* what) {
  if (!storable_text(s))
    throw store_error(code::invalid_argument,
                      std::string{what} + " contains NUL or invalid UTF-8");
}

int64_t to_db(uint64_t x) {
  if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    throw store_error(code::invalid_argument, "value out of range");
  return static_cast<int64_t>(x);
}

pqxx::binarystring bytes(const std::string& s) {
  return pqxx::binarystring(s.data(), s.size());
}

std::string_view view(const pqxx::binarystring& b) {
  return {b.get(), b.size()};
}

void put_u32(std::string& out, uint32_t x) {
  char b[4] = {static_cast<char>(x >> 24), static_cast<char>(x >> 16),
               static_cast<char>(x >> 8), static_cast<char>(x)};
  out.append(b, 4);
}

void put_u64(std::string& out, uint64_t x) {
  put_u32(out, static_cast<uint32_t>(x >> 32));
  put_u32(out, static_cast<uint32_t>(x));
}

/// The `ts` of `evs[from, from + n)` as a binary bigint[] (see binary_array).
pqxx::binarystring int8_array(const std::vector<event>& evs, size_t from,
                              size_t n) {
  constexpr uint32_t int8_oid = 20;
  std::string out;
  out.reserve(20 + 12 * n);
  put_u32(out, 1);
  put_u32(out, 0);
  put_u32(out, int8_oid);
  put_u32(out, static_cast<uint32_t>(n));
  put_u32(out, 1);
  for (size_t k = from; k < from + n; ++k) {
    put_u32(out, 8);
    put_u64(out, static_cast<uint64_t>(evs[k].ts));
  }
  return bytes(out);
}

constexpr uint32_t bytea_oid = 17;
constexpr uint32_t text_oid = 25;

/// `items[from, from + n)` in PostgreSQL's binary array format (array_recv):
/// a header (dimensions, null flag, element type, size, lower bound), then
/// each element as a length and its bytes, all integers big-endian. Sent as a
/// binary parameter, so no escaping on either side. A text element's binary
/// form is its bytes too (they must be storable_text).
pqxx::binarystring binary_array(const std::vector<std::string>& items,
                                size_t from, size_t n,
                                uint32_t element_oid = bytea_oid) {
  size_t total = 20;
  for (size_t k = from; k < from + n; ++k)
    total += 4 + items[k].size();
  if (total > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    throw store_error(code::invalid_argument, "batch too large");
  std::string out;
  out.reserve(total);
  put_u32(out, 1); // one dimension
  put_u32(out, 0); // no NULLs
  put_u32(out, element_oid);
  put_u32(out, static_cast<uint32_t>(n));
  put_u32(out, 1); // lower bound
  for (size_t k = from; k < from + n; ++k) {
    put_u32(out, static_cast<uint32_t>(items[k].size()));
    out += items[k];
  }
  return bytes(out);
}

/// Inserts the events of `b` (their envelopes encoded in `envelopes`) in
/// statements of up to insert_chunk: the envelopes travel as one binary
/// bytea[] parameter and the seqs, contiguous by now, are derived from the
/// first one.
void insert_events(pqxx::work& tx, const append_batch& b,
                   const std::vector<std::string>& envelopes) {
  auto& evs = b.events;
  for (size_t from = 0; from < evs.size(); from += insert_chunk) {
    auto n = std::min(insert_chunk, evs.size() - from);
    tx.exec_prepared0("insert_events", b.session_id, to_db(evs[from].seq),
                      binary_array(envelopes, from, n), int8_array(evs, from, n));
  }
}

session_info row_to_info(const pqxx::row& row) {
  // Columns: last_seq, epoch, snapshot, …
  pqxx::binarystring blob{row[2]};
  auto info = decode_snapshot(view(blob));
  info.last_seq = row[0].as<uint64_t>();
  info.epoch = row[1].as<uint64_t>();
  info.loaded = false;
  return info;
}

void prepare_statements(pqxx::connection& c) {
  c.prepare("session_for_update",
            "SELECT last_seq, epoch FROM sessionhost.sessions WHERE id = $1"
            " FOR UPDATE");
  c.prepare("session_exists", "SELECT 1 FROM sessionhost.sessions WHERE id = $1");
  c.prepare("role_taken",
            "SELECT 1 FROM sessionhost.sessions WHERE role = $1"
            " AND state <> 'CLEANED' AND id <> $2 LIMIT 1");
  c.prepare("insert_session",
            "INSERT INTO sessionhost.sessions (id, type, role, state, created_at,"
            " last_seq, epoch, snapshot, updated_at, snapshot_seq)"
            " VALUES ($1, $2, $3, $4, $5, $9, $6, $7, $8, $10)");
  c.prepare("insert_events",
            "INSERT INTO sessionhost.events (session_id, seq, envelope, ts)"
            " SELECT $1, $2::bigint + t.ord - 1, t.env, t.ts"
            " FROM unnest($3::bytea[], $4::bigint[]) WITH ORDINALITY"
            " AS t(env, ts, ord)");
  c.prepare("update_tail",
            "UPDATE sessionhost.sessions SET last_seq = $2, epoch = $3 WHERE id = $1");
  c.prepare("update_snapshot",
            "UPDATE sessionhost.sessions SET last_seq = $2, epoch = $3, type = $4,"
            " role = $5, state = $6, created_at = $7, snapshot = $8,"
            " updated_at = $9, snapshot_seq = $10 WHERE id = $1");
  c.prepare("activate",
            "UPDATE sessionhost.sessions SET epoch = epoch + 1 WHERE id = $1"
            " RETURNING epoch");
  c.prepare("load",
            "SELECT last_seq, epoch, snapshot FROM sessionhost.sessions WHERE id = $1");
  c.prepare("load_many",
            "SELECT last_seq, epoch, snapshot, id FROM sessionhost.sessions"
            " WHERE id = ANY($1::text[])");
  // Locks in id order first (as activate_many does), so two nodes claiming
  // overlapping sets wait for each other instead of deadlocking.
  c.prepare("claim_many",
            "WITH locked AS MATERIALIZED (SELECT id FROM sessionhost.sessions"
            " WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE)"
            " UPDATE sessionhost.sessions s SET epoch = s.epoch + 1 FROM locked"
            " WHERE s.id = locked.id RETURNING s.id, s.epoch, s.last_seq");
  c.prepare("read_events",
            "SELECT envelope FROM sessionhost.events WHERE session_id = $1"
            " AND seq > $2 ORDER BY seq LIMIT $3");
  c.prepare("find_by_role",
            "SELECT id FROM sessionhost.sessions WHERE role = $1"
            " AND state <> 'CLEANED' ORDER BY id LIMIT 1");
  c.prepare("delete_session", "DELETE FROM sessionhost.sessions WHERE id = $1");
  c.prepare("delete_events",
            "DELETE FROM sessionhost.events WHERE session_id = $1");
  // Retention. The bounds come from the session row in the same statement;
  // snapshot_seq and last_seq only grow, so a concurrent append only makes
  // them more permissive, never wrong.
  c.prepare("event_candidates",
            "SELECT id FROM sessionhost.sessions WHERE id > $1"
            " AND least(snapshot_seq, last_seq - $2) >= 1 ORDER BY id LIMIT $3");
  c.prepare("purge_old_events",
            "DELETE FROM sessionhost.events WHERE session_id = $1 AND seq IN ("
            " SELECT e.seq FROM sessionhost.events e"
            " JOIN sessionhost.sessions s ON s.id = e.session_id"
            " WHERE e.session_id = $1 AND e.seq <= s.snapshot_seq"
            " AND e.seq + $2 <= s.last_seq AND e.ts < $3 ORDER BY e.seq LIMIT $4)");
  c.prepare("cleaned_candidates",
            "SELECT id FROM sessionhost.sessions WHERE state = 'CLEANED'"
            " AND updated_at < $1 AND id > $2 ORDER BY id LIMIT $3");
  c.prepare("cleaned_lock",
            "SELECT 1 FROM sessionhost.sessions WHERE id = $1"
            " AND state = 'CLEANED' AND updated_at < $2 FOR UPDATE");
  c.prepare("purge_first_events",
            "DELETE FROM sessionhost.events WHERE session_id = $1 AND seq IN ("
            " SELECT seq FROM sessionhost.events WHERE session_id = $1"
            " ORDER BY seq LIMIT $2)");
}

/// Fills the version 2 columns of existing rows from their protobuf bytes. A
/// row that does not decode gets values retention never acts on.
void migrate_to_2(pqxx::work& tx) {
  constexpr auto never = std::numeric_limits<int64_t>::max();
  for (auto row : tx.exec("SELECT id, snapshot, last_seq FROM sessionhost.sessions")) {
    int64_t updated = never, covered = 0;
    try {
      pqxx::binarystring blob{row[1]};
      auto info = decode_snapshot(view(blob));
      updated = info.updated_at;
      covered = std::min(static_cast<int64_t>(info.last_seq), row[2].as<int64_t>());
    } catch (const store_error& e) {
      if (e.error_code() != code::corrupt)
        throw;
    }
    tx.exec_params0("UPDATE sessionhost.sessions SET updated_at = $2,"
                    " snapshot_seq = $3 WHERE id = $1",
                    row[0].as<std::string>(), updated, covered);
  }
  for (auto row : tx.exec("SELECT session_id, seq, envelope FROM sessionhost.events")) {
    int64_t ts = never;
    try {
      pqxx::binarystring blob{row[2]};
      ts = decode_event(view(blob)).ts;
    } catch (const store_error& e) {
      if (e.error_code() != code::corrupt)
        throw;
    }
    tx.exec_params0("UPDATE sessionhost.events SET ts = $3 WHERE session_id = $1"
                    " AND seq = $2",
                    row[0].as<std::string>(), row[1].as<int64_t>(), ts);
  }
}

/// Runs `f`, turning libpqxx exceptions into `store_error`. Sets `broken`
/// when the connection can no longer be trusted.
template <class F>
auto translate(bool& broken, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const store_error&) {
    throw;
  } catch (const pqxx::unique_violation& e) {
    throw store_error(code::conflict, std::string{"postgres: "} + e.what());
  } catch (const pqxx::in_doubt_error& e) {
    // The connection died during COMMIT: the write may or may not be stored.
    broken = true;
    throw store_error(code::io, std::string{"postgres: commit outcome unknown: "}
                                  + e.what());
  } catch (const pqxx::broken_connection& e) {
    broken = true;
    throw store_error(code::io, std::string{"postgres: connection lost: "} + e.what());
  } catch (const pqxx::sql_error& e) {
    throw store_error(code::io, std::string{"postgres: "} + e.what());
  } catch (const std::exception& e) {
    // pqxx::failure, usage_error, conversion errors: do not reuse the
    // connection, its state is unknown.
    broken = true;
    throw store_error(code::io, std::string{"postgres: "} + e.what());
  }
}

/// WHERE clause for `filter` with parameters $1, $2, …; appends the values to
/// bind, in order, to `values`.
std::string where_clause(const session_filter& filter,
                         std::vector<std::string>& values) {
  std::string sql = " WHERE true";
  if (filter.state) {
    values.emplace_back(to_string(*filter.state));
    sql += " AND state = $" + std::to_string(values.size());
  }
  if (!filter.role.empty()) {
    check_text(filter.role, "role filter");
    values.push_back(filter.role);
    sql += " AND role = $" + std::to_string(values.size());
  }
  if (!filter.type.empty()) {
    check_text(filter.type, "type filter");
    values.push_back(filter.type);
    sql += " AND type = $" + std::to_string(values.size());
  }
  return sql;
}

} // namespace

// --- connection pool ----------------------------------------------------------

struct postgres_store::impl {
  std::string url;
  size_t max_connections;

  std::mutex mtx;
  std::condition_variable cv;
  std::vector<std::unique_ptr<pqxx::connection>> idle; // guarded by mtx
  size_t open = 0;                                     // guarded by mtx

  impl(std::string u, size_t n) : url(std::move(u)), max_connections(n) {}

  std::unique_ptr<pqxx::connection> connect() {
    bool broken = false;
    return translate(broken, [&] {
      auto c = std::make_unique<pqxx::connection>(url);
      {
        // Durability must not depend on the server's default.
        pqxx::nontransaction tx{*c};
        tx.exec0("SET synchronous_commit = on");
      }
      prepare_statements(*c);
      return c;
    });
  }

  std::unique_ptr<pqxx::connection> acquire() {
    std::unique_lock<std::mutex> lock{mtx};
    cv.wait(lock, [&] { return !idle.empty() || open < max_connections; });
    if (!idle.empty()) {
      auto c = std::move(idle.back());
      idle.pop_back();
      return c;
    }
    ++open;
    lock.unlock();
    try {
      return connect();
    } catch (...) {
      lock.lock();
      --open;
      cv.notify_one();
      throw;
    }
  }

  void release(std::unique_ptr<pqxx::connection> c, bool broken) {
    std::lock_guard<std::mutex> guard{mtx};
    if (broken || !c->is_open())
      --open; // dropped; a fresh one is made on demand
    else
      idle.push_back(std::move(c));
    cv.notify_one();
  }

  /// Runs `f(connection&)` on a pooled connection, translating errors.
  template <class F>
  auto with_connection(F&& f) -> decltype(f(std::declval<pqxx::connection&>())) {
    auto c = acquire();
    bool broken = false;
    struct giveback {
      impl* self;
      std::unique_ptr<pqxx::connection>& c;
      bool& broken;
      ~giveback() { self->release(std::move(c), broken); }
    } g{this, c, broken};
    return translate(broken, [&] { return f(*c); });
  }

  void init_schema() {
    with_connection([&](pqxx::connection& c) {
      pqxx::work tx{c};
      tx.exec_params("SELECT pg_advisory_xact_lock($1)", schema_lock_key);
      tx.exec0("CREATE SCHEMA IF NOT EXISTS sessionhost");
      tx.exec0("CREATE TABLE IF NOT EXISTS sessionhost.meta"
               " (key text PRIMARY KEY, value text NOT NULL)");
      auto r = tx.exec("SELECT value FROM sessionhost.meta"
                       " WHERE key = 'schema_version'");
      int version = r.empty() ? 0 : r[0][0].as<int>();
      if (version > schema_version)
        throw store_error(code::not_a_database,
                          "the sessionhost schema in this database has version "
                            + std::to_string(version) + "; this binary reads up to "
                            + std::to_string(schema_version));
      if (version == schema_version)
        return; // rolled back: nothing to do
      if (version < 1)
        tx.exec0(schema_v1);
      if (version < 2) {
        tx.exec0(schema_v2);
        migrate_to_2(tx);
      }
      // Later versions add their steps here, each guarded by `version < N`.
      tx.exec_params0("INSERT INTO sessionhost.meta (key, value)"
                      " VALUES ('schema_version', $1) ON CONFLICT (key)"
                      " DO UPDATE SET value = EXCLUDED.value",
                      std::to_string(schema_version));
      tx.commit();
    });
  }
};

postgres_store::postgres_store(const std::string& url, size_t pool_size)
  : impl_(std::make_unique<impl>(url, std::max<size_t>(pool_size, 1))) {
  impl_->init_schema();
}

postgres_store::~postgres_store() = default;

void postgres_store::create(const session_info& info) {
  create_many({info});
}

void postgres_store::create_many(const std::vector<session_info>& infos) {
  if (infos.empty())
    return;
  std::vector<std::string> blobs;
  blobs.reserve(infos.size());
  for (auto& info : infos) {
    check_text(info.id, "session id");
    check_text(info.type, "session type");
    check_text(info.role, "session role");
    auto snapshot = info;
    snapshot.last_seq = 0;
    snapshot.loaded = false;
    blobs.push_back(encode_snapshot(snapshot));
  }
  impl_->with_connection([&](pqxx::connection& c) {
    pqxx::work tx{c};
    for (size_t i = 0; i < infos.size(); ++i) {
      auto& info = infos[i];
      if (!tx.exec_prepared("session_exists", info.id).empty())
        throw store_error(code::conflict, "session " + info.id + " exists");
      if (!info.role.empty()
          && !tx.exec_prepared("role_taken", info.role, info.id).empty())
        throw store_error(code::conflict, "role " + info.role + " is taken");
      // A concurrent create of the same id or live role still fails here, on
      // the primary key or the partial unique index (unique_violation).
      tx.exec_prepared0("insert_session", info.id, info.type, info.role,
                        to_string(info.state),
                        static_cast<int64_t>(info.created_at),
                        to_db(info.epoch), bytes(blobs[i]),
                        static_cast<int64_t>(info.updated_at), int64_t{0},
                        int64_t{0});
    }
    tx.commit();
  });
}

void postgres_store::create_started(const std::vector<append_batch>& sessions) {
  if (sessions.empty())
    return;
  check_started(sessions);
  std::vector<std::string> snapshots;
  std::vector<std::vector<std::string>> envelopes(sessions.size());
  snapshots.reserve(sessions.size());
  for (size_t i = 0; i < sessions.size(); ++i) {
    auto& b = sessions[i];
    check_text(b.session_id, "session id");
    check_text(b.snapshot->type, "session type");
    check_text(b.snapshot->role, "session role");
    snapshots.push_back(encode_snapshot(*b.snapshot));
    envelopes[i].reserve(b.events.size());
    for (auto& e : b.events)
      envelopes[i].push_back(encode_event(e));
  }
  impl_->with_connection([&](pqxx::connection& c) {
    pqxx::work tx{c};
    for (size_t i = 0; i < sessions.size(); ++i) {
      auto& b = sessions[i];
      auto& info = *b.snapshot;
      if (!tx.exec_prepared("session_exists", b.session_id).empty())
        throw store_error(code::conflict, "session " + b.session_id + " exists");
      if (!info.role.empty()
          && !tx.exec_prepared("role_taken", info.role, b.session_id).empty())
        throw store_error(code::conflict, "role " + info.role + " is taken");
      uint64_t last = b.events.empty() ? 0 : b.events.back().seq;
      tx.exec_prepared0("insert_session", b.session_id, info.type, info.role,
                        to_string(info.state),
                        static_cast<int64_t>(info.created_at), to_db(b.epoch),
                        bytes(snapshots[i]),
                        static_cast<int64_t>(info.updated_at), to_db(last),
                        to_db(std::min(info.last_seq, last)));
      insert_events(tx, b, envelopes[i]);
    }
    tx.commit();
  });
}

void postgres_store::append(const std::vector<append_batch>& batches) {
  if (batches.empty())
    return;
  // Encode before taking a connection: CPU work needs no database.
  std::vector<std::vector<std::string>> envelopes(batches.size());
  std::vector<std::string> snapshots(batches.size());
  std::vector<std::string> ids; // distinct, sorted
  for (size_t i = 0; i < batches.size(); ++i) {
    auto& b = batches[i];
    if (!storable_text(b.session_id))
      throw store_error(code::not_found, "unknown session " + b.session_id);
    envelopes[i].reserve(b.events.size());
    for (auto& e : b.events)
      envelopes[i].push_back(encode_event(e));
    if (b.snapshot) {
      check_text(b.snapshot->type, "session type");
      check_text(b.snapshot->role, "session role");
      snapshots[i] = encode_snapshot(*b.snapshot);
    }
    ids.push_back(b.session_id);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  struct tail {
    uint64_t last_seq = 0;
    uint64_t epoch = 0;
    bool found = false;
    std::optional<size_t> snapshot_index; // last batch with a snapshot
  };
  impl_->with_connection([&](pqxx::connection& c) {
    pqxx::work tx{c};
    // Lock every session row first, in id order, so two group commits that
    // share sessions cannot deadlock, and so no activate can slip in between
    // the epoch check and the commit.
    std::map<std::string, tail> tails;
    for (auto& id : ids) {
      auto r = tx.exec_prepared("session_for_update", id);
      auto& t = tails[id];
      if (!r.empty()) {
        t.found = true;
        t.last_seq = r[0][0].as<uint64_t>();
        t.epoch = r[0][1].as<uint64_t>();
      }
    }
    for (size_t i = 0; i < batches.size(); ++i) {
      auto& b = batches[i];
      auto& t = tails[b.session_id];
      if (!t.found)
        throw store_error(code::not_found, "unknown session " + b.session_id);
      if (b.epoch < t.epoch)
        throw store_error(code::stale_epoch,
                          "stale epoch " + std::to_string(b.epoch) + " < "
                            + std::to_string(t.epoch) + " for " + b.session_id);
      for (auto& e : b.events) {
        if (e.seq != t.last_seq + 1)
          throw store_error(code::seq_gap,
                            "seq " + std::to_string(e.seq) + " does not follow "
                              + std::to_string(t.last_seq) + " in " + b.session_id);
        t.last_seq = e.seq;
      }
      if (b.snapshot) {
        if (!b.snapshot->role.empty()
            && !tx.exec_prepared("role_taken", b.snapshot->role, b.session_id)
                  .empty())
          throw store_error(code::conflict,
                            "role " + b.snapshot->role + " is taken");
        t.snapshot_index = i;
      }
      t.epoch = std::max(t.epoch, b.epoch);
      insert_events(tx, b, envelopes[i]);
    }
    for (auto& [id, t] : tails) {
      if (t.snapshot_index) {
        auto& s = *batches[*t.snapshot_index].snapshot;
        tx.exec_prepared0("update_snapshot", id, to_db(t.last_seq), to_db(t.epoch),
                          s.type, s.role, to_string(s.state),
                          static_cast<int64_t>(s.created_at),
                          bytes(snapshots[*t.snapshot_index]),
                          static_cast<int64_t>(s.updated_at),
                          // Covers at most what is stored.
                          to_db(std::min(s.last_seq, t.last_seq)));
      } else {
        tx.exec_prepared0("update_tail", id, to_db(t.last_seq), to_db(t.epoch));
      }
    }
    tx.commit();
  });
}

std::vector<event> postgres_store::read_events(const std::string& id,
                                               uint64_t after_seq, size_t limit) {
  if (limit == 0 || !storable_text(id)
      || after_seq >= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return {};
  auto lim = static_cast<int64_t>(
    std::min<size_t>(limit, static_cast<size_t>(std::numeric_limits<int64_t>::max())));
  return impl_->with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction tx{c};
    auto r = tx.exec_prepared("read_events", id, static_cast<int64_t>(after_seq), lim);
    std::vector<event> out;
    out.reserve(r.size());
    for (auto row : r) {
      pqxx::binarystring blob{row[0]};
      out.push_back(decode_event(view(blob)));
    }
    return out;
  });
}

std::optional<session_info> postgres_store::load(const std::string& id) {
  if (!storable_text(id))
    return std::nullopt;
  uint64_t covered = 0; // the events the snapshot includes
  auto info = impl_->with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction tx{c};
    auto r = tx.exec_prepared("load", id);
    if (r.empty())
      return std::optional<session_info>{};
    pqxx::binarystring blob{r[0][2]};
    covered = decode_snapshot(view(blob)).last_seq;
    return std::optional<session_info>{row_to_info(r[0])};
  });
  if (info)
    catch_up(*this, *info, covered);
  return info;
}

uint64_t postgres_store::activate(const std::string& id) {
  return activate_many({id}).front();
}

std::vector<uint64_t> postgres_store::activate_many(const std::vector<std::string>& ids) {
  std::vector<uint64_t> epochs(ids.size());
  if (ids.empty())
    return epochs;
  for (auto& id : ids)
    if (!storable_text(id))
      throw store_error(code::not_found, "unknown session " + id);
  // Rows are locked in id order, so two nodes activating overlapping sets
  // wait for each other instead of deadlocking.
  std::vector<size_t> order(ids.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return ids[a] < ids[b]; });
  impl_->with_connection([&](pqxx::connection& c) {
    pqxx::work tx{c};
    for (auto i : order) {
      // One statement each: the row lock makes concurrent activations take
      // turns, each getting its own epoch.
      auto r = tx.exec_prepared("activate", ids[i]);
      if (r.empty())
        throw store_error(code::not_found, "unknown session " + ids[i]);
      epochs[i] = r[0][0].as<uint64_t>();
    }
    tx.commit();
  });
  return epochs;
}

std::vector<activation>
postgres_store::load_activate_many(const std::vector<std::string>& ids) {
  check_distinct(ids);
  std::vector<activation> out(ids.size());
  std::vector<uint64_t> tails(ids.size()); // the stored last_seq when read
  std::map<std::string_view, size_t> at;   // place in `out` by id
  std::vector<std::string> asked;
  for (size_t i = 0; i < ids.size(); ++i) {
    out[i].id = ids[i];
    out[i].error = store_error(code::not_found, "no session " + ids[i]);
    if (storable_text(ids[i])) {
      at.emplace(ids[i], i);
      asked.push_back(ids[i]);
    }
  }
  if (asked.empty())
    return out;
  // Reads: one statement for all of them.
  std::vector<uint64_t> covered(ids.size()); // what each snapshot includes
  impl_->with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction tx{c};
    auto rows = tx.exec_prepared("load_many",
                                 binary_array(asked, 0, asked.size(), text_oid));
    for (auto row : rows) {
      auto i = at.at(row[3].as<std::string>());
      auto& a = out[i];
      try {
        pqxx::binarystring blob{row[2]};
        auto info = decode_snapshot(view(blob));
        covered[i] = info.last_seq;
        info.id = a.id;
        info.last_seq = tails[i] = row[0].as<uint64_t>();
        info.epoch = row[1].as<uint64_t>();
        info.loaded = false;
        a.info = std::move(info);
        a.error.reset();
      } catch (const store_error& e) {
        if (e.error_code() != code::corrupt)
          throw;
        a.error = e;
      }
    }
  });
  // The events after each snapshot, for the sessions that have any.
  std::vector<std::string> found;
  for (auto& a : out) {
    if (!a.info)
      continue;
    auto i = at.at(a.id);
    try {
      catch_up(*this, *a.info, covered[i]);
      found.push_back(a.id);
    } catch (const store_error& e) {
      if (e.error_code() != code::corrupt)
        throw;
      a.info.reset();
      a.error = e;
    }
  }
  if (found.empty())
    return out;
  // Claims: one statement, in one transaction. It gives the tail as of the
  // claim, so what an older activation wrote meanwhile is caught below.
  std::vector<size_t> behind;
  std::vector<bool> claimed(ids.size());
  impl_->with_connection([&](pqxx::connection& c) {
    pqxx::work tx{c};
    auto rows = tx.exec_prepared("claim_many",
                                 binary_array(found, 0, found.size(), text_oid));
    tx.commit();
    for (auto row : rows) {
      auto i = at.at(row[0].as<std::string>());
      claimed[i] = true;
      out[i].info->epoch = row[1].as<uint64_t>();
      auto tail = row[2].as<uint64_t>();
      if (tail > tails[i]) {
        tails[i] = tail;
        behind.push_back(i);
      }
    }
  });
  for (auto& a : out)
    if (a.info && !claimed[at.at(a.id)]) { // removed since it was read
      a.info.reset();
      a.error = store_error(code::not_found, "no session " + a.id);
    }
  for (auto i : behind) {
    auto& a = out[i];
    try {
      fold_up_to(*a.info, tails[i], [&](uint64_t after, uint64_t limit) {
        return read_events(a.id, after, static_cast<size_t>(limit));
      });
    } catch (const store_error& e) { // claimed already: fail alone
      a.info.reset();
      a.error = e;
    }
  }
  return out;
}

std::optional<std::string> postgres_store::find_by_role(const std::string& role) {
  if (role.empty() || !storable_text(role))
    return std::nullopt;
  return impl_->with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction tx{c};
    auto r = tx.exec_prepared("find_by_role", role);
    if (r.empty())
      return std::optional<std::string>{};
    return std::optional<std::string>{r[0][0].as<std::string>()};
  });
}

session_page postgres_store::list(const session_filter& filter,
                                  const std::string& cursor, size_t limit) {
  if (limit == 0)
    throw store_error(code::invalid_argument, "limit must be at least 1");
  std::optional<list_position> after;
  if (!cursor.empty()) {
    after = decode_list_cursor(cursor);
    if (!storable_text(after->id))
      throw store_error(code::invalid_argument, "malformed cursor");
  }
  std::vector<std::string> values;
  auto sql = "SELECT last_seq, epoch, snapshot, created_at, id"
             " FROM sessionhost.sessions"
             + where_clause(filter, values);
  if (after) {
    values.push_back(std::to_string(after->created_at));
    values.push_back(after->id);
    auto n = values.size();
    sql += " AND (created_at, id) > ($" + std::to_string(n - 1) + "::bigint, $"
           + std::to_string(n) + ")";
  }
  // One row more than asked tells whether another page follows.
  auto fetch = std::min<size_t>(limit, 1'000'000'000) + 1;
  values.push_back(std::to_string(fetch));
  sql += " ORDER BY created_at, id LIMIT $" + std::to_string(values.size())
         + "::bigint";
  std::vector<uint64_t> covered; // what each listed snapshot includes
  auto page = impl_->with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction tx{c};
    auto r = tx.exec_params(sql, pqxx::prepare::make_dynamic_params(values));
    session_page page;
    covered.clear();
    list_position last;
    for (auto row : r) {
      if (page.sessions.size() + page.unreadable.size() == limit) {
        page.next_cursor = encode_list_cursor(last);
        break;
      }
      last.created_at = row[3].as<int64_t>();
      last.id = row[4].as<std::string>();
      try {
        pqxx::binarystring blob{row[2]};
        auto snapshot_covers = decode_snapshot(view(blob)).last_seq;
        page.sessions.push_back(row_to_info(row));
        covered.push_back(snapshot_covers);
      } catch (const store_error& e) {
        if (e.error_code() != code::corrupt)
          throw;
        page.unreadable.push_back(last.id);
      }
    }
    return page;
  });
  for (size_t i = 0; i < page.sessions.size(); ++i)
    catch_up(*this, page.sessions[i], covered[i]);
  return page;
}

uint64_t postgres_store::count(const session_filter& filter) {
  std::vector<std::string> values;
  auto sql = "SELECT count(*) FROM sessionhost.sessions" + where_clause(filter, values);
  return impl_->with_connection([&](pqxx::connection& c) {
    pqxx::nontransaction tx{c};
    auto r = tx.exec_params(sql, pqxx::prepare::make_dynamic_params(values));
    return r[0][0].as<uint64_t>();
  });
}

void postgres_store::remove(const std::string& id) {
  if (!storable_text(id))
    return;
  impl_->with_connection([&](pqxx::connection& c) {
    pqxx::work tx{c};
    // The session row first: its lock waits for an append in progress.
    tx.exec_prepared0("delete_session", id);
    tx.exec_prepared0("delete_events", id);
    tx.commit();
  });
}

} // namespace sessionhost

namespace sessionhost {

namespace {

constexpr int64_t candidate_page = 256;

std::vector<std::string> ids_of(const pqxx::result& r) {
  std::vector<std::string> out;
  out.reserve(r.size());
  for (auto row : r)
    out.push_back(row[0].as<std::string>());
  return out;
}

/// What purging one session did inside a transaction.
struct purge_step {
  int64_t rows = 0;      ///< rows deleted (events, plus a session row)
  bool done = false;     ///< nothing of this session is left to purge
  uint64_t sessions = 0; ///< session rows deleted
};

/// The loop of both retention rules: pages of candidate sessions, then
/// transactions of up to `chunk` rows each, several sessions sharing one and
/// a session with more going on in the next one, while `budget_left()`.
/// `page(tx, after)` queries the candidates after the id `after`;
/// `purge(tx, id, room)` deletes at most `room` rows of one session.
/// `with_connection` runs a function on a pooled connection.
template <class WithConnection, class Page, class Budget, class Purge>
void purge_in_chunks(WithConnection with_connection, int64_t chunk, Page page,
                     Budget budget_left, Purge purge, purge_result& out) {
  std::string after;
  for (bool more = true; more && budget_left();) {
    auto ids = with_connection([&](pqxx::connection& c) {
      pqxx::nontransaction tx{c};
      return ids_of(page(tx, after));
    });
    more = static_cast<int64_t>(ids.size()) == candidate_page;
    if (!ids.empty())
      after = ids.back();
    for (size_t pos = 0; pos < ids.size() && budget_left();) {
      auto [events, sessions] = with_connection([&](pqxx::connection& c) {
        pqxx::work tx{c};
        int64_t n = 0;
        uint64_t removed = 0;
        while (pos < ids.size() && n < chunk) {
          auto step = purge(tx, ids[pos], chunk - n);
          n += step.rows;
          removed += step.sessions;
          if (step.done)
            ++pos;
        }
        tx.commit();
        return std::make_pair(static_cast<uint64_t>(n) - removed, removed);
      });
      out.events += events;
      out.sessions += sessions;
    }
  }
}

} // namespace

purge_result postgres_store::purge(const retention_policy& policy, micros now) {
  purge_result out;
  auto chunk = static_cast<int64_t>(std::clamp<size_t>(policy.chunk_rows, 1, 1'000'000));
  auto budget_left = [&] {
    return policy.max_rows == 0 || out.events + out.sessions < policy.max_rows;
  };
  auto with_connection = [this](auto&& f) { return impl_->with_connection(f); };
  if (policy.max_event_age.count() > 0) {
    auto cutoff = static_cast<int64_t>(now - policy.max_event_age.count());
    auto keep = to_db(policy.keep_events);
    // DELETE locks only the event rows it removes, never the session row an
    // append locks.
    purge_in_chunks(
      with_connection, chunk,
      [&](pqxx::nontransaction& tx, const std::string& after) {
        return tx.exec_prepared("event_candidates", after, keep, candidate_page);
      },
      budget_left,
      [&](pqxx::work& tx, const std::string& id, int64_t room) {
        auto d = static_cast<int64_t>(
          tx.exec_prepared("purge_old_events", id, keep, cutoff, room)
            .affected_rows());
        return purge_step{d, d < room, 0};
      },
      out);
  }
  if (policy.cleaned_grace.count() > 0 && budget_left()) {
    auto cutoff = static_cast<int64_t>(now - policy.cleaned_grace.count());
    purge_in_chunks(
      with_connection, chunk,
      [&](pqxx::nontransaction& tx, const std::string& after) {
        return tx.exec_prepared("cleaned_candidates", cutoff, after,
                                candidate_page);
      },
      budget_left,
      [&](pqxx::work& tx, const std::string& id, int64_t room) {
        // Locked and checked again: the candidate list is a moment old.
        if (tx.exec_prepared("cleaned_lock", id, cutoff).empty())
          return purge_step{0, true, 0};
        auto d = static_cast<int64_t>(
          tx.exec_prepared("purge_first_events", id, room).affected_rows());
        if (d >= room)
          return purge_step{d, false, 0};
        tx.exec_prepared0("delete_session", id);
        return purge_step{d + 1, true, 1};
      },
      out);
  }
  out.truncated = !budget_left();
  return out;
}

} // namespace sessionhost
