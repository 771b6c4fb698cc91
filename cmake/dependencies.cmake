# The libraries visionbatch builds against, each with the oldest version it
# needs and why (the API that sets the floor), checked with pkg-config so a
# too-old or missing library stops `cmake` with one line naming the package
# to install, not a compile error deep in the build.
#
#   libcurl        7.85   CURLOPT_PROTOCOLS_STR / CURLOPT_REDIR_PROTOCOLS_STR
#   librdkafka     2.0    incremental (cooperative) rebalancing, and the oldest
#                         release the tests run against (Debian 12: 2.0.2)
#   libmicrohttpd  0.9.71 enum MHD_Result
#   hiredis        0.14   blocking contexts with timeouts and keepalive
#   libcjson       1.7.13 cJSON_ParseWithLength
#   OpenSSL        3.0    EVP_MAC (HMAC-SHA256 of webhooks)
#
# Redis over TLS (rediss://) needs hiredis >= 1.0 and its hiredis_ssl library.
# VB_REDIS_TLS: AUTO (default) builds it in when found, ON requires it (the
# container images), OFF leaves it out. Without it, rediss:// URLs are refused
# when the configuration is read, with a message saying so. Sets
# VB_HAVE_REDIS_TLS and defines the imported targets PkgConfig::<PREFIX>.

set(VB_REDIS_TLS AUTO CACHE STRING "Redis TLS (rediss://) support: AUTO, ON or OFF")
set_property(CACHE VB_REDIS_TLS PROPERTY STRINGS AUTO ON OFF)

# vb_require(PREFIX module min_version debian_package what_needs_it); a macro,
# so PREFIX_VERSION and friends stay visible to the caller.
macro(vb_require prefix module min pkg why)
  pkg_check_modules(${prefix} QUIET IMPORTED_TARGET ${module})
  if(NOT ${prefix}_FOUND)
    message(FATAL_ERROR "visionbatch needs ${module} >= ${min} (${why}); pkg-config does not "
                        "find it: install ${pkg} (scripts/install-deps.sh --build)")
  endif()
  if(${prefix}_VERSION VERSION_LESS ${min})
    message(FATAL_ERROR "visionbatch needs ${module} >= ${min} (${why}); found "
                        "${${prefix}_VERSION}: install a newer ${pkg} (Debian 12 or later)")
  endif()
  message(STATUS "${module} ${${prefix}_VERSION} (>= ${min})")
endmacro()

vb_require(CURL libcurl 7.85 libcurl4-openssl-dev "CURLOPT_PROTOCOLS_STR")
vb_require(RDKAFKA rdkafka 2.0 librdkafka-dev "incremental rebalancing")
vb_require(MHD libmicrohttpd 0.9.71 libmicrohttpd-dev "enum MHD_Result")
vb_require(HIREDIS hiredis 0.14 libhiredis-dev "blocking contexts with timeouts")
vb_require(CJSON libcjson 1.7.13 libcjson-dev "cJSON_ParseWithLength")
vb_require(OPENSSL openssl 3.0 libssl-dev "EVP_MAC")

set(VB_HAVE_REDIS_TLS OFF)
if(NOT VB_REDIS_TLS STREQUAL "OFF")
  set(why "")
  if(HIREDIS_VERSION VERSION_LESS 1.0)
    set(why "hiredis ${HIREDIS_VERSION} has no TLS (needs >= 1.0)")
  else()
    pkg_check_modules(HIREDIS_SSL QUIET IMPORTED_TARGET hiredis_ssl)
    if(NOT HIREDIS_SSL_FOUND)
      set(why "hiredis ${HIREDIS_VERSION} was found without its hiredis_ssl library")
    endif()
  endif()
  if(why STREQUAL "")
    set(VB_HAVE_REDIS_TLS ON)
  elseif(VB_REDIS_TLS STREQUAL "ON")
    message(FATAL_ERROR "VB_REDIS_TLS=ON: ${why}; install libhiredis-dev >= 1.0 (Debian 13)")
  endif()
endif()
if(VB_HAVE_REDIS_TLS)
  message(STATUS "Redis TLS (rediss://): on (hiredis ${HIREDIS_VERSION} with hiredis_ssl)")
elseif(VB_REDIS_TLS STREQUAL "OFF")
  message(STATUS "Redis TLS (rediss://): off (VB_REDIS_TLS=OFF)")
else()
  message(STATUS "Redis TLS (rediss://): off: ${why}")
endif()
