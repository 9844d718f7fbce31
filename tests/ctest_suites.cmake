# Registers one ctest test per GoogleTest suite of gan-tests (run after each build of gan-tests, see CMakeLists.txt).
#   cmake -D EXE=<gan-tests> -D OUT=<file to write> -D SLOW=<suite>,<suite>,... -P tests/ctest_suites.cmake
# Why per suite and not per test (gtest_discover_tests): each start of the test binary costs 0.65-1 s of LibTorch's
# static initialisers; 273 tests paid that 273 times (~220 of the suite's ~650 CPU seconds), 52 suites pay it 52 times.
# A suite runs in one process, its tests in order; `gan-tests --gtest_filter=Suite.Test` runs one test alone.
# COST orders a parallel ctest (higher first): the number of tests, times 10 for the suites in SLOW (those that start
# other processes: the long ones, which should not be the last to begin). A suite whose tests were all skipped (no GPU,
# no torchrun) is reported as skipped; a partly skipped suite passes and its output lists the skipped tests.
cmake_minimum_required(VERSION 3.18)  # IN_LIST
if(NOT EXE OR NOT OUT)
  message(FATAL_ERROR "usage: cmake -D EXE=<gan-tests> -D OUT=<file> [-D SLOW=<suites>] -P ctest_suites.cmake")
endif()
execute_process(COMMAND "${EXE}" --gtest_list_tests OUTPUT_VARIABLE listing RESULT_VARIABLE rc TIMEOUT 120)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${EXE} --gtest_list_tests failed (${rc}): the suites cannot be registered with ctest")
endif()

string(REPLACE "," ";" SLOW "${SLOW}")
string(REPLACE ";" "\\;" listing "${listing}")
string(REPLACE "\n" ";" lines "${listing}")
set(suites "")
set(suite "")
foreach(line IN LISTS lines)
  if(line MATCHES "^([A-Za-z0-9_/]+)\\.")  # "Suite." (a typed or parameterised suite: "Prefix/Suite.  # TypeParam...")
    set(suite "${CMAKE_MATCH_1}")
    list(APPEND suites "${suite}")
    set("count_${suite}" 0)
  elseif(line MATCHES "^  [A-Za-z0-9_/]+" AND NOT suite STREQUAL "")
    math(EXPR "count_${suite}" "${count_${suite}} + 1")
  endif()
endforeach()
if(NOT suites)
  message(FATAL_ERROR "${EXE} --gtest_list_tests listed no suites")
endif()

set(text "# Written by tests/ctest_suites.cmake from ${EXE} --gtest_list_tests; do not edit.\n")
foreach(suite IN LISTS suites)
  set(cost "${count_${suite}}")
  if(suite IN_LIST SLOW)
    math(EXPR cost "${cost} * 10")
  endif()
  string(APPEND text
    "add_test([=[${suite}]=] [=[${EXE}]=] [=[--gtest_filter=${suite}.*]=])\n"
    "set_tests_properties([=[${suite}]=] PROPERTIES COST ${cost} TIMEOUT 1200"
    " SKIP_REGULAR_EXPRESSION [=[\\[  PASSED  \\] 0 tests]=])\n")
endforeach()
file(WRITE "${OUT}.tmp" "${text}")
file(RENAME "${OUT}.tmp" "${OUT}")
