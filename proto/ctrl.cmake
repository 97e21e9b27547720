# Control protocol codec (proto/ctrl.[ch]): ferryctl <-> ferryd, ferryd <->
# ferryd. Pure, no I/O, no allocation. Included from proto/CMakeLists.txt.
if(NOT TARGET ferry_proto_frame)
  add_library(ferry_proto_frame STATIC ${CMAKE_CURRENT_LIST_DIR}/frame.c)
  target_include_directories(ferry_proto_frame PUBLIC ${CMAKE_SOURCE_DIR})
endif()
add_library(ferry_proto_ctrl STATIC ${CMAKE_CURRENT_LIST_DIR}/ctrl.c)
target_include_directories(ferry_proto_ctrl PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(ferry_proto_ctrl PUBLIC ferry_proto_frame)

if(FERRY_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "FERRY_FUZZ needs clang (-DCMAKE_C_COMPILER=clang)")
  endif()
  # The codec again, instrumented for coverage so the fuzzer sees its branches.
  set(FERRY_CTRL_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
                            -fno-omit-frame-pointer -g)
  add_library(ferry_proto_ctrl_fuzz STATIC ${CMAKE_CURRENT_LIST_DIR}/ctrl.c ${CMAKE_CURRENT_LIST_DIR}/frame.c)
  target_include_directories(ferry_proto_ctrl_fuzz PUBLIC ${CMAKE_SOURCE_DIR})
  target_compile_options(ferry_proto_ctrl_fuzz PRIVATE
    -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer -g)

  add_executable(fuzz_ctrl_msg ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_ctrl_msg.c)
  target_link_libraries(fuzz_ctrl_msg PRIVATE ferry_proto_ctrl_fuzz)
  target_compile_options(fuzz_ctrl_msg PRIVATE ${FERRY_CTRL_FUZZ_FLAGS})
  target_link_options(fuzz_ctrl_msg PRIVATE ${FERRY_CTRL_FUZZ_FLAGS})

  # Smoke run for `ctest -L fuzz`: the committed corpus (valid controls E0
  # included) is the seed set. Long runs: proto/fuzz/run-fuzz.sh ctrl.
  set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz-smoke/fuzz_ctrl_msg)
  file(MAKE_DIRECTORY ${work})
  add_test(NAME fuzz_ctrl_msg_smoke
           COMMAND fuzz_ctrl_msg -max_total_time=5 -artifact_prefix=${work}/ ${work}
                   ${CMAKE_SOURCE_DIR}/tests/corpus/ctrl)
  set_tests_properties(fuzz_ctrl_msg_smoke PROPERTIES LABELS fuzz TIMEOUT 120)
endif()
