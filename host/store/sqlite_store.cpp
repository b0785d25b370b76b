#include "host/store/sqlite_store.hpp"

#include <sqlite3.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <chrono>
#include <limits>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "host/store/catch_up.hpp"
#include "host/store/codec.hpp"
#include "host/store/list_cursor.hpp"

namespace sessionhost {

namespace {

using code = store_error::code;

// --- a thin RAII layer over the SQLite C API --------------------------------

[[noreturn]] void fail(sqlite3* db, int rc, const std::string& what) {
  auto c = code::io;
  switch (rc & 0xFF) {
    case SQLITE_CONSTRAINT: c = code::conflict; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: c = code::corrupt; break;
    default: break;
  }
  std::string detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  throw store_error(c, "sqlite: " + what + ": " + detail);
}

// SQLite keeps memory statistics by default: every allocation and free of
// every connection then takes one process-wide mutex and updates counters,
// and Debian's SQLite (no lookaside) allocates for most values it copies,
// ~11 times per stored load. Nothing here reads the statistics. The switch
// works only before SQLite initializes (the first open), so the first
// connection makes it; if the process used SQLite before, it stays as it was
// (sqlite3_config answers SQLITE_MISUSE and changes nothing).
void skip_memory_statistics() {
  static const int once = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  (void)once;
}

/// One connection; closed on destruction.
class connection {
public:
  connection(const std::string& path, int flags) {
    skip_memory_statistics();
    // NOMUTEX: the store serializes access to each connection itself.
    int rc = sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX,
                             nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close_v2(db_);
      db_ = nullptr;
      throw store_error(code::io, "sqlite: cannot open " + path + ": " + msg);
    }
    sqlite3_extended_result_codes(db_, 1);
    // Another process (or our other connection) may hold the write lock for
    // a moment; wait rather than fail.
    sqlite3_busy_timeout(db_, 10'000);
  }

  ~connection() {
    for (auto* st : tx_)
      sqlite3_finalize(st);
    sqlite3_close_v2(db_);
  }

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  sqlite3* get() const noexcept { return db_; }

  void exec(const char* sql) {
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK)
      fail(db_, rc, sql);
  }

  /// The statements that open and close a transaction.
  enum class tx_op { begin_immediate, commit };

  /// Runs `op`, prepared once per connection: sqlite3_exec parses and
  /// compiles its text every time (~4,300 instructions, twice per commit).
  void exec(tx_op op) {
    auto i = static_cast<size_t>(op);
    auto* sql = tx_sql[i];
    auto& st = tx_[i];
    if (st == nullptr) {
      int rc = sqlite3_prepare_v2(db_, sql, -1, &st, nullptr);
      if (rc != SQLITE_OK)
        fail(db_, rc, sql);
    }
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
      struct reset_at_exit {
        sqlite3_stmt* st;
        ~reset_at_exit() { sqlite3_reset(st); }
      } reset{st};
      fail(db_, rc, sql);
    }
    sqlite3_reset(st);
  }

private:
  static constexpr const char* tx_sql[] = {"BEGIN IMMEDIATE", "COMMIT"};
  sqlite3* db_ = nullptr;
  sqlite3_stmt* tx_[2] = {nullptr, nullptr};
};

/// One prepared statement. `run` resets it when a use ends, also on
/// exceptions, so a statement never keeps a read transaction open.
class statement {
public:
  statement(sqlite3* db, const std::string& sql) : db_(db) {
    int rc = sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &st_, nullptr);
    if (rc != SQLITE_OK)
      fail(db, rc, "prepare " + sql);
  }

  ~statement() { sqlite3_finalize(st_); }

  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  statement& bind(int i, int64_t v) {
    check(sqlite3_bind_int64(st_, i, v));
    return *this;
  }

  statement& bind(int i, uint64_t v) { return bind(i, static_cast<int64_t>(v)); }

  statement& bind(int i, const std::string& v) {
    check(sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()),
                            SQLITE_TRANSIENT));
    return *this;
  }

  statement& bind(int i, const char* v) { return bind(i, std::string{v}); }

  statement& bind_blob(int i, const std::string& v) {
    check(sqlite3_bind_blob(st_, i, v.data(), static_cast<int>(v.size()),
                            SQLITE_TRANSIENT));
    return *this;
  }

  /// Binds text without copying it: it must outlive the statement's use.
  statement& bind_ref(int i, std::string_view v) {
    check(sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()),
                            SQLITE_STATIC));
    return *this;
  }

  /// Binds a blob without copying it: it must outlive the statement's use.
  statement& bind_blob_ref(int i, std::string_view v) {
    check(sqlite3_bind_blob(st_, i, v.data(), static_cast<int>(v.size()),
                            SQLITE_STATIC));
    return *this;
  }

  /// True while there is a row.
  bool step() {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW)
      return true;
    if (rc == SQLITE_DONE)
      return false;
    fail(db_, rc, "step");
  }

  void reset() noexcept {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }

  int64_t int64(int col) const { return sqlite3_column_int64(st_, col); }

  std::string text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(st_, col));
    return p != nullptr
             ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(st_, col)))
             : std::string{};
  }

  std::string_view blob(int col) const {
    auto p = static_cast<const char*>(sqlite3_column_blob(st_, col));
    auto n = static_cast<size_t>(sqlite3_column_bytes(st_, col));
    return p != nullptr ? std::string_view(p, n) : std::string_view{};
  }

private:
  void check(int rc) {
    if (rc != SQLITE_OK)
      fail(db_, rc, "bind");
  }

  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
};

/// Resets a statement at the end of a scope.
class use {
public:
  explicit use(statement& st) : st_(st) {}
  ~use() { st_.reset(); }
  statement* operator->() { return &st_; }

private:
  statement& st_;
};

