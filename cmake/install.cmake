# cmake/install.cmake: install rules and the pkg-config file of libnnrt (ABI.md §4).
# `cmake --install BUILD [--prefix P]` installs
#   bin/nnc, lib/libnnrt.a, include/nnc/model.h, lib/pkgconfig/nnrt.pc
# and `cc app.c model.o $(pkg-config --cflags --libs nnrt)` links an embedded model.
# Included from CMakeLists.txt; the rules are deferred to the end of the top directory so
# the include may come before or after the targets are defined.
include(GNUInstallDirs)

function(nnc_install_rules)
  # checkpoint.c parses safetensors headers with cJSON (Debian's libcjson-dev).
  target_link_libraries(nnrt PUBLIC cjson)
  if(TARGET nnc)
    install(TARGETS nnc nnc-train RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
  install(TARGETS nnrt ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(FILES ${CMAKE_SOURCE_DIR}/include/nnc/model.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/nnc)
  # nnrt.pc finds its prefix from its own place, so `cmake --install --prefix P` works.
  file(RELATIVE_PATH NNRT_PC_TO_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
  configure_file(${CMAKE_SOURCE_DIR}/cmake/nnrt.pc.in ${CMAKE_BINARY_DIR}/nnrt.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/nnrt.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endfunction()

cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL nnc_install_rules)
