#pragma once
// Where sessions and their events are durable. One interface, three
// implementations (memory for tests, SQLite by default, PostgreSQL for a
// cluster), all held to the same conformance suite (tests/contract/).
//
// Thread safety: every method may be called from any thread at any time; the
// persistence listener writes while the host reads.
// Errors: every method throws `store_error`; a throwing call changed nothing.

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/event.hpp"
#include "host/session_info.hpp"
#include "host/store/retention.hpp"

namespace sessionhost {

/// What every store method throws; a throwing call changed nothing.
class store_error : public std::runtime_error {
public:
  /// The kind of failure.
  enum class code {
    stale_epoch,    ///< the writer's activation lost the session to a newer one
    seq_gap,        ///< the first seq of a batch is not last stored seq + 1
    conflict,       ///< the id exists, or the role is held by a live session
    not_found,      ///< no such session
    corrupt,        ///< stored bytes do not decode
    not_a_database, ///< the file or schema is not a sessionhost store
    io,             ///< the database failed (disk, connection, …)
    invalid_argument, ///< a malformed cursor, a zero limit, …
  };
  /// A failure of kind `c`, described by `what`.
  store_error(code c, const std::string& what) : std::runtime_error(what), code_(c) {}
  /// The kind of failure.
  code error_code() const noexcept { return code_; }

private:
  code code_;
};

/// One session's share of a group commit.
struct append_batch {
  std::string session_id;          ///< the session written
  uint64_t epoch = 0;              ///< must be >= the session's stored epoch
  std::vector<event> events;       ///< seqs continue the stored stream: last + 1, …
  /// Replaces the snapshot, same transaction; it covers the events up to its
  /// `last_seq` (load folds in those after it).
  std::optional<session_info> snapshot;
};

/// One page of `list`.
struct session_page {
  std::vector<session_info> sessions; ///< ordered by (created_at, id)
  std::string next_cursor; ///< empty on the last page
  /// Sessions of this page whose stored snapshot does not decode: left out
  /// of `sessions` (they count toward the limit), so one bad row never hides
  /// the others; `load` reports each as `corrupt`.
  std::vector<std::string> unreadable;
};

/// One session of `load_activate_many`: loaded and claimed, or why not.
struct activation {
  std::string id; ///< the session asked for
  /// The session as `load` gives it, with every event stored before the
  /// claim folded in and `epoch` the new one; empty when `error` is set.
  std::optional<session_info> info;
  /// Why this session was not loaded: `not_found` (no such session) or
  /// `corrupt` (its snapshot or an event does not decode). It is not
  /// claimed, unless what failed was read after the claim (events an older
  /// activation wrote meanwhile; then also `io`).
  std::optional<store_error> error;
};

/// The durable home of sessions and their events (see the file comment).
class session_store {
public:
  virtual ~session_store();

  /// Stores a new session from its first snapshot (`last_seq` 0, `epoch` as
  /// given). Throws `conflict` when the id exists, or when `role` is non-empty
  /// and another session with that role is not CLEANED.
  virtual void create(const session_info& info) = 0;

  /// Stores several new sessions in one transaction: all of them or none,
  /// failing as `create` would for the first one that cannot be created. The
  /// host creates the sessions of a burst this way (one fsync, not one per
  /// session).
  virtual void create_many(const std::vector<session_info>& infos) = 0;

  /// Stores new sessions that already took their first steps, each with its
  /// first events, in one transaction: all of them or none. Each batch is one
  /// new session: `snapshot` (required, same id) is the session as of its
  /// last event, `events` its seqs 1, 2, …, `epoch` its stored epoch. The row
  /// is written once, in its final form (the host creates the sessions of a
  /// type that spawns nothing this way: one transaction per burst instead of
  /// a create and then an append). Fails as `create_many` would (`conflict`),
  /// or with `invalid_argument` (no snapshot, another id) or `seq_gap`
  /// (events not 1, 2, …).
  virtual void create_started(const std::vector<append_batch>& sessions) = 0;

