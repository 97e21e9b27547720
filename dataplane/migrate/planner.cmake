# The phase planner (planner.h): pure, no I/O; and the access sampler that
# feeds it from userfaultfd faults (access_sampler.h).
add_library(ferry_planner STATIC
  ${CMAKE_CURRENT_LIST_DIR}/planner.c)
target_include_directories(ferry_planner PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(ferry_planner PUBLIC ferry_common)

# The access sampler: userfaultfd (MINOR + sync WP) faults -> planner_note().
add_library(ferry_access_sampler STATIC
  ${CMAKE_CURRENT_LIST_DIR}/access_sampler.c)
target_include_directories(ferry_access_sampler PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(ferry_access_sampler PUBLIC ferry_planner ferry_vmm ferry_common)
