#include "host/clock.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace sessionhost {

clock::~clock() = default;

micros system_clock::now() const noexcept {
  using namespace std::chrono;
  return duration_cast<microseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

std::string format_rfc3339(micros t) {
  auto secs = static_cast<time_t>(t / 1'000'000);
  auto frac = t % 1'000'000;
  if (frac < 0) {
    frac += 1'000'000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<long long>(frac));
  return buf;
}

} // namespace sessionhost
