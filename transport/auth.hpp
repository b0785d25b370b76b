#pragma once
// Bearer tokens of `sessionhost serve` and what each may do (docs/PROTOCOL.md,
// "Authentication"), and the Origin check of WebSocket upgrades. Plain C++:
// no CAF, no Beast, so both sides of the transport can use it.
//
// Thread safety: a token_table and an origin_policy are immutable after
// construction; any thread may read them.

#include <istream>
#include <set>
#include <string>
#include <vector>

namespace sessionhost::transport {

/// One token and its limits. Without `sessions` and `roles` it reaches every
/// session; with either, only the sessions listed or holding a listed role.
struct token_scope {
  std::string token;
  std::set<std::string> sessions;
  std::set<std::string> roles;
  /// Only reads: GET routes, WebSocket subscribe/unsubscribe.
  bool read_only = false;

  /// Whether the token reaches every session (and /metrics).
  bool unlimited() const noexcept { return sessions.empty() && roles.empty(); }

  /// Whether it reaches the session `id` holding `role` (empty: none).
  bool allows(const std::string& id, const std::string& role) const;

  /// Whether it reaches `id` without knowing its role: true when unlimited
  /// or listed by id; otherwise the caller looks the role up.
  bool allows_id(const std::string& id) const {
    return unlimited() || sessions.count(id) > 0;
  }
};

/// The tokens of a token file: one per line, `TOKEN [sessions=A,B]
/// [roles=R,S] [read-only]`; blank lines and lines starting with # ignored.
class token_table {
public:
  /// Parses a token file; throws std::runtime_error naming the line on an
  /// unknown word, an empty list, a duplicate token, or no token at all.
  static token_table parse(std::istream& in);

  /// The scope of `token`, or null when it is not one of ours.
  const token_scope* find(const std::string& token) const;

  bool empty() const noexcept { return tokens_.empty(); }

private:
  std::vector<token_scope> tokens_;
};

/// The token a request carries: "Authorization: Bearer X" first, else the
/// `token` query parameter (`query_token`); empty when neither.
std::string bearer_token(const std::string& authorization,
                         const std::string& query_token);

/// Which browser origins may open WebSockets. A request without an Origin
/// header (not a browser) always passes.
class origin_policy {
public:
  /// `list`: comma-separated origins ("http://a.example:8080"), or "*" for
  /// any. Besides the list, a page of the server itself may always connect:
  /// an Origin whose host:port is the request's Host header, or a loopback
  /// name (127.0.0.1, localhost, [::1]) with the Host's port when the Host
  /// is a loopback name too.
  explicit origin_policy(const std::string& list = {});

  bool allows(const std::string& origin, const std::string& host) const;

private:
  bool any_ = false;
  std::set<std::string> origins_;
};

} // namespace sessionhost::transport
