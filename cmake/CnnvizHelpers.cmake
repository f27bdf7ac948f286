# Helpers in the spirit of COLMAP's CMakeHelper: one call per library or test.

# cnnviz_add_library(NAME name ALIAS alias SRCS ... PUBLIC_LINK_LIBS ... PRIVATE_LINK_LIBS ...)
function(cnnviz_add_library)
  cmake_parse_arguments(ARG "" "NAME;ALIAS" "SRCS;PUBLIC_LINK_LIBS;PRIVATE_LINK_LIBS" ${ARGN})
  add_library(${ARG_NAME} ${ARG_SRCS})
  add_library(${ARG_ALIAS} ALIAS ${ARG_NAME})
  target_include_directories(${ARG_NAME} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include>)
  target_link_libraries(${ARG_NAME} PUBLIC ${ARG_PUBLIC_LINK_LIBS} PRIVATE ${ARG_PRIVATE_LINK_LIBS})
  set_target_properties(${ARG_NAME} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()

# cnnviz_add_test_sources(TARGET t SRCS ...) appends sources to the single test binary, so LibTorch's
# slow headers are compiled once per file and linked once.
function(cnnviz_add_test_sources)
  cmake_parse_arguments(ARG "" "TARGET" "SRCS" ${ARGN})
  target_sources(${ARG_TARGET} PRIVATE ${ARG_SRCS})
endfunction()
