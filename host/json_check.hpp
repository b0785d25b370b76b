#pragma once
// Whether a text is one JSON value: nlohmann::json::accept's answer (RFC 8259,
// UTF-8 checked inside strings, \u escapes paired, a leading UTF-8 BOM
// skipped), with one difference: nlohmann stops reading at a NUL byte after
// the value, so any NUL byte is refused here and accepted text never carries
// bytes past its value. Every publish's data goes through it on its way in.
// Thread safety: a pure function.

#include <string_view>

namespace sessionhost {

/// Whether `text` is exactly one JSON value (whitespace around it allowed).
bool json_valid(std::string_view text);

} // namespace sessionhost
