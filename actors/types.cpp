#include "actors/types.hpp"

#include <caf/actor_system_config.hpp>

#include "actors/actors.hpp"

namespace sessionhost {

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<event>("sessionhost.event");
  cfg.add_message_type<json_text>("sessionhost.json_text");
  cfg.add_message_type<std::vector<event>>("sessionhost.event_list");
  cfg.add_message_type<session_info>("sessionhost.session_info");
  cfg.add_message_type<std::vector<session_info>>("sessionhost.session_list");
  cfg.add_message_type<session_filter>("sessionhost.session_filter");
  cfg.add_message_type<session_page>("sessionhost.session_page");
  cfg.add_message_type<session_state>("sessionhost.session_state");
  cfg.add_message_type<metadata_map>("sessionhost.metadata");
  cfg.add_message_type<session_spec>("sessionhost.session_spec");
  cfg.add_message_type<load_result>("sessionhost.load_result");
  cfg.add_message_type<std::vector<load_result>>("sessionhost.load_results");
  cfg.add_message_type<std::vector<session_spec>>("sessionhost.session_spec_list");
}

} // namespace sessionhost
