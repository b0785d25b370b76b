#pragma once
// The dashboard's files (web/), compiled into the executable by
// cmake/embed_files.cmake so `sessionhost serve` needs no files on disk.

#include <cstddef>

namespace sessionhost::transport {

/// One embedded file: its name under web/ and its bytes.
struct web_asset {
  const char* name; // "index.html", "sessionhost.js", …
  const unsigned char* data;
  size_t size;
};

/// The embedded files, in the order CMake lists them.
const web_asset* web_assets_begin() noexcept;
const web_asset* web_assets_end() noexcept;

} // namespace sessionhost::transport
