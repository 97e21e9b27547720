# ctrl/: the hibernation library (hib.h, qmp.h) and ferry-hib, its command-line driver.
# Included from the top-level CMakeLists (ctrl/CMakeLists.txt belongs to ferryd/ferryctl).
add_library(ferry_hib STATIC
  ctrl/qmp.c
  ctrl/hib.c
  ctrl/hib_state.c
  ctrl/hib_pool.c
  ctrl/hib_qemu.c
  ctrl/hib_idle.c)
target_include_directories(ferry_hib PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(ferry_hib PUBLIC ferry_memsrv_client ferry_common PkgConfig::JANSSON PkgConfig::SODIUM)

add_executable(ferry-hib ctrl/ferry_hib_main.c)
target_link_libraries(ferry-hib PRIVATE ferry_hib)
set_target_properties(ferry-hib PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/ctrl)