  /// Writes every batch in one transaction: all of them or none. Throws
  /// `not_found`, `stale_epoch` (epoch below the stored one) or `seq_gap`
  /// (events not exactly last_seq + 1, last_seq + 2, …) and then writes none.
  /// A snapshot's role must stay unique among live sessions (`conflict`).
  virtual void append(const std::vector<append_batch>& batches) = 0;

  /// Events with seq > after_seq, ascending, at most `limit`.
  virtual std::vector<event> read_events(const std::string& id,
                                         uint64_t after_seq, size_t limit) = 0;

  /// The stored snapshot with the events after the seq it covers (its own
  /// `last_seq`) folded in (`catch_up`, host/store/catch_up.hpp), `last_seq`
  /// set to the highest stored event seq and `epoch` to the current epoch,
  /// or nothing for an unknown id. Throws `corrupt` when the stored snapshot
  /// does not decode.
  virtual std::optional<session_info> load(const std::string& id) = 0;

  /// Claims the session for a new activation: stores and returns epoch + 1.
  /// Writes carrying an older epoch are refused from then on (fencing).
  virtual uint64_t activate(const std::string& id) = 0;

  /// `activate` for several sessions in one transaction, all or none (throws
  /// `not_found` if one is unknown); the epochs in the order of `ids`.
  virtual std::vector<uint64_t> activate_many(const std::vector<std::string>& ids) = 0;

  /// `load` and `activate` of several sessions in one go, the results in the
  /// order of `ids` (each at most once, else `invalid_argument`). Each
  /// session found is claimed (epoch + 1, fencing older writers, as
  /// `activate`) and returned caught up with every event stored before the
  /// claim, so an older activation's last writes are not missed. One session
  /// that is unknown or does not decode fails alone, in its own entry; the
  /// others load. Throws only when the store itself fails before claiming
  /// anything, and then claimed nothing. The host loads the sessions of a
  /// burst this way. The default runs `load`, `activate_many` and
  /// `read_events`; SQLite reads them all in one read transaction and claims
  /// them in one write transaction.
  virtual std::vector<activation> load_activate_many(const std::vector<std::string>& ids);

  /// The id of the session holding `role` that is not CLEANED, if any.
  virtual std::optional<std::string> find_by_role(const std::string& role) = 0;

  /// Stored sessions matching `filter` (each as `load` gives it), ordered by
  /// (created_at, id), at most `limit` (>= 1, else `invalid_argument`) per
  /// page; pass the previous page's `next_cursor` to go on.
  /// A session whose snapshot does not decode is named in `unreadable`.
  virtual session_page list(const session_filter& filter,
                            const std::string& cursor, size_t limit) = 0;

  /// How many stored sessions match `filter`.
  virtual uint64_t count(const session_filter& filter) = 0;

  /// Deletes the session and its events (no-op for an unknown id).
  virtual void remove(const std::string& id) = 0;

  /// Applies `policy` (host/store/retention.hpp) as of `now`: deletes old
  /// events and expired CLEANED sessions, in transactions of at most
  /// `policy.chunk_rows` rows so concurrent writers never wait long. Readers
  /// may see a session's oldest events disappear between two reads (a
  /// `read_events` from an early seq then starts above it); the events a
  /// load needs (above the snapshot's seq) are never deleted. Safe to run
  /// while the session is written; throws `store_error` (what was deleted
  /// before the failure stays deleted).
  virtual purge_result purge(const retention_policy& policy, micros now) = 0;
};

/// Throws what `create_started` throws for malformed input (no snapshot,
/// another id: `invalid_argument`; events not 1, 2, …: `seq_gap`); shared by
/// the implementations, which call it before writing anything.
void check_started(const std::vector<append_batch>& sessions);

/// Throws `invalid_argument` when an id occurs twice in `ids` (shared by the
/// implementations of `load_activate_many`).
void check_distinct(const std::vector<std::string>& ids);

/// How stores are shared between the host, its listener and the caller.
using store_ptr = std::shared_ptr<session_store>;

} // namespace sessionhost

namespace sessionhost {

/// CAF serialization (messages between nodes).
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, session_page& x) {
  return f(caf::meta::type_name("sessionhost.session_page"), x.sessions,
           x.next_cursor, x.unreadable);
}

} // namespace sessionhost
