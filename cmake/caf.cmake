# Debian's libcaf-dev (0.17.6) ships no CMake config and no pkg-config file:
# find it by hand and recreate the imported targets CAF::core / CAF::io.
# Also installed beside sessionhost's package config, which includes it with
# CAF_FIND_REQUIRED / CAF_FIND_QUIETLY set from its own find_package call;
# included directly (the main build) CAF is required.
if(NOT DEFINED CAF_FIND_REQUIRED)
  set(CAF_FIND_REQUIRED TRUE)
endif()
find_package(Threads REQUIRED)
find_path(CAF_INCLUDE_DIR caf/all.hpp)
find_library(CAF_CORE_LIBRARY caf_core)
find_library(CAF_IO_LIBRARY caf_io)
if(CAF_INCLUDE_DIR)
  file(STRINGS "${CAF_INCLUDE_DIR}/caf/config.hpp" _caf_ver
       REGEX "^#define CAF_VERSION [0-9]+")
  string(REGEX REPLACE ".* ([0-9]+)$" "\\1" _caf_num "${_caf_ver}")
  math(EXPR _maj "${_caf_num} / 10000")
  math(EXPR _min "(${_caf_num} / 100) % 100")
  math(EXPR _pat "${_caf_num} % 100")
  set(CAF_VERSION "${_maj}.${_min}.${_pat}")
endif()
include(FindPackageHandleStandardArgs)
# NAME_MISMATCHED: included from sessionhostConfig.cmake, the calling
# package is sessionhost, not CAF.
find_package_handle_standard_args(CAF NAME_MISMATCHED
  REQUIRED_VARS CAF_INCLUDE_DIR CAF_CORE_LIBRARY CAF_IO_LIBRARY
  VERSION_VAR CAF_VERSION)
if(CAF_FOUND AND (CAF_VERSION VERSION_LESS 0.17 OR CAF_VERSION VERSION_GREATER_EQUAL 0.18))
  message(FATAL_ERROR "sessionhost targets the CAF 0.17 API, found ${CAF_VERSION}")
endif()
if(CAF_FOUND AND NOT TARGET CAF::core)
  add_library(CAF::core SHARED IMPORTED)
  set_target_properties(CAF::core PROPERTIES
    IMPORTED_LOCATION "${CAF_CORE_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${CAF_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES Threads::Threads)
  add_library(CAF::io SHARED IMPORTED)
  set_target_properties(CAF::io PROPERTIES
    IMPORTED_LOCATION "${CAF_IO_LIBRARY}"
    INTERFACE_LINK_LIBRARIES CAF::core)
endif()
