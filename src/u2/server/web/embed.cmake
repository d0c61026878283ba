# Writes OUTPUT, a C++ header defining u2::server::kWebPageHtml with the bytes of INPUT (the web
# page), so the server binary carries its page. Run at build time (cmake -P) by
# src/u2/server/CMakeLists.txt whenever the page changes.
file(READ "${INPUT}" content)
set(delimiter "u2page")
string(FIND "${content}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter ')${delimiter}\"'")
endif()
file(WRITE "${OUTPUT}"
  "// Generated from ${INPUT} by embed.cmake at build time; do not edit.\n"
  "#pragma once\n#include <string_view>\n\nnamespace u2::server {\n"
  "inline constexpr std::string_view kWebPageHtml = R\"${delimiter}(${content})${delimiter}\";\n"
  "}  // namespace u2::server\n")
