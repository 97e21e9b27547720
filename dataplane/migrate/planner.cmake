# The phase planner (planner.h): pure, no I/O; and the access sampler that
# feeds it from userfaultfd faults (access_sampler.h).
add_library(ferry_planner STATIC
  ${CMAKE_CURRENT_LIST_DIR}/planner.c)
target_include_directories(ferry_planner PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(ferry_planner PUBLIC ferry_common)
