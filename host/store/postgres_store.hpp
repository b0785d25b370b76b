#pragma once
// The cluster store: PostgreSQL through libpqxx 6.4, with the same tables as
// the SQLite store (in schema `sessionhost`): events keyed by
// (session_id, seq) holding the protobuf envelope, sessions with summary
// columns plus the protobuf snapshot, a partial unique index that keeps a
// role unique among live sessions, and `sessionhost.meta` holding the schema
// version. Every write is one transaction committed with
// `synchronous_commit = on`, so an acknowledgement means durable. Fencing is
// decided inside the transaction: `append` locks the session rows
// (SELECT … FOR UPDATE) before comparing epochs and `activate` is a single
// UPDATE … RETURNING, so of two writers at most one can ever succeed.
//
// Thread safety: every method may be called from any thread; each call
// borrows a connection from a small pool (blocking while all are busy).
// Several processes and nodes may share one database.

#include <memory>
#include <string>

#include "host/store/session_store.hpp"

namespace sessionhost {

class postgres_store final : public session_store {
public:
  /// The schema version this binary writes (older ones are migrated).
  static constexpr int schema_version = 2;

  /// Connects to `url` (a libpq URI, `postgresql://user@host:port/db`) and
  /// creates or migrates the schema. Throws `io` when the server cannot be
  /// reached and `not_a_database` when the stored schema is newer than this
  /// binary. `pool_size` (>= 1) bounds the connections held.
  explicit postgres_store(const std::string& url, size_t pool_size = 4);
  ~postgres_store() override;

  postgres_store(const postgres_store&) = delete;
  postgres_store& operator=(const postgres_store&) = delete;

  void create(const session_info& info) override;
  void create_many(const std::vector<session_info>& infos) override;
  void create_started(const std::vector<append_batch>& sessions) override;
  void append(const std::vector<append_batch>& batches) override;
  std::vector<event> read_events(const std::string& id, uint64_t after_seq,
                                 size_t limit) override;
  std::optional<session_info> load(const std::string& id) override;
  uint64_t activate(const std::string& id) override;
  std::vector<uint64_t> activate_many(const std::vector<std::string>& ids) override;
  /// One statement reads all of them, one claims them all (rows locked in
  /// id order); only a session with events after its snapshot costs more.
  std::vector<activation> load_activate_many(const std::vector<std::string>& ids) override;
  std::optional<std::string> find_by_role(const std::string& role) override;
  session_page list(const session_filter& filter, const std::string& cursor,
                    size_t limit) override;
  uint64_t count(const session_filter& filter) override;
  void remove(const std::string& id) override;
  purge_result purge(const retention_policy& policy, micros now) override;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace sessionhost
