#pragma once
// Whether a text is one JSON value, checked without building it: the same
// answer as nlohmann::json::accept (RFC 8259, UTF-8 checked inside strings,
// \u escapes paired, a leading UTF-8 BOM skipped, numbers that overflow a
// double refused), several times faster. One difference: nlohmann stops
// reading at a NUL byte after the value; here any NUL byte is refused, so
// accepted text never carries bytes past its value. Every publish's data goes through
// it on its way in and every event's on its way out.
// Thread safety: a pure function.

#include <string_view>

namespace sessionhost {

/// Whether `text` is exactly one JSON value (whitespace around it allowed).
bool json_valid(std::string_view text) noexcept;

} // namespace sessionhost
