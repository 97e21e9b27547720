# Migration protocol codec (proto/migrate.[ch], issue 5): the pager's
# migration control socket and the source -> destination stream. Pure, no
# I/O, no allocation. Included from proto/CMakeLists.txt.
if(NOT TARGET ferry_proto_frame)
  add_library(ferry_proto_frame STATIC ${CMAKE_CURRENT_LIST_DIR}/frame.c)
  target_include_directories(ferry_proto_frame PUBLIC ${CMAKE_SOURCE_DIR})
endif()
add_library(ferry_proto_migrate STATIC ${CMAKE_CURRENT_LIST_DIR}/migrate.c)
target_include_directories(ferry_proto_migrate PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(ferry_proto_migrate PUBLIC ferry_proto_frame)

if(FERRY_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "FERRY_FUZZ needs clang (-DCMAKE_C_COMPILER=clang)")
  endif()
  set(FERRY_MIG_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
                           -fno-omit-frame-pointer -g)
  add_library(ferry_proto_migrate_fuzz STATIC ${CMAKE_CURRENT_LIST_DIR}/migrate.c ${CMAKE_CURRENT_LIST_DIR}/frame.c)
  target_include_directories(ferry_proto_migrate_fuzz PUBLIC ${CMAKE_SOURCE_DIR})
  target_compile_options(ferry_proto_migrate_fuzz PRIVATE
    -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer -g)
  add_executable(fuzz_migrate_msg ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_migrate_msg.c)
  target_link_libraries(fuzz_migrate_msg PRIVATE ferry_proto_migrate_fuzz)
  target_compile_options(fuzz_migrate_msg PRIVATE ${FERRY_MIG_FUZZ_FLAGS})
  target_link_options(fuzz_migrate_msg PRIVATE ${FERRY_MIG_FUZZ_FLAGS})
  # Smoke run for `ctest -L fuzz`: the committed corpus (valid E0 files included) seeds it.
  set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz-smoke/fuzz_migrate_msg)
  file(MAKE_DIRECTORY ${work})
  add_test(NAME fuzz_migrate_msg_smoke
           COMMAND fuzz_migrate_msg -max_total_time=5 -artifact_prefix=${work}/ ${work}
                   ${CMAKE_SOURCE_DIR}/tests/corpus/migrate)
  set_tests_properties(fuzz_migrate_msg_smoke PROPERTIES LABELS fuzz TIMEOUT 120)
endif()