/// BEGIN IMMEDIATE … COMMIT, rolled back unless committed. IMMEDIATE takes
/// the write lock up front so checks and writes see the same state.
class write_transaction {
public:
  explicit write_transaction(connection& c) : c_(c) {
    c_.exec(connection::tx_op::begin_immediate);
  }
  ~write_transaction() {
    if (!done_)
      sqlite3_exec(c_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    c_.exec(connection::tx_op::commit);
    done_ = true;
  }

private:
  connection& c_;
  bool done_ = false;
};

/// synchronous = NORMAL for the scope (a commit without an fsync of its
/// own), FULL again after it.
class relaxed_sync {
public:
  explicit relaxed_sync(connection& c) : c_(c) {
    c_.exec("PRAGMA synchronous = NORMAL");
  }
  ~relaxed_sync() {
    // Runs after the scope's transaction ended (SQLite refuses the change
    // inside one). Every later commit of this connection relies on FULL, so
    // if it cannot be set back, stopping is the only safe answer: carrying
    // on would acknowledge writes that a power loss could undo.
    if (sqlite3_exec(c_.get(), "PRAGMA synchronous = FULL", nullptr, nullptr,
                     nullptr)
        != SQLITE_OK) {
      std::fprintf(stderr, "sessionhost: cannot restore synchronous = FULL on "
                           "the SQLite writer (%s); stopping\n",
                   sqlite3_errmsg(c_.get()));
      std::abort();
    }
  }
  relaxed_sync(const relaxed_sync&) = delete;
  relaxed_sync& operator=(const relaxed_sync&) = delete;

private:
  connection& c_;
};

/// BEGIN … COMMIT on a reading connection: the reads of a scope see one
/// snapshot of the database, and take the WAL read lock once, not per
/// statement.
class read_transaction {
public:
  explicit read_transaction(connection& c) : c_(c) { c_.exec("BEGIN"); }
  ~read_transaction() {
    sqlite3_exec(c_.get(), "COMMIT", nullptr, nullptr, nullptr);
  }
  read_transaction(const read_transaction&) = delete;
  read_transaction& operator=(const read_transaction&) = delete;

private:
  connection& c_;
};

int64_t query_int(connection& c, const char* sql) {
  statement st{c.get(), sql};
  use u{st};
  return u->step() ? u->int64(0) : 0;
}

// --- schema -----------------------------------------------------------------

// Version 1: sessions with their summary columns and snapshot, events keyed
// by (session_id, seq). Events are a WITHOUT ROWID table clustered on the key,
// so reading a session's tail is one range scan.
constexpr const char* schema_v1 = R"sql(
CREATE TABLE sessions (
  id         TEXT PRIMARY KEY NOT NULL,
  role       TEXT NOT NULL DEFAULT '',
  state      TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_seq   INTEGER NOT NULL DEFAULT 0,
  epoch      INTEGER NOT NULL DEFAULT 0,
  snapshot   BLOB NOT NULL
);
CREATE INDEX sessions_by_created ON sessions (created_at, id);
CREATE UNIQUE INDEX sessions_live_role ON sessions (role)
  WHERE role <> '' AND state <> 'CLEANED';
CREATE TABLE events (
  session_id TEXT NOT NULL,
  seq        INTEGER NOT NULL,
  envelope   BLOB NOT NULL,
  PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
)sql";

// Version 2: the session type becomes a column so filtering by type is an
// indexed query instead of decoding every snapshot.
void migrate_1_to_2(connection& c) {
  c.exec("ALTER TABLE sessions ADD COLUMN type TEXT NOT NULL DEFAULT ''");
  statement sel{c.get(), "SELECT id, snapshot FROM sessions"};
  statement upd{c.get(), "UPDATE sessions SET type = ?2 WHERE id = ?1"};
  use s{sel};
  while (s->step()) {
    try {
      auto info = decode_snapshot(s->blob(1));
      use u{upd};
      u->bind(1, s->text(0)).bind(2, info.type);
      u->step();
    } catch (const store_error& e) {
      // An undecodable snapshot must not make the whole file unopenable:
      // its row keeps type '' and `load` reports it as corrupt.
      if (e.error_code() != code::corrupt)
        throw;
    }
  }
  c.exec("CREATE INDEX sessions_by_type ON sessions (type)");
}

// Version 3: what retention filters by becomes columns — the session's
// updated_at and the seq its snapshot covers, each event's ts — plus an index
// that finds expired CLEANED sessions without a scan. Existing rows are
// filled from their protobuf bytes; a row that does not decode gets values
// that retention never acts on, and stays for `load` to report.
void migrate_2_to_3(connection& c) {
  c.exec("ALTER TABLE sessions ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;"
         "ALTER TABLE sessions ADD COLUMN snapshot_seq INTEGER NOT NULL DEFAULT 0;"
         "ALTER TABLE events ADD COLUMN ts INTEGER NOT NULL DEFAULT 0;"
         "CREATE INDEX sessions_cleaned ON sessions (updated_at)"
         " WHERE state = 'CLEANED';");
  constexpr auto never = std::numeric_limits<int64_t>::max();
  {
    statement sel{c.get(), "SELECT id, snapshot, last_seq FROM sessions"};
    statement upd{c.get(), "UPDATE sessions SET updated_at = ?2,"
                           " snapshot_seq = ?3 WHERE id = ?1"};
    use s{sel};
    while (s->step()) {
      int64_t updated = never, covered = 0;
      try {
        auto info = decode_snapshot(s->blob(1));
        updated = info.updated_at;
        covered = std::min(static_cast<int64_t>(info.last_seq), s->int64(2));
      } catch (const store_error& e) {
        if (e.error_code() != code::corrupt)
          throw;
      }
      use u{upd};
      u->bind(1, s->text(0)).bind(2, updated).bind(3, covered);
      u->step();
    }
  }
  statement sel{c.get(), "SELECT session_id, seq, envelope FROM events"};
  statement upd{c.get(), "UPDATE events SET ts = ?3 WHERE session_id = ?1"
                         " AND seq = ?2"};
  use s{sel};
  while (s->step()) {
    int64_t ts = never;
    try {
      ts = decode_event(s->blob(2)).ts;
    } catch (const store_error& e) {
      if (e.error_code() != code::corrupt)
        throw;
    }
    use u{upd};
    u->bind(1, s->text(0)).bind(2, s->int64(1)).bind(3, ts);
    u->step();
  }
}

// Version 4: sessions_by_type goes. Every create paid for it (about a tenth
// of the store's work per create), and it served lists badly: SQLite took it
// for `type = ?` and then sorted every session of that type to return one
// page in creation order. Without it, a list by type walks
// sessions_by_created and stops after a page (a common type: at once; a
// rare one: a scan, as a list by state already is); a count by type scans.
void migrate_3_to_4(connection& c) {
  c.exec("DROP INDEX IF EXISTS sessions_by_type");
}

void check_header(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return; // created below
    throw store_error(code::io, "cannot stat " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode))
    throw store_error(code::not_a_database, path + " is not a regular file");
  if (st.st_size == 0)
    return; // an empty file is a fresh database to SQLite
  // Reject files that are not SQLite at all without letting SQLite touch them.
  char magic[16] = {};
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw store_error(code::io, "cannot open " + path + ": " + std::strerror(errno));
  auto n = ::read(fd, magic, sizeof(magic));
  ::close(fd);
  if (n != static_cast<ssize_t>(sizeof(magic))
      || std::memcmp(magic, "SQLite format 3", 16) != 0)
    throw store_error(code::not_a_database, path + " is not a sessionhost database");
}

/// Throws `not_a_database` unless `c` is a sessionhost database this binary
/// can open, or an empty one. Only reads. Returns the stored schema version
/// (0 for an empty database).
int check_identity(connection& c, const std::string& path) {
  try {
    auto app = query_int(c, "PRAGMA application_id");
    auto version = query_int(c, "PRAGMA user_version");
    auto objects = query_int(c, "SELECT count(*) FROM sqlite_schema");
    if (app == 0 && objects == 0)
      return 0;
    if (app != sqlite_store::application_id)
      throw store_error(code::not_a_database,
                        path + " is not a sessionhost database");
    if (version < 1 || version > sqlite_store::schema_version)
      throw store_error(code::not_a_database,
                        path + " has schema version " + std::to_string(version)
                          + "; this binary reads 1 to "
                          + std::to_string(sqlite_store::schema_version));
    return static_cast<int>(version);
  } catch (const store_error& e) {
    if (e.error_code() == code::corrupt)
      throw store_error(code::not_a_database,
                        path + " is not a sessionhost database: " + e.what());
    throw;
  }
}

