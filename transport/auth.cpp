#include "transport/auth.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace sessionhost::transport {

namespace {

std::set<std::string> split_list(const std::string& s) {
  std::set<std::string> out;
  std::string item;
  std::istringstream in{s};
  while (std::getline(in, item, ','))
    if (!item.empty())
      out.insert(item);
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

/// "http://h:p" → "h:p" (empty when there is no scheme).
std::string authority_of(const std::string& origin) {
  auto pos = origin.find("://");
  if (pos == std::string::npos)
    return {};
  auto rest = origin.substr(pos + 3);
  return rest.substr(0, rest.find('/'));
}

/// Splits "h:p" / "[::1]:p" into host and port ("" when none).
void split_authority(const std::string& a, std::string& host,
                     std::string& port) {
  auto colon = a.rfind(':');
  if (colon == std::string::npos || a.find(']', colon) != std::string::npos) {
    host = a;
    port.clear();
    return;
  }
  host = a.substr(0, colon);
  port = a.substr(colon + 1);
}

bool loopback_name(const std::string& h) {
  return h == "localhost" || h == "[::1]" || h.rfind("127.", 0) == 0;
}

} // namespace

bool token_scope::allows(const std::string& id, const std::string& role) const {
  return allows_id(id) || (!role.empty() && roles.count(role) > 0);
}

token_table token_table::parse(std::istream& in) {
  token_table out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::istringstream words{line};
    std::string word;
    if (!(words >> word) || word[0] == '#')
      continue;
    auto where = "token file line " + std::to_string(n) + ": ";
    token_scope scope;
    scope.token = word;
    if (out.find(word) != nullptr)
      throw std::runtime_error(where + "duplicate token");
    while (words >> word) {
      if (word == "read-only") {
        scope.read_only = true;
      } else if (word.rfind("sessions=", 0) == 0 || word.rfind("roles=", 0) == 0) {
        auto eq = word.find('=');
        auto items = split_list(word.substr(eq + 1));
        if (items.empty())
          throw std::runtime_error(where + "empty list in " + word);
        auto& into = word[0] == 's' ? scope.sessions : scope.roles;
        into.insert(items.begin(), items.end());
      } else {
        throw std::runtime_error(where + "unknown word '" + word
                                 + "' (sessions=…, roles=…, read-only)");
      }
    }
    out.tokens_.push_back(std::move(scope));
  }
  if (out.tokens_.empty())
    throw std::runtime_error("the token file holds no token");
  return out;
}

const token_scope* token_table::find(const std::string& token) const {
  if (token.empty())
    return nullptr;
  for (auto& t : tokens_)
    if (t.token.size() == token.size()
        && std::equal(t.token.begin(), t.token.end(), token.begin()))
      return &t;
  return nullptr;
}

std::string bearer_token(const std::string& authorization,
                         const std::string& query_token) {
  const std::string prefix = "Bearer ";
  if (authorization.size() > prefix.size()
      && lower(authorization.substr(0, prefix.size())) == "bearer ")
    return authorization.substr(prefix.size());
  return query_token;
}

origin_policy::origin_policy(const std::string& list) {
  for (auto& o : split_list(list)) {
    if (o == "*")
      any_ = true;
    else
      origins_.insert(lower(o));
  }
}

bool origin_policy::allows(const std::string& origin,
                           const std::string& host) const {
  if (origin.empty() || any_)
    return true;
  auto o = lower(origin);
  if (origins_.count(o) > 0)
    return true;
  auto a = authority_of(o);
  auto h = lower(host);
  if (a.empty() || h.empty())
    return false;
  if (a == h)
    return true;
  std::string ah, ap, hh, hp;
  split_authority(a, ah, ap);
  split_authority(h, hh, hp);
  return ap == hp && loopback_name(ah) && loopback_name(hh);
}

} // namespace sessionhost::transport
