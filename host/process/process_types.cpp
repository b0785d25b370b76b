#include "host/process/process_types.hpp"

#include <stdexcept>

#include "host/process/process_session.hpp"

namespace sessionhost {

process_types::process_types(const caf::actor_system_config& cfg,
                             const std::string& data_dir)
  : process_types(process_specs_from(cfg, data_dir)) {}

process_types::process_types(std::vector<process_spec> specs)
  : sup_(std::make_shared<process_supervisor>()) {
  for (auto& s : specs)
    specs_.push_back(std::make_shared<const process_spec>(std::move(s)));
}

process_types::~process_types() {
  stop();
}

void process_types::install(session_type_registry& types) const {
  for (auto& spec : specs_)
    if (types.contains(spec->name))
      throw std::invalid_argument("sessionhost.process-types." + spec->name
                                  + ": the name of a session type that "
                                    "exists already");
  for (auto& spec : specs_)
    types.add(spec->name, [spec, sup = sup_] {
      return std::make_unique<process_session>(spec, sup);
    });
}

std::vector<std::string> process_types::names() const {
  std::vector<std::string> out;
  for (auto& spec : specs_)
    out.push_back(spec->name);
  return out;
}

void process_types::stop() {
  sup_->stop();
}

} // namespace sessionhost