void migrate(connection& c, const std::string& path) {
  write_transaction tx{c};
  // Checked again under the write lock: another process may have created or
  // migrated the file since we looked.
  int version = check_identity(c, path);
  if (version == sqlite_store::schema_version)
    return; // rolled back: nothing to do
  if (version < 1)
    c.exec(schema_v1);
  if (version < 2)
    migrate_1_to_2(c);
  if (version < 3)
    migrate_2_to_3(c);
  if (version < 4)
    migrate_3_to_4(c);
  c.exec(("PRAGMA application_id = " + std::to_string(sqlite_store::application_id))
           .c_str());
  c.exec(("PRAGMA user_version = " + std::to_string(sqlite_store::schema_version))
           .c_str());
  tx.commit();
}

int64_t to_db(uint64_t x) {
  // seq and epoch are far below 2^63 in practice; refuse rather than wrap.
  if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    throw store_error(code::invalid_argument, "value out of range");
  return static_cast<int64_t>(x);
}

void fsync_dir_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  auto dir = slash == std::string::npos ? std::string{"."}
                                        : (slash == 0 ? std::string{"/"}
                                                      : path.substr(0, slash));
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

} // namespace

// --- the store ----------------------------------------------------------------

struct sqlite_store::impl {
  std::string path;

  std::mutex write_mtx;
  std::unique_ptr<connection> writer; // guarded by write_mtx
  std::unique_ptr<statement> w_session, w_insert_event, w_update_tail,
    w_update_snapshot, w_role_taken, w_insert_session, w_activate,
    w_claim_as_read,
    w_delete_events, w_delete_session, w_purge_old_events,
    w_purge_first_events, w_cleaned_check;

  // Multi-row INSERTs of create_started, by row count (at most insert_rows):
  // one statement per chunk instead of one per row.
  static constexpr size_t insert_rows = 64;

  // Rows of the next chunk when `left` remain: insert_rows, else the largest
  // power of two that fits, so at most 7 statements per table are ever
  // prepared (one per remainder cost ~100,000 instructions each time a
  // burst of a new size came along).
  static size_t chunk_rows(size_t left) {
    size_t n = insert_rows;
    while (n > left)
      n /= 2;
    return n;
  }
  std::map<size_t, std::unique_ptr<statement>> w_insert_sessions, w_insert_events;

  std::mutex read_mtx;
  std::unique_ptr<connection> reader; // guarded by read_mtx

  // WAL checkpoints, off the commit path: its own connection and thread.
  int checkpoint_pages; // constant after construction
  std::unique_ptr<connection> checkpointer; // used by cp_thread only
  std::mutex cp_mtx;
  std::condition_variable cp_cv;
  bool cp_wanted = false; // guarded by cp_mtx
  bool cp_stop = false;   // guarded by cp_mtx
  std::thread cp_thread;
  std::unique_ptr<statement> r_load, r_events, r_role, r_event_candidates,
    r_cleaned_candidates;

