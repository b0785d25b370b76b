#pragma once
// The in-memory session_store: the reference semantics for the conformance
// suite and a fast, hermetic store for unit tests. Nothing survives the
// process. Thread-safe (one mutex).

#include <map>
#include <mutex>
#include <unordered_map>

#include "host/store/session_store.hpp"

namespace sessionhost {

/// Every session and event in one process's memory (see the file comment);
/// each method behaves as session_store documents it.
class memory_store final : public session_store {
public:
  void create(const session_info& info) override;
  void create_many(const std::vector<session_info>& infos) override;
  void create_started(const std::vector<append_batch>& sessions) override;
  void append(const std::vector<append_batch>& batches) override;
  std::vector<event> read_events(const std::string& id, uint64_t after_seq,
                                 size_t limit) override;
  std::optional<session_info> load(const std::string& id) override;
  uint64_t activate(const std::string& id) override;
  std::vector<uint64_t> activate_many(const std::vector<std::string>& ids) override;
  std::optional<std::string> find_by_role(const std::string& role) override;
  session_page list(const session_filter& filter, const std::string& cursor,
                    size_t limit) override;
  uint64_t count(const session_filter& filter) override;
  void remove(const std::string& id) override;
  purge_result purge(const retention_policy& policy, micros now) override;

  /// Makes every following write throw `io` until called with false
  /// (fault injection for the persistence tests).
  void fail_writes(bool on);

private:
  struct record {
    session_info snapshot;
    uint64_t last_seq = 0;
    uint64_t epoch = 0;
    std::map<uint64_t, event> events; // by seq; purge may remove old ones
  };

  session_info view(const record& r) const;
  bool role_taken(const std::string& role, const std::string& except_id) const;
  /// Adds new sessions, all or none (a conflict undoes this call's inserts).
  void insert_new(std::vector<record> rs);

  std::mutex mtx_;
  std::unordered_map<std::string, record> sessions_; // guarded by mtx_
  bool fail_writes_ = false;                          // guarded by mtx_
};

} // namespace sessionhost
