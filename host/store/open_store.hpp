#pragma once
// Picks and opens the session store a host is configured with:
//
//   postgresql://… or postgres://…  PostgreSQL (postgres_store)
//   memory:                         in-memory, nothing survives (memory_store)
//   sqlite:PATH                     SQLite file PATH (sqlite_store)
//   "" (empty)                      SQLite file <data_dir>/sessionhost.db
//
// Thread safety: may be called from any thread; the stores it returns are
// thread-safe.

#include <string>

#include "host/store/session_store.hpp"

namespace sessionhost {

/// Opens the store `url` names (see above). Creates `data_dir` when the
/// default SQLite file is used. Throws `store_error`: `invalid_argument` for
/// an unknown scheme, `not_a_database` for a file that is not a sessionhost
/// database, `io` when the database cannot be reached or created.
store_ptr open_store(const std::string& url, const std::string& data_dir);

} // namespace sessionhost