  impl(const std::string& p, sqlite_options opts)
    : path(p), checkpoint_pages(std::max(opts.checkpoint_pages, 1)) {
    check_header(path);
    writer = std::make_unique<connection>(
      path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    // Look before writing anything: a foreign file must stay untouched.
    check_identity(*writer, path);
    {
      statement st{writer->get(), "PRAGMA journal_mode = WAL"};
      use u{st};
      if (!u->step() || u->text(0) != "wal")
        throw store_error(code::io, "sqlite: cannot switch " + path + " to WAL");
    }
    // FULL: in WAL mode every commit syncs the log, so an acknowledged write
    // survives power loss, not only a process crash.
    writer->exec("PRAGMA synchronous = FULL");
    migrate(*writer, path);
    auto w = writer->get();
    w_session = std::make_unique<statement>(
      w, "SELECT last_seq, epoch FROM sessions WHERE id = ?1");
    w_insert_event = std::make_unique<statement>(
      w, "INSERT INTO events (session_id, seq, envelope, ts)"
         " VALUES (?1, ?2, ?3, ?4)");
    w_update_tail = std::make_unique<statement>(
      w, "UPDATE sessions SET last_seq = ?2, epoch = ?3 WHERE id = ?1");
    w_update_snapshot = std::make_unique<statement>(
      w, "UPDATE sessions SET last_seq = ?2, epoch = ?3, type = ?4, role = ?5,"
         " state = ?6, created_at = ?7, snapshot = ?8, updated_at = ?9,"
         " snapshot_seq = ?10 WHERE id = ?1");
    w_role_taken = std::make_unique<statement>(
      w, "SELECT 1 FROM sessions WHERE role = ?1 AND state <> 'CLEANED'"
         " AND id <> ?2 LIMIT 1");
    w_insert_session = std::make_unique<statement>(
      w, "INSERT INTO sessions (id, type, role, state, created_at, last_seq,"
         " epoch, snapshot, updated_at, snapshot_seq)"
         " VALUES (?1, ?2, ?3, ?4, ?5, ?9, ?6, ?7, ?8, ?10)");
    // Not UPDATE … RETURNING: SQLite buffers RETURNING rows in a temporary
    // table, opened per statement (~40,000 instructions a claim); w_session
    // reads the epoch first, in the same write transaction.
    w_activate = std::make_unique<statement>(
      w, "UPDATE sessions SET epoch = ?2 WHERE id = ?1");
    // A claim of a session as it was read: changes nothing when another
    // writer moved it meanwhile (then claim() reads it again). Found by the
    // rowid it was read at (one B-tree seek, not the id index's and then
    // the row's); the id is checked too, as a VACUUM may renumber rows.
    w_claim_as_read = std::make_unique<statement>(
      w, "UPDATE sessions SET epoch = ?2 WHERE rowid = ?5 AND id = ?1"
         " AND epoch = ?3 AND last_seq = ?4");
    w_delete_events = std::make_unique<statement>(
      w, "DELETE FROM events WHERE session_id = ?1");
    w_delete_session = std::make_unique<statement>(
      w, "DELETE FROM sessions WHERE id = ?1");
    // The bounds are read from the session row inside the deleting
    // transaction: snapshot_seq and last_seq only grow, so they are current.
    w_purge_old_events = std::make_unique<statement>(
      w, "DELETE FROM events WHERE session_id = ?1 AND seq IN ("
         " SELECT e.seq FROM events e JOIN sessions s ON s.id = e.session_id"
         " WHERE e.session_id = ?1 AND e.seq <= s.snapshot_seq"
         " AND e.seq + ?2 <= s.last_seq AND e.ts < ?3 ORDER BY e.seq LIMIT ?4)");
    w_purge_first_events = std::make_unique<statement>(
      w, "DELETE FROM events WHERE session_id = ?1 AND seq IN ("
         " SELECT seq FROM events WHERE session_id = ?1 ORDER BY seq LIMIT ?2)");
    w_cleaned_check = std::make_unique<statement>(
      w, "SELECT 1 FROM sessions WHERE id = ?1 AND state = 'CLEANED'"
         " AND updated_at < ?2");

    reader = std::make_unique<connection>(path, SQLITE_OPEN_READWRITE);
    reader->exec("PRAGMA query_only = 1");
    auto r = reader->get();
    r_load = std::make_unique<statement>(
      r, "SELECT last_seq, epoch, snapshot, rowid FROM sessions WHERE id = ?1");
    r_events = std::make_unique<statement>(
      r, "SELECT envelope FROM events WHERE session_id = ?1 AND seq > ?2"
         " ORDER BY seq LIMIT ?3");
    r_role = std::make_unique<statement>(
      r, "SELECT id FROM sessions WHERE role = ?1 AND state <> 'CLEANED'"
         " ORDER BY id LIMIT 1");
    r_event_candidates = std::make_unique<statement>(
      r, "SELECT id FROM sessions WHERE id > ?1"
         " AND min(snapshot_seq, last_seq - ?2) >= 1 ORDER BY id LIMIT ?3");
    r_cleaned_candidates = std::make_unique<statement>(
      r, "SELECT id FROM sessions WHERE state = 'CLEANED' AND updated_at < ?1"
         " AND id > ?2 ORDER BY id LIMIT ?3");

    // By default SQLite checkpoints the WAL into the database inside the
    // commit that grows it past 1,000 pages: that commit, and every
    // acknowledgement waiting for it, then also writes those pages to the
    // database file and fsyncs it (milliseconds: the tail of a durable
    // publish). A thread of our own checkpoints instead, PASSIVE, which
    // never blocks the writer; the commit only wakes it.
    checkpointer = std::make_unique<connection>(path, SQLITE_OPEN_READWRITE);
    checkpointer->exec("PRAGMA synchronous = FULL");
    // The checkpoint's RESTART step may wait for a read in progress while
    // it holds commits off; SQLite's own busy wait sleeps 1, 2, 5, 10 ms…
    // between tries, and up to 10 s.
    sqlite3_busy_handler(checkpointer->get(), &impl::short_busy, nullptr);
    sqlite3_wal_hook(writer->get(), &impl::on_wal_commit, this);
    cp_thread = std::thread([this] { run_checkpoints(); }); // nothing throws after
  }

  // The checkpointer's busy handler: retry every 100 µs for up to 10 ms, a
  // bound on how long RESTART holds commits off waiting for a read (the
  // other connections keep SQLite's busy_timeout of 10 s).
  static int short_busy(void*, int attempts) {
    if (attempts >= 100)
      return 0;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    return 1;
  }

  // The writer's commit hook (replaces SQLite's own auto-checkpoint, at
  // sqlite_options::checkpoint_pages instead of 1,000: each event rewrites
  // ~2 pages, its events leaf and its session's row, so 1,000 pages came
  // every ~0.25 s at 2,000 events/s; 10,000 is ~40 MiB of log).
  static int on_wal_commit(void* arg, sqlite3*, const char*, int pages) {
    auto* self = static_cast<impl*>(arg);
    if (pages >= self->checkpoint_pages) {
      std::lock_guard<std::mutex> guard{self->cp_mtx};
      if (!self->cp_wanted) {
        self->cp_wanted = true;
        self->cp_cv.notify_one();
      }
    }
    return SQLITE_OK;
  }

  void run_checkpoints() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock{cp_mtx};
        cp_cv.wait(lock, [this] { return cp_wanted || cp_stop; });
        if (cp_stop)
          return;
        cp_wanted = false;
      }
      // Failing (busy, I/O) only leaves the WAL longer: the next commit past
      // the threshold asks again, and commits never depend on it.
      // PASSIVE copies the log into the database without blocking commits,
      // but commits keep appending meanwhile, so it rarely reaches the end
      // of the log, and the log starts over from its beginning only once a
      // checkpoint has: until then every commit asked for another one (each
      // with two fsyncs, which delay the commits' own: the commit latency's
      // tail), and the log grew. RESTART then copies the few pages written
      // meanwhile, so the next commit starts the log over. It runs under
      // the writer's mutex: commits wait for it (a few ms, once per
      // checkpoint) instead of it polling for a gap between them.
      // A reader on an older snapshot (a `sessionhost backup` copying the
      // file) keeps PASSIVE short of its log and would keep RESTART waiting
      // with commits held off: then the log grows until it is gone.
      auto cp = checkpointer->get();
      int log = 0;
      int copied = 0;
      if (sqlite3_wal_checkpoint_v2(cp, nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                    &log, &copied)
            == SQLITE_OK
          && copied == log) {
        std::lock_guard<std::mutex> guard{write_mtx};
        sqlite3_wal_checkpoint_v2(cp, nullptr, SQLITE_CHECKPOINT_RESTART,
                                  nullptr, nullptr);
      }
    }
  }

  ~impl() {
    {
      std::lock_guard<std::mutex> guard{cp_mtx};
      cp_stop = true;
    }
    cp_cv.notify_one();
    if (cp_thread.joinable())
      cp_thread.join();
    if (writer)
      sqlite3_wal_hook(writer->get(), nullptr, nullptr);
    // Statements before their connections.
    w_insert_sessions.clear();
    w_insert_events.clear();
    w_session.reset();
    w_insert_event.reset();
    w_update_tail.reset();
    w_update_snapshot.reset();
    w_role_taken.reset();
    w_insert_session.reset();
    w_activate.reset();
    w_claim_as_read.reset();
    w_delete_events.reset();
    w_delete_session.reset();
    w_purge_old_events.reset();
    w_purge_first_events.reset();
    w_cleaned_check.reset();
    r_event_candidates.reset();
    r_cleaned_candidates.reset();
    r_load.reset();
    r_events.reset();
    r_role.reset();
  }

  // One new session row, inside the caller's write transaction. The primary
  // key refuses an existing id (no SELECT first); the role is checked here
  // for a clear message, and sees the rows inserted before it in the same
  // transaction too.
  void insert_session(const session_info& info, const std::string& blob,
                      uint64_t last_seq, uint64_t snapshot_seq) {
    if (role_taken(info.role, info.id))
      throw store_error(code::conflict, "role " + info.role + " is taken");
    use u{*w_insert_session};
    u->bind(1, info.id)
      .bind(2, info.type)
      .bind(3, info.role)
      .bind(4, to_string(info.state))
      .bind(5, static_cast<int64_t>(info.created_at))
      .bind(6, to_db(info.epoch))
      .bind_blob(7, blob)
      .bind(8, static_cast<int64_t>(info.updated_at))
      .bind(9, to_db(last_seq))
      .bind(10, to_db(snapshot_seq));
    try {
      u->step();
    } catch (const store_error& e) {
      if (e.error_code() == code::conflict)
        throw store_error(code::conflict, "session " + info.id + " exists");
      throw;
    }
  }

  // The INSERT of `rows` rows into `table` (columns as given), prepared once.
  statement& multi_insert(std::map<size_t, std::unique_ptr<statement>>& cache,
                          const char* head, size_t columns, size_t rows) {
    auto& st = cache[rows];
    if (!st) {
      std::string sql = head;
      int param = 1;
      for (size_t r = 0; r < rows; ++r) {
        sql += r == 0 ? " VALUES (" : ", (";
        for (size_t c = 0; c < columns; ++c) {
          sql += c == 0 ? "?" : ", ?";
          sql += std::to_string(param++);
        }
        sql += ")";
      }
      st = std::make_unique<statement>(writer->get(), sql);
    }
    return *st;
  }

  // Claims `id` for a new activation: its new epoch and its last_seq, or
  // nothing for an unknown id. REQUIRES: write_mtx held, in a transaction.
  std::optional<std::pair<uint64_t, uint64_t>> claim(const std::string& id) {
    uint64_t epoch = 0, tail = 0;
    {
      use u{*w_session};
      u->bind(1, id);
      if (!u->step())
        return std::nullopt;
      tail = static_cast<uint64_t>(u->int64(0));
      epoch = static_cast<uint64_t>(u->int64(1)) + 1;
    }
    use u{*w_activate};
    u->bind(1, id).bind(2, to_db(epoch));
    u->step();
    return std::make_pair(epoch, tail);
  }

  // claim() for a session read at `epoch` and `tail` in this process: one
  // statement instead of two when nobody wrote it since (the usual case).
  std::optional<std::pair<uint64_t, uint64_t>>
  claim_as_read(const std::string& id, int64_t rowid, uint64_t epoch,
                uint64_t tail) {
    {
      use u{*w_claim_as_read};
      u->bind_ref(1, id).bind(2, to_db(epoch + 1)).bind(3, to_db(epoch));
      u->bind(4, to_db(tail));
      u->bind(5, rowid);
      u->step();
    }
    if (sqlite3_changes(writer->get()) == 1)
      return std::make_pair(epoch + 1, tail);
    return claim(id);
  }

  // Folds the events of `id` after info.last_seq, up to `tail`, into
  // `info`. REQUIRES: read_mtx held.
  void fold_events(session_info& info, uint64_t tail) {
    fold_up_to(info, tail, [&](uint64_t after, uint64_t limit) {
      std::vector<event> page;
      use u{*r_events};
      u->bind(1, info.id)
        .bind(2, static_cast<int64_t>(after))
        .bind(3, static_cast<int64_t>(limit));
      while (u->step())
        page.push_back(decode_event(u->blob(0)));
      return page;
    });
  }

  bool role_taken(const std::string& role, const std::string& except_id) {
    if (role.empty())
      return false;
    use u{*w_role_taken};
    u->bind(1, role).bind(2, except_id);
    return u->step();
  }
};

