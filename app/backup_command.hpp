#pragma once
// `sessionhost backup DEST`: a consistent copy of a live SQLite database
// (SQLite's online backup API) while `sessionhost serve` keeps writing it.

namespace sessionhost {

/// Runs `sessionhost backup` with the arguments after "backup"; returns the
/// exit code (0 done, 1 the backup failed, 2 a bad command line).
int run_backup(int argc, char** argv);

} // namespace sessionhost
