#pragma once
// The default durable store: one SQLite file in WAL mode with
// `synchronous=FULL`, so a returned `create`/`append`/`activate` has reached
// the disk (an acknowledgement means durable, `kill -9` and power loss
// included). Events are rows keyed by (session_id, seq) holding the protobuf
// envelope; sessions are rows with the summary columns that listing filters
// and orders by, plus the protobuf snapshot. The file carries an application
// id and a schema version (`PRAGMA application_id` / `user_version`); opening
// an older version migrates it, opening anything else is refused untouched.
//
// Thread safety: every method may be called from any thread. Writes go
// through one connection behind a mutex (SQLite has a single writer anyway);
// reads use a second connection behind its own mutex, so in WAL mode they
// neither wait for nor block a write in progress. Several processes may open
// the same file; SQLite's locks and the busy timeout serialize them.
//
// The first store of a process turns SQLite's memory statistics off for the
// whole process (`SQLITE_CONFIG_MEMSTATUS`: they cost every allocation a
// global mutex; `sqlite3_memory_used()` then reads 0). Open it before any
// other thread uses SQLite; a process that used SQLite first keeps them.

#include <memory>
#include <string>

#include "host/store/session_store.hpp"

namespace sessionhost {

/// Tunables of a sqlite_store; the defaults are production values.
struct sqlite_options {
  /// Log pages past which the WAL is checkpointed into the database (on a
  /// thread of the store's own, off the commit path) and then starts over.
  /// A longer log costs less per event (a checkpoint writes each page once
  /// however often it changed) and holds commits off less often (once per
  /// checkpoint, a few ms); it takes this many 4 KiB pages on disk.
  int checkpoint_pages = 10'000;
};

class sqlite_store final : public session_store {
public:
  /// The schema version this binary writes (older ones are migrated).
  static constexpr int schema_version = 4;

  /// `PRAGMA application_id` of a sessionhost database ("SHST").
  static constexpr int application_id = 0x53485354;

  /// Opens `path`, creating the file (not its directory) when missing and
  /// migrating an older schema. Throws `not_a_database` when the file is not
  /// a sessionhost database or its schema is newer than this binary (the file
  /// is left unchanged), `io` when it cannot be opened.
  explicit sqlite_store(const std::string& path, sqlite_options opts = {});
  ~sqlite_store() override;

  sqlite_store(const sqlite_store&) = delete;
  sqlite_store& operator=(const sqlite_store&) = delete;

  void create(const session_info& info) override;
  void create_many(const std::vector<session_info>& infos) override;
  void create_started(const std::vector<append_batch>& sessions) override;
  void append(const std::vector<append_batch>& batches) override;
  std::vector<event> read_events(const std::string& id, uint64_t after_seq,
                                 size_t limit) override;
  std::optional<session_info> load(const std::string& id) override;
  uint64_t activate(const std::string& id) override;
  std::vector<uint64_t> activate_many(const std::vector<std::string>& ids) override;
  std::vector<activation> load_activate_many(const std::vector<std::string>& ids) override;
  std::optional<std::string> find_by_role(const std::string& role) override;
  session_page list(const session_filter& filter, const std::string& cursor,
                    size_t limit) override;
  uint64_t count(const session_filter& filter) override;
  void remove(const std::string& id) override;
  purge_result purge(const retention_policy& policy, micros now) override;

  /// Writes a consistent copy of the live database to `dest_path` with
  /// SQLite's online backup API while writers go on (a write committed after
  /// the copy started is simply not in it). The copy is an ordinary
  /// sessionhost database. The copy is written beside `dest_path` and renamed
  /// into place, so `dest_path` never holds a partial copy. Throws `io` on
  /// failure, leaving `dest_path` as it was.
  void backup(const std::string& dest_path);

  /// Like backup(), but from the database file at `source_path`, which a
  /// running server may be writing, without opening it as a store: nothing
  /// at the source is created, migrated or written. With `replace` false an
  /// existing `dest_path` is refused (`conflict`, checked before copying and
  /// again atomically when the copy is put in place). Throws `not_found` when
  /// `source_path` does not exist, `not_a_database` when it is not a
  /// sessionhost database (or an empty one), `io` on any other failure;
  /// `dest_path` is never left holding a partial copy.
  static void backup_file(const std::string& source_path,
                          const std::string& dest_path, bool replace);

  /// The file this store was opened on.
  const std::string& path() const noexcept;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace sessionhost