sqlite_store::sqlite_store(const std::string& path, sqlite_options opts)
  : impl_(std::make_unique<impl>(path, opts)) {
}

sqlite_store::~sqlite_store() = default;

const std::string& sqlite_store::path() const noexcept {
  return impl_->path;
}

void sqlite_store::create(const session_info& info) {
  create_many({info});
}

void sqlite_store::create_many(const std::vector<session_info>& infos) {
  if (infos.empty())
    return;
  std::vector<std::string> blobs;
  blobs.reserve(infos.size());
  for (auto& info : infos) {
    auto snapshot = info;
    snapshot.last_seq = 0;
    snapshot.loaded = false;
    blobs.push_back(encode_snapshot(snapshot));
  }
  std::lock_guard<std::mutex> guard{impl_->write_mtx};
  write_transaction tx{*impl_->writer};
  for (size_t i = 0; i < infos.size(); ++i)
    impl_->insert_session(infos[i], blobs[i], 0, 0);
  tx.commit();
}

void sqlite_store::create_started(const std::vector<append_batch>& sessions) {
  if (sessions.empty())
    return;
  check_started(sessions);
  // Encode outside the lock, as append does.
  struct row {
    const append_batch* b;
    const session_info& info() const { return *b->snapshot; }
    std::string blob;
    uint64_t last_seq;
  };
  std::vector<row> rows;
  struct event_row {
    const std::string* session_id; // the batch's
    const event* e;
    std::string envelope;
  };
  std::vector<event_row> events;
  rows.reserve(sessions.size());
  for (auto& b : sessions) {
    rows.push_back(row{&b, encode_snapshot(*b.snapshot),
                       b.events.empty() ? 0 : b.events.back().seq});
    for (auto& e : b.events)
      events.push_back(event_row{&b.session_id, &e, encode_event(e)});
  }
  std::lock_guard<std::mutex> guard{impl_->write_mtx};
  write_transaction tx{*impl_->writer};
  // Sessions with a role one by one (its check must see the rows before it);
  // the others in multi-row INSERTs, where the primary key refuses an
  // existing id.
  std::vector<const row*> plain;
  for (auto& r : rows) {
    if (r.info().role.empty()) {
      plain.push_back(&r);
    } else {
      auto info = r.info(); // with the batch's epoch
      info.epoch = r.b->epoch;
      impl_->insert_session(info, r.blob, r.last_seq,
                            std::min(info.last_seq, r.last_seq));
    }
  }
  for (size_t from = 0, n = 0; from < plain.size(); from += n) {
    n = impl::chunk_rows(plain.size() - from);
    auto& st = impl_->multi_insert(
      impl_->w_insert_sessions,
      "INSERT INTO sessions (id, type, role, state, created_at, last_seq,"
      " epoch, snapshot, updated_at, snapshot_seq)",
      10, n);
    use u{st};
    for (size_t k = 0; k < n; ++k) {
      auto& r = *plain[from + k];
      int p = static_cast<int>(k * 10);
      // `rows` outlives the statement's use: no copies.
      auto& info = r.info();
      u->bind_ref(p + 1, info.id)
        .bind_ref(p + 2, info.type)
        .bind_ref(p + 3, info.role)
        .bind_ref(p + 4, to_string(info.state))
        .bind(p + 5, static_cast<int64_t>(info.created_at))
        .bind(p + 6, to_db(r.last_seq))
        .bind(p + 7, to_db(r.b->epoch))
        .bind_blob_ref(p + 8, r.blob)
        .bind(p + 9, static_cast<int64_t>(info.updated_at))
        .bind(p + 10, to_db(std::min(info.last_seq, r.last_seq)));
    }
    try {
      u->step();
    } catch (const store_error& e) {
      if (e.error_code() == code::conflict)
        throw store_error(code::conflict, "a session of the burst exists: "
                                            + std::string{e.what()});
      throw;
    }
  }
  for (size_t from = 0, n = 0; from < events.size(); from += n) {
    n = impl::chunk_rows(events.size() - from);
    auto& st = impl_->multi_insert(
      impl_->w_insert_events,
      "INSERT INTO events (session_id, seq, envelope, ts)", 4, n);
    use u{st};
    for (size_t k = 0; k < n; ++k) {
      auto& ev = events[from + k];
      int p = static_cast<int>(k * 4);
      u->bind_ref(p + 1, *ev.session_id)
        .bind(p + 2, to_db(ev.e->seq))
        .bind_blob_ref(p + 3, ev.envelope)
        .bind(p + 4, static_cast<int64_t>(ev.e->ts));
    }
    u->step();
  }
  tx.commit();
}

