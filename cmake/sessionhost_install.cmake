# Installing sessionhost for embedders: `cmake --install <build> --component
# sessionhost_dev` (or a plain `cmake --install`) puts in place
#
#   <prefix>/include/sessionhost/…          the public headers (host/…, actors/…)
#                                           and the umbrella sessionhost.hpp
#   <prefix>/lib/libsessionhost_*.a         core, store, proto, transport
#                                           (static)
#   <prefix>/lib/cmake/sessionhost/         sessionhostConfig.cmake, its
#                                           version file, the exported targets
#                                           and caf.cmake (Debian's CAF has no
#                                           CMake config of its own)
#
# so that `find_package(sessionhost CONFIG REQUIRED)` gives
# `sessionhost::sessionhost` (core + store + proto + transport). The
# libraries are static: their private dependencies (SQLite, libpqxx,
# nlohmann-json, Boost's headers) are found again by the package config,
# which is what a static link needs.
#
# Included from the root CMakeLists.txt after the subdirectories, since the
# store and proto targets are defined there.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(SESSIONHOST_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/sessionhost"
    CACHE STRING "Where the sessionhost package config is installed")
set(_sh_component sessionhost_dev)

# The umbrella header: <sessionhost/sessionhost.hpp> in the build tree too.
target_include_directories(sessionhost_core PUBLIC
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>)

# sessionhost::sessionhost: everything an embedder links.
add_library(sessionhost_sdk INTERFACE)
add_library(sessionhost::sessionhost ALIAS sessionhost_sdk)
target_link_libraries(sessionhost_sdk INTERFACE sessionhost_core)
set(_sh_targets sessionhost_sdk sessionhost_core)
set(SESSIONHOST_WITH_STORE OFF)
if(TARGET sessionhost_store AND TARGET sessionhost_proto)
  set(SESSIONHOST_WITH_STORE ON)
  target_link_libraries(sessionhost_sdk INTERFACE sessionhost_store)
  list(APPEND _sh_targets sessionhost_store sessionhost_proto)
endif()
# The REST + WebSocket transport (transport/http_frontend.hpp): Boost.Beast
# and Asio inside, only standard headers in its public ones.
set(SESSIONHOST_WITH_TRANSPORT OFF)
if(SESSIONHOST_WITH_STORE AND TARGET sessionhost_transport)
  set(SESSIONHOST_WITH_TRANSPORT ON)
  target_link_libraries(sessionhost_sdk INTERFACE sessionhost_transport)
  list(APPEND _sh_targets sessionhost_transport)
  set_target_properties(sessionhost_transport PROPERTIES EXPORT_NAME transport)
endif()
set_target_properties(sessionhost_sdk PROPERTIES EXPORT_NAME sessionhost)
set_target_properties(sessionhost_core PROPERTIES EXPORT_NAME core)
if(SESSIONHOST_WITH_STORE)
  set_target_properties(sessionhost_store PROPERTIES EXPORT_NAME store)
  set_target_properties(sessionhost_proto PROPERTIES EXPORT_NAME proto)
endif()

# The public headers: what embedded_host.hpp, session_type.hpp and the store
# interface need, and nothing an implementation file alone uses. Relative
# paths are kept, so the headers' own #include "host/…" lines resolve against
# <prefix>/include/sessionhost.
set(SESSIONHOST_PUBLIC_HEADERS
  actors/actors.hpp
  actors/atoms.hpp
  actors/client_feed.hpp
  actors/hooks.hpp
  actors/observability.hpp
  actors/types.hpp
  host/clock.hpp
  host/config.hpp
  host/embedded_host.hpp
  host/error.hpp
  host/event.hpp
  host/id_generator.hpp
  host/json_check.hpp
  host/latency_histogram.hpp
  host/lifecycle.hpp
  host/session_info.hpp
  host/session_type.hpp
  host/process/process_spec.hpp
  host/process/process_supervisor.hpp
  host/process/process_session.hpp
  host/process/process_types.hpp
  host/store/memory_store.hpp
  host/store/open_store.hpp
  host/store/session_store.hpp
)
# Retention types, included by session_store.hpp once retention is in.
if(EXISTS "${PROJECT_SOURCE_DIR}/host/store/retention.hpp")
  list(APPEND SESSIONHOST_PUBLIC_HEADERS host/store/retention.hpp)
endif()
if(SESSIONHOST_WITH_TRANSPORT)
  list(APPEND SESSIONHOST_PUBLIC_HEADERS
    transport/http_frontend.hpp
    transport/api.hpp
    transport/auth.hpp
    transport/server.hpp
    transport/backend.hpp)
endif()
foreach(hdr IN LISTS SESSIONHOST_PUBLIC_HEADERS)
  get_filename_component(_dir "${hdr}" DIRECTORY)
  install(FILES "${PROJECT_SOURCE_DIR}/${hdr}"
    DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/sessionhost/${_dir}"
    COMPONENT ${_sh_component})
endforeach()
install(FILES "${PROJECT_SOURCE_DIR}/include/sessionhost/sessionhost.hpp"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/sessionhost"
  COMPONENT ${_sh_component})

install(TARGETS ${_sh_targets} EXPORT sessionhost_targets
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT ${_sh_component}
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT ${_sh_component}
  INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
                       "${CMAKE_INSTALL_INCLUDEDIR}/sessionhost")
install(EXPORT sessionhost_targets
  NAMESPACE sessionhost::
  FILE sessionhostTargets.cmake
  DESTINATION "${SESSIONHOST_INSTALL_CMAKEDIR}"
  COMPONENT ${_sh_component})

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/sessionhostConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/sessionhostConfig.cmake"
  INSTALL_DESTINATION "${SESSIONHOST_INSTALL_CMAKEDIR}")
# 0.x: a minor version may break the API.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/sessionhostConfigVersion.cmake"
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  "${PROJECT_BINARY_DIR}/sessionhostConfig.cmake"
  "${PROJECT_BINARY_DIR}/sessionhostConfigVersion.cmake"
  "${PROJECT_SOURCE_DIR}/cmake/caf.cmake"
  DESTINATION "${SESSIONHOST_INSTALL_CMAKEDIR}"
  COMPONENT ${_sh_component})
