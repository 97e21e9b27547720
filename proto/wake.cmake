# Wake protocol codec (proto/wake.[ch]): ferryd <-> ferry-wake, the accept
# node of paper 004. Pure, no I/O, no allocation. Included from
# proto/CMakeLists.txt.
if(NOT TARGET ferry_proto_frame)
  add_library(ferry_proto_frame STATIC ${CMAKE_CURRENT_LIST_DIR}/frame.c)
  target_include_directories(ferry_proto_frame PUBLIC ${CMAKE_SOURCE_DIR})
endif()
add_library(ferry_proto_wake STATIC ${CMAKE_CURRENT_LIST_DIR}/wake.c)
target_include_directories(ferry_proto_wake PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(ferry_proto_wake PUBLIC ferry_proto_frame)

if(FERRY_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "FERRY_FUZZ needs clang (-DCMAKE_C_COMPILER=clang)")
  endif()
  # The codec again, instrumented for coverage so the fuzzer sees its branches.
  set(FERRY_WAKE_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
                            -fno-omit-frame-pointer -g)
  add_library(ferry_proto_wake_fuzz STATIC ${CMAKE_CURRENT_LIST_DIR}/wake.c ${CMAKE_CURRENT_LIST_DIR}/frame.c)
  target_include_directories(ferry_proto_wake_fuzz PUBLIC ${CMAKE_SOURCE_DIR})
  target_compile_options(ferry_proto_wake_fuzz PRIVATE
    -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer -g)

  add_executable(fuzz_wake_msg ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_wake_msg.c)
  target_link_libraries(fuzz_wake_msg PRIVATE ferry_proto_wake_fuzz)
  target_compile_options(fuzz_wake_msg PRIVATE ${FERRY_WAKE_FUZZ_FLAGS})
  target_link_options(fuzz_wake_msg PRIVATE ${FERRY_WAKE_FUZZ_FLAGS})

  # Smoke run for `ctest -L fuzz`: the committed corpus (valid controls
  # E0 included) is the seed set. Long runs: run it by hand with -max_total_time.
  set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz-smoke/fuzz_wake_msg)
  file(MAKE_DIRECTORY ${work})
  add_test(NAME fuzz_wake_msg_smoke
           COMMAND fuzz_wake_msg -max_total_time=5 -artifact_prefix=${work}/ ${work}
                   ${CMAKE_SOURCE_DIR}/tests/corpus/wake)
  set_tests_properties(fuzz_wake_msg_smoke PROPERTIES LABELS fuzz TIMEOUT 120)
endif()
