// session_store::load_activate_many as any store can do it: load each
// session, claim them all in one transaction, then fold in what an older
// activation wrote between the two. Stores that can read many sessions in
// one go override it (sqlite_store).
#include <algorithm>

#include "host/store/catch_up.hpp"
#include "host/store/session_store.hpp"

namespace sessionhost {

void check_distinct(const std::vector<std::string>& ids) {
  std::vector<const std::string*> sorted;
  sorted.reserve(ids.size());
  for (auto& id : ids)
    sorted.push_back(&id);
  std::sort(sorted.begin(), sorted.end(),
            [](auto* x, auto* y) { return *x < *y; });
  auto dup = std::adjacent_find(sorted.begin(), sorted.end(),
                                [](auto* x, auto* y) { return *x == *y; });
  if (dup != sorted.end())
    throw store_error(store_error::code::invalid_argument,
                      "session " + **dup + " is asked for twice");
}

std::vector<activation>
session_store::load_activate_many(const std::vector<std::string>& ids) {
  using code = store_error::code;
  check_distinct(ids);
  std::vector<activation> out(ids.size());
  std::vector<std::string> found; // loaded, to be claimed
  std::vector<size_t> at;         // their places in `out`
  for (size_t i = 0; i < ids.size(); ++i) {
    out[i].id = ids[i];
    try {
      if (auto info = load(ids[i])) {
        out[i].info = std::move(info);
        found.push_back(ids[i]);
        at.push_back(i);
      } else {
        out[i].error = store_error(code::not_found, "no session " + ids[i]);
      }
    } catch (const store_error& e) {
      if (e.error_code() != code::corrupt)
        throw;
      out[i].error = e;
    }
  }
  if (found.empty())
    return out;
  std::vector<std::optional<uint64_t>> epochs(found.size());
  try {
    auto got = activate_many(found);
    std::copy(got.begin(), got.end(), epochs.begin());
  } catch (const store_error& e) {
    if (e.error_code() != code::not_found)
      throw;
    // One went away since it was read: claim each on its own.
    for (size_t k = 0; k < found.size(); ++k) {
      try {
        epochs[k] = activate(found[k]);
      } catch (const store_error& e) { // others are claimed: fail alone
        auto& a = out[at[k]];
        a.info.reset();
        a.error = e.error_code() == code::not_found
                    ? store_error(code::not_found, "no session " + found[k])
                    : e;
      }
    }
  }
  for (size_t k = 0; k < found.size(); ++k) {
    if (!epochs[k])
      continue;
    auto& a = out[at[k]];
    try {
      for (;;) {
        auto page = read_events(a.id, a.info->last_seq, 4096);
        if (page.empty())
          break;
        replay_into(*a.info, page);
      }
    } catch (const store_error& e) { // claimed already: fail alone
      a.info.reset();
      a.error = e;
      continue;
    }
    a.info->epoch = *epochs[k];
  }
  return out;
}

} // namespace sessionhost