void sqlite_store::append(const std::vector<append_batch>& batches) {
  if (batches.empty())
    return;
  // Encode outside the lock: it is the CPU-heavy part and needs no database.
  std::vector<std::vector<std::string>> envelopes(batches.size());
  std::vector<std::string> snapshots(batches.size());
  for (size_t i = 0; i < batches.size(); ++i) {
    auto& b = batches[i];
    envelopes[i].reserve(b.events.size());
    for (auto& e : b.events)
      envelopes[i].push_back(encode_event(e));
    if (b.snapshot)
      snapshots[i] = encode_snapshot(*b.snapshot);
  }
  struct tail {
    uint64_t last_seq;
    uint64_t epoch;
    const append_batch* snapshot_from = nullptr; // last batch with a snapshot
    size_t snapshot_index = 0;
  };
  std::lock_guard<std::mutex> guard{impl_->write_mtx};
  write_transaction tx{*impl_->writer};
  // Several batches may name one session: track where each would end.
  std::unordered_map<std::string, tail> tails;
  std::vector<std::string> order; // sessions in first-seen order
  for (size_t i = 0; i < batches.size(); ++i) {
    auto& b = batches[i];
    auto it = tails.find(b.session_id);
    if (it == tails.end()) {
      use u{*impl_->w_session};
      u->bind(1, b.session_id);
      if (!u->step())
        throw store_error(code::not_found, "unknown session " + b.session_id);
      tail t{static_cast<uint64_t>(u->int64(0)), static_cast<uint64_t>(u->int64(1))};
      it = tails.emplace(b.session_id, t).first;
      order.push_back(b.session_id);
    }
    auto& t = it->second;
    // Fencing is checked inside the write transaction, against the epoch a
    // concurrent activate may just have committed.
    if (b.epoch < t.epoch)
      throw store_error(code::stale_epoch,
                        "stale epoch " + std::to_string(b.epoch) + " < "
                          + std::to_string(t.epoch) + " for " + b.session_id);
    for (size_t k = 0; k < b.events.size(); ++k) {
      auto& e = b.events[k];
      if (e.seq != t.last_seq + 1)
        throw store_error(code::seq_gap,
                          "seq " + std::to_string(e.seq) + " does not follow "
                            + std::to_string(t.last_seq) + " in " + b.session_id);
      use u{*impl_->w_insert_event};
      u->bind(1, b.session_id)
        .bind(2, to_db(e.seq))
        .bind_blob(3, envelopes[i][k])
        .bind(4, static_cast<int64_t>(e.ts));
      u->step();
      t.last_seq = e.seq;
    }
    if (b.snapshot) {
      if (impl_->role_taken(b.snapshot->role, b.session_id))
        throw store_error(code::conflict, "role " + b.snapshot->role + " is taken");
      t.snapshot_from = &b;
      t.snapshot_index = i;
    }
    t.epoch = std::max(t.epoch, b.epoch);
  }
  for (auto& id : order) {
    auto& t = tails[id];
    if (t.snapshot_from != nullptr) {
      auto& s = *t.snapshot_from->snapshot;
      use u{*impl_->w_update_snapshot};
      u->bind(1, id)
        .bind(2, to_db(t.last_seq))
        .bind(3, to_db(t.epoch))
        .bind(4, s.type)
        .bind(5, s.role)
        .bind(6, to_string(s.state))
        .bind(7, static_cast<int64_t>(s.created_at))
        .bind_blob(8, snapshots[t.snapshot_index])
        .bind(9, static_cast<int64_t>(s.updated_at))
        // A snapshot claiming more than is stored covers only what is.
        .bind(10, to_db(std::min(s.last_seq, t.last_seq)));
      u->step();
    } else {
      use u{*impl_->w_update_tail};
      u->bind(1, id).bind(2, to_db(t.last_seq)).bind(3, to_db(t.epoch));
      u->step();
    }
  }
  tx.commit();
}

