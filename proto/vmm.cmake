# VMM socket protocol codec (proto/vmm.[ch]): binary messages + the Firecracker
# UFFD handshake (JSON, via jansson). Included from proto/CMakeLists.txt.
if(NOT TARGET ferry_proto_frame)
  add_library(ferry_proto_frame STATIC ${CMAKE_CURRENT_LIST_DIR}/frame.c)
  target_include_directories(ferry_proto_frame PUBLIC ${CMAKE_SOURCE_DIR})
endif()
add_library(ferry_proto_vmm STATIC ${CMAKE_CURRENT_LIST_DIR}/vmm.c)
target_include_directories(ferry_proto_vmm PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(ferry_proto_vmm PUBLIC ferry_proto_frame)
target_link_libraries(ferry_proto_vmm PUBLIC PkgConfig::JANSSON)

if(FERRY_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "FERRY_FUZZ needs clang (-DCMAKE_C_COMPILER=clang)")
  endif()
  # The codec again, instrumented for coverage so the fuzzers see its branches.
  set(FERRY_VMM_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
                           -fno-omit-frame-pointer -g)
  add_library(ferry_proto_vmm_fuzz STATIC ${CMAKE_CURRENT_LIST_DIR}/vmm.c ${CMAKE_CURRENT_LIST_DIR}/frame.c)
  target_include_directories(ferry_proto_vmm_fuzz PUBLIC ${CMAKE_SOURCE_DIR})
  target_link_libraries(ferry_proto_vmm_fuzz PUBLIC PkgConfig::JANSSON)
  target_compile_options(ferry_proto_vmm_fuzz PRIVATE
    -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer -g)

  foreach(target fuzz_vmm_msg fuzz_vmm_firecracker)
    add_executable(${target} ${CMAKE_CURRENT_LIST_DIR}/fuzz/${target}.c)
    target_link_libraries(${target} PRIVATE ferry_proto_vmm_fuzz)
    target_compile_options(${target} PRIVATE ${FERRY_VMM_FUZZ_FLAGS})
    target_link_options(${target} PRIVATE ${FERRY_VMM_FUZZ_FLAGS})
  endforeach()

  # Smoke run in ctest (label fuzz): a few seconds from the committed corpus,
  # server requests included. Long runs: proto/fuzz/run-fuzz.sh.
  set(vmm_seeds ${CMAKE_CURRENT_BINARY_DIR}/fuzz-seeds/vmm)
  set(vmm_work ${CMAKE_CURRENT_BINARY_DIR}/fuzz-smoke/fuzz_vmm_msg)
  file(MAKE_DIRECTORY ${vmm_work})
  add_test(NAME vmm_fuzz_seeds
           COMMAND ${CMAKE_CURRENT_LIST_DIR}/fuzz/vmm_seeds.sh ${CMAKE_SOURCE_DIR} ${vmm_seeds})
  set_tests_properties(vmm_fuzz_seeds PROPERTIES FIXTURES_SETUP vmm_fuzz_seeds LABELS fuzz)
  add_test(NAME fuzz_vmm_msg_smoke
           COMMAND fuzz_vmm_msg -max_total_time=5 -max_len=70000 -artifact_prefix=${vmm_work}/
                   ${vmm_work} ${vmm_seeds})
  set_tests_properties(fuzz_vmm_msg_smoke PROPERTIES
                       FIXTURES_REQUIRED vmm_fuzz_seeds LABELS fuzz TIMEOUT 120)
endif()
