# embed_text.cmake — embeds a text file in a program at build time.
#
#   cmake -DIN=doc.json -DOUT_TEXT=doc.json -DOUT_C=doc.c -DVERSION=1.2.3
#         -DHEADER=api.h -DFUNC=vb_api_openapi_json -P embed_text.cmake
#
# Replaces every @VB_VERSION@ of IN with VERSION, writes that text to
# OUT_TEXT (what the tests read) and to OUT_C as a NUL-terminated byte array
# returned by `const char *FUNC(void)` (declared in HEADER). Nothing is
# escaped by hand: the bytes are written as hexadecimal numbers.
foreach(v IN ITEMS IN OUT_TEXT OUT_C VERSION HEADER FUNC)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "embed_text.cmake: -D${v}=… is required")
  endif()
endforeach()

file(READ "${IN}" text)
string(REPLACE "@VB_VERSION@" "${VERSION}" text "${text}")
file(WRITE "${OUT_TEXT}" "${text}")
file(READ "${OUT_TEXT}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
string(REPEAT "0x..," 16 row) # CMake's regular expressions have no {16}
string(REGEX REPLACE "(${row})" "\\1\n    " hex "${hex}")
get_filename_component(in_name "${IN}" NAME)
file(WRITE "${OUT_C}.tmp"
  "/* Generated at build time from ${in_name} by cmake/embed_text.cmake; do not edit. */\n"
  "#include \"${HEADER}\"\n\n"
  "static const unsigned char text[] = {\n    ${hex}0x00};\n\n"
  "const char *${FUNC}(void)\n{\n    return (const char *)text;\n}\n")
# Only a changed output is rewritten, so an unchanged document recompiles nothing.
configure_file("${OUT_C}.tmp" "${OUT_C}" COPYONLY)
file(REMOVE "${OUT_C}.tmp")
