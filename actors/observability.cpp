#include "actors/observability.hpp"

namespace sessionhost {

void observability_hub::record(lifecycle_record rec) {
  std::lock_guard<std::mutex> guard{mtx_};
  records_.push_back(std::move(rec));
  while (records_.size() > capacity_)
    records_.pop_front();
}

std::vector<lifecycle_record> observability_hub::records() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return {records_.begin(), records_.end()};
}

std::vector<lifecycle_record>
observability_hub::records_for(const std::string& session_id) const {
  std::vector<lifecycle_record> out;
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& r : records_)
    if (r.session_id == session_id)
      out.push_back(r);
  return out;
}

std::vector<std::string>
observability_hub::names_for(const std::string& session_id) const {
  std::vector<std::string> out;
  for (auto& r : records_for(session_id))
    out.push_back(r.name);
  return out;
}

void observability_hub::clear() {
  std::lock_guard<std::mutex> guard{mtx_};
  records_.clear();
}

} // namespace sessionhost