std::vector<event> sqlite_store::read_events(const std::string& id,
                                             uint64_t after_seq, size_t limit) {
  std::vector<event> out;
  if (limit == 0
      || after_seq >= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return out;
  auto lim = static_cast<int64_t>(
    std::min<size_t>(limit, static_cast<size_t>(std::numeric_limits<int64_t>::max())));
  out.reserve(std::min<size_t>(limit, 4096));
  std::lock_guard<std::mutex> guard{impl_->read_mtx};
  use u{*impl_->r_events};
  u->bind(1, id).bind(2, static_cast<int64_t>(after_seq)).bind(3, lim);
  while (u->step())
    out.push_back(decode_event(u->blob(0)));
  return out;
}

std::optional<session_info> sqlite_store::load(const std::string& id) {
  session_info info;
  uint64_t covered = 0; // the events the snapshot includes
  {
    std::lock_guard<std::mutex> guard{impl_->read_mtx};
    use u{*impl_->r_load};
    u->bind(1, id);
    if (!u->step())
      return std::nullopt;
    info = decode_snapshot(u->blob(2));
    covered = info.last_seq;
    info.last_seq = static_cast<uint64_t>(u->int64(0));
    info.epoch = static_cast<uint64_t>(u->int64(1));
    info.loaded = false;
  }
  catch_up(*this, info, covered);
  return info;
}

uint64_t sqlite_store::activate(const std::string& id) {
  return activate_many({id}).front();
}

std::vector<uint64_t> sqlite_store::activate_many(const std::vector<std::string>& ids) {
  std::vector<uint64_t> epochs;
  if (ids.empty())
    return epochs;
  epochs.reserve(ids.size());
  std::lock_guard<std::mutex> guard{impl_->write_mtx};
  write_transaction tx{*impl_->writer};
  for (auto& id : ids) {
    auto claimed = impl_->claim(id);
    if (!claimed)
      throw store_error(code::not_found, "unknown session " + id);
    epochs.push_back(claimed->first);
  }
  tx.commit();
  return epochs;
}

std::vector<activation>
sqlite_store::load_activate_many(const std::vector<std::string>& ids) {
  check_distinct(ids);
  auto& m = *impl_;
  std::vector<activation> out(ids.size());
  std::vector<uint64_t> tails(ids.size()); // the stored last_seq when read
  std::vector<int64_t> rowids(ids.size());  // where each row was read
  // Reads first, in one read transaction and without the write lock, so
  // writers wait only for the claims.
  {
    std::lock_guard<std::mutex> guard{m.read_mtx};
    read_transaction rt{*m.reader};
    for (size_t i = 0; i < ids.size(); ++i) {
      auto& a = out[i];
      a.id = ids[i];
      try {
        {
          use u{*m.r_load};
          u->bind_ref(1, a.id); // a.id outlives the use: no copy
          if (!u->step()) {
            a.error = store_error(code::not_found, "no session " + a.id);
            continue;
          }
          a.info = decode_snapshot(u->blob(2));
          tails[i] = static_cast<uint64_t>(u->int64(0));
          a.info->epoch = static_cast<uint64_t>(u->int64(1));
          rowids[i] = u->int64(3);
          a.info->loaded = false;
        }
        a.info->id = a.id;
        m.fold_events(*a.info, tails[i]);
      } catch (const store_error& e) {
        if (e.error_code() != code::corrupt)
          throw;
        a.info.reset();
        a.error = e;
      }
    }
  }
  // Claims, in one write transaction, which gives the tail as of the claim, so what an older activation wrote meanwhile is caught below.
  // The claims are committed without an fsync of their own (synchronous =
  // NORMAL for this one transaction): in WAL mode a commit that does sync
  // (FULL, every other write) syncs the log up to itself, claims included,
  // so whatever a new activation gets acknowledged makes its claim durable
  // first. A power loss can undo only a claim nothing durable depends on,
  // and it also ended every activation in this process. Fencing is not
  // about the disk: later writers see the claim at once.
  std::vector<size_t> behind;
  {
    std::lock_guard<std::mutex> guard{m.write_mtx};
    relaxed_sync relaxed{*m.writer};
    write_transaction tx{*m.writer};
    for (size_t i = 0; i < ids.size(); ++i) {
      auto& a = out[i];
      if (!a.info)
        continue;
      auto claimed = m.claim_as_read(a.id, rowids[i], a.info->epoch, tails[i]);
      if (!claimed) { // removed since it was read
        a.info.reset();
        a.error = store_error(code::not_found, "no session " + a.id);
        continue;
      }
      a.info->epoch = claimed->first;
      auto tail = claimed->second;
      if (tail > tails[i]) {
        tails[i] = tail;
        behind.push_back(i);
      }
    }
    tx.commit();
  }
  if (!behind.empty()) {
    std::lock_guard<std::mutex> guard{m.read_mtx};
    for (auto i : behind) {
      auto& a = out[i];
      try {
        m.fold_events(*a.info, tails[i]);
      } catch (const store_error& e) { // claimed already: fail alone
        a.info.reset();
        a.error = e;
      }
    }
  }
  return out;
}

std::optional<std::string> sqlite_store::find_by_role(const std::string& role) {
  if (role.empty())
    return std::nullopt;
  std::lock_guard<std::mutex> guard{impl_->read_mtx};
  use u{*impl_->r_role};
  u->bind(1, role);
  if (!u->step())
    return std::nullopt;
  return u->text(0);
}

namespace {

/// WHERE clause for `filter` with parameters ?1, ?2, …; appends the values
/// to bind, in order, to `values`.
std::string where_clause(const session_filter& filter,
                         std::vector<std::string>& values) {
  std::string sql = " WHERE 1 = 1";
  if (filter.state) {
    values.emplace_back(to_string(*filter.state));
    sql += " AND state = ?" + std::to_string(values.size());
  }
  if (!filter.role.empty()) {
    values.push_back(filter.role);
    sql += " AND role = ?" + std::to_string(values.size());
  }
  if (!filter.type.empty()) {
    values.push_back(filter.type);
    sql += " AND type = ?" + std::to_string(values.size());
  }
  return sql;
}

} // namespace

session_page sqlite_store::list(const session_filter& filter,
                                const std::string& cursor, size_t limit) {
  if (limit == 0)
    throw store_error(code::invalid_argument, "limit must be at least 1");
  std::optional<list_position> after;
  if (!cursor.empty())
    after = decode_list_cursor(cursor);
  std::vector<std::string> values;
  auto sql = "SELECT last_seq, epoch, snapshot, created_at, id FROM sessions"
             + where_clause(filter, values);
  auto n = static_cast<int>(values.size());
  if (after)
    sql += " AND (created_at, id) > (?" + std::to_string(n + 1) + ", ?"
           + std::to_string(n + 2) + ")";
  // One row more than asked tells whether another page follows.
  sql += " ORDER BY created_at, id LIMIT ?" + std::to_string(n + (after ? 3 : 1));
  auto fetch = static_cast<int64_t>(
    std::min<size_t>(limit, static_cast<size_t>(std::numeric_limits<int64_t>::max() - 1))
    + 1);
  session_page page;
  std::vector<uint64_t> covered; // what each listed snapshot includes
  {
    std::lock_guard<std::mutex> guard{impl_->read_mtx};
    statement st{impl_->reader->get(), sql};
    use u{st};
    for (int i = 0; i < n; ++i)
      u->bind(i + 1, values[static_cast<size_t>(i)]);
    if (after)
      u->bind(n + 1, static_cast<int64_t>(after->created_at)).bind(n + 2, after->id);
    u->bind(n + (after ? 3 : 1), fetch);
    list_position last;
    while (u->step()) {
      if (page.sessions.size() + page.unreadable.size() == limit) {
        page.next_cursor = encode_list_cursor(last);
        break;
      }
      last.created_at = u->int64(3);
      last.id = u->text(4);
      try {
        auto info = decode_snapshot(u->blob(2));
        covered.push_back(info.last_seq);
        info.last_seq = static_cast<uint64_t>(u->int64(0));
        info.epoch = static_cast<uint64_t>(u->int64(1));
        info.loaded = false;
        page.sessions.push_back(std::move(info));
      } catch (const store_error& e) {
        if (e.error_code() != code::corrupt)
          throw;
        page.unreadable.push_back(last.id);
      }
    }
  }
  for (size_t i = 0; i < page.sessions.size(); ++i)
    catch_up(*this, page.sessions[i], covered[i]);
  return page;
}

uint64_t sqlite_store::count(const session_filter& filter) {
  std::vector<std::string> values;
  auto sql = "SELECT count(*) FROM sessions" + where_clause(filter, values);
  std::lock_guard<std::mutex> guard{impl_->read_mtx};
  statement st{impl_->reader->get(), sql};
  use u{st};
  for (size_t i = 0; i < values.size(); ++i)
    u->bind(static_cast<int>(i + 1), values[i]);
  return u->step() ? static_cast<uint64_t>(u->int64(0)) : 0;
}

void sqlite_store::remove(const std::string& id) {
  std::lock_guard<std::mutex> guard{impl_->write_mtx};
  write_transaction tx{*impl_->writer};
  {
    use u{*impl_->w_delete_events};
    u->bind(1, id);
    u->step();
  }
  {
    use u{*impl_->w_delete_session};
    u->bind(1, id);
    u->step();
  }
  tx.commit();
}

namespace {

/// Sessions a rule may act on, a page at a time (ordered by id). Read on the
/// reader connection, so finding work never holds the write lock.
template <class Bind>
std::vector<std::string> candidates(std::mutex& mtx, statement& st, Bind bind) {
  std::vector<std::string> out;
  std::lock_guard<std::mutex> guard{mtx};
  use u{st};
  bind(*u.operator->());
  while (u->step())
    out.push_back(u->text(0));
  return out;
}

constexpr int64_t candidate_page = 256;

/// What purging one session did inside a transaction.
struct purge_step {
  int64_t rows = 0;      ///< rows deleted (events, plus a session row)
  bool done = false;     ///< nothing of this session is left to purge
  uint64_t sessions = 0; ///< session rows deleted
};

/// The loop of both retention rules: pages of candidate sessions (found
/// on the reader connection), then write transactions of up to `chunk` rows
/// each, several sessions sharing one (one fsync) and a session with more
/// going on in the next one, while `budget_left()`. `bind_page(st, after)`
/// binds the candidate query for the page after the id `after`;
/// `purge(id, room)` deletes at most `room` rows of one session.
template <class BindPage, class Budget, class Purge>
void purge_in_chunks(std::mutex& read_mtx, statement& candidate_query,
                     std::mutex& write_mtx, connection& writer, int64_t chunk,
                     BindPage bind_page, Budget budget_left, Purge purge,
                     purge_result& out) {
  std::string after;
  for (bool more = true; more && budget_left();) {
    auto ids = candidates(read_mtx, candidate_query,
                          [&](statement& st) { bind_page(st, after); });
    more = static_cast<int64_t>(ids.size()) == candidate_page;
    if (!ids.empty())
      after = ids.back();
    for (size_t pos = 0; pos < ids.size() && budget_left();) {
      std::lock_guard<std::mutex> guard{write_mtx};
      write_transaction tx{writer};
      int64_t n = 0;
      uint64_t removed = 0;
      while (pos < ids.size() && n < chunk) {
        auto step = purge(ids[pos], chunk - n);
        n += step.rows;
        removed += step.sessions;
        if (step.done)
          ++pos;
      }
      tx.commit();
      out.events += static_cast<uint64_t>(n) - removed;
      out.sessions += removed;
    }
  }
}

} // namespace

purge_result sqlite_store::purge(const retention_policy& policy, micros now) {
  purge_result out;
  auto chunk = static_cast<int64_t>(std::clamp<size_t>(policy.chunk_rows, 1, 1'000'000));
  auto budget_left = [&] {
    return policy.max_rows == 0 || out.events + out.sessions < policy.max_rows;
  };
  auto& m = *impl_;
  auto changes = [&] {
    return static_cast<int64_t>(sqlite3_changes(m.writer->get()));
  };
  if (policy.max_event_age.count() > 0) {
    auto cutoff = static_cast<int64_t>(now - policy.max_event_age.count());
    auto keep = to_db(policy.keep_events);
    purge_in_chunks(
      m.read_mtx, *m.r_event_candidates, m.write_mtx, *m.writer, chunk,
      [&](statement& st, const std::string& after) {
        st.bind(1, after).bind(2, keep).bind(3, candidate_page);
      },
      budget_left,
      [&](const std::string& id, int64_t room) {
        use u{*m.w_purge_old_events};
        u->bind(1, id).bind(2, keep).bind(3, cutoff).bind(4, room);
        u->step();
        auto d = changes();
        return purge_step{d, d < room, 0};
      },
      out);
  }
  if (policy.cleaned_grace.count() > 0 && budget_left()) {
    auto cutoff = static_cast<int64_t>(now - policy.cleaned_grace.count());
    purge_in_chunks(
      m.read_mtx, *m.r_cleaned_candidates, m.write_mtx, *m.writer, chunk,
      [&](statement& st, const std::string& after) {
        st.bind(1, cutoff).bind(2, after).bind(3, candidate_page);
      },
      budget_left,
      [&](const std::string& id, int64_t room) {
        {
          // Checked again under the write lock: the candidate list is a
          // moment old.
          use u{*m.w_cleaned_check};
          u->bind(1, id).bind(2, cutoff);
          if (!u->step())
            return purge_step{0, true, 0};
        }
        use u{*m.w_purge_first_events};
        u->bind(1, id).bind(2, room);
        u->step();
        auto d = changes();
        if (d >= room)
          return purge_step{d, false, 0};
        // No events left: the session row goes in the same transaction.
        use del{*m.w_delete_session};
        del->bind(1, id);
        del->step();
        return purge_step{d + 1, true, 1};
      },
      out);
  }
  out.truncated = !budget_left();
  return out;
}

namespace {

/// Puts the finished copy `tmp` in place as `dest`. Without `replace`, a
/// hard link refuses an existing `dest` atomically (a file system without
/// hard links falls back to a check, then a rename).
void publish_copy(const std::string& tmp, const std::string& dest, bool replace) {
  if (!replace) {
    if (::link(tmp.c_str(), dest.c_str()) == 0) {
      std::remove(tmp.c_str());
      return;
    }
    if (errno == EEXIST)
      throw store_error(code::conflict, dest + " exists");
    struct stat st {};
    if (::lstat(dest.c_str(), &st) == 0)
      throw store_error(code::conflict, dest + " exists");
  }
  if (std::rename(tmp.c_str(), dest.c_str()) != 0)
    throw store_error(code::io, "cannot rename " + tmp + " to " + dest + ": "
                                  + std::strerror(errno));
}

/// Copies the database `src` is open on to `dest_path` (see backup()).
void copy_database(connection& src, const std::string& dest_path, bool replace) {
  if (!replace) {
    struct stat st {};
    if (::lstat(dest_path.c_str(), &st) == 0)
      throw store_error(code::conflict, dest_path + " exists");
  }
  // Copy into a temporary file beside the destination and move it into
  // place, so `dest_path` only ever holds a complete copy.
  auto tmp = dest_path + ".partial";
  std::remove(tmp.c_str());
  try {
    {
      connection dst{tmp, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE};
      auto* b = sqlite3_backup_init(dst.get(), "main", src.get(), "main");
      if (b == nullptr)
        fail(dst.get(), sqlite3_errcode(dst.get()), "backup to " + tmp);
      // -1: all pages in one step, i.e. one read transaction on the source.
      int rc = sqlite3_backup_step(b, -1);
      sqlite3_backup_finish(b);
      if (rc != SQLITE_DONE)
        fail(dst.get(), rc, "backup to " + tmp);
      // The copy should not depend on a -wal file beside it.
      dst.exec("PRAGMA journal_mode = DELETE");
    }
    int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
    publish_copy(tmp, dest_path, replace);
    fsync_dir_of(dest_path);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

} // namespace

void sqlite_store::backup(const std::string& dest_path) {
  // A connection of its own: the copy runs in one read transaction (WAL
  // snapshot isolation makes it consistent) without holding our mutexes, so
  // appends go on meanwhile.
  connection src{impl_->path, SQLITE_OPEN_READONLY};
  copy_database(src, dest_path, true);
}

void sqlite_store::backup_file(const std::string& source_path,
                               const std::string& dest_path, bool replace) {
  struct stat st {};
  if (::stat(source_path.c_str(), &st) != 0) {
    auto c = errno == ENOENT ? code::not_found : code::io;
    throw store_error(c, "cannot read " + source_path + ": "
                           + std::strerror(errno));
  }
  check_header(source_path); // a regular file that starts like SQLite
  connection src{source_path, SQLITE_OPEN_READONLY};
  if (check_identity(src, source_path) == 0)
    throw store_error(code::not_a_database,
                      source_path + " is empty, not a sessionhost database");
  copy_database(src, dest_path, replace);
}

} // namespace sessionhost
