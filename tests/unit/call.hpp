#pragma once
// A request from a scoped_actor with a bounded wait (10 s), for tests on a
// real scheduler: the reply, or the error (a timeout is one).

#include <chrono>
#include <utility>

#include <caf/scoped_actor.hpp>

#include "reply.hpp"

#include "host/error.hpp"

namespace sessionhost::test {

template <class T, class Handle, class... Ts>
reply<T> call(caf::scoped_actor& self, const Handle& h, Ts&&... xs) {
  reply<T> result{make_error(errc::internal, "no reply")};
  self->request(h, std::chrono::seconds(10), std::forward<Ts>(xs)...)
    .receive([&](T& x) { result = std::move(x); },
             [&](caf::error& e) { result = std::move(e); });
  return result;
}

} // namespace sessionhost::test
