# CTest's entries for one test binary, made from its own `--list` when
# ctest reads the test files (-N, -R, -L and runs alike), so a test's
# table line is its only registration: mh_discover_tests() in
# tests/CMakeLists.txt writes the mh_* values below and includes this
# file through the directory's TEST_INCLUDE_FILES (as CMake's
# gtest_discover_tests does in PRE_TEST mode).
#
# `--list` gives a line per test, "NAME KIND BACKENDS [PATTERN]"
# (tests/check.c). Each KIND becomes:
#   each  <prefix>.<backend>.<name> per backend, labels mh_labels and the
#         backend; on mpi, <prefix>.mpi<N>.<name> under mpiexec per job
#         size N in mh_mpi_ranks (none: no mpi entries), and
#         <prefix>.cluster<H>x<R>.<name> through mh_cluster per HxR;
#   once  <prefix>.<name>, on its backend, labels mh_labels and
#         mh_once_labels;
#   dies  <prefix>.mpi2.<name> through mh_dies_command (mpi_rank_dies.sh),
#         which wants PATTERN in the job's output; labels add mpi, fault.
# Every entry: SKIP_RETURN_CODE 77, TIMEOUT mh_timeout (dies: 120, past
# the wrapper's own 60 s), ENVIRONMENT mh_env (mpi: and mh_mpi_env).

cmake_policy(VERSION 3.16) # ctest reads this with no policy set; include() scopes it

if(NOT EXISTS "${mh_exe}")
  add_test(${mh_target}_NOT_BUILT ${mh_target}_NOT_BUILT)
  return()
endif()
execute_process(COMMAND "${mh_exe}" --list OUTPUT_VARIABLE mh_listing
  ERROR_VARIABLE mh_listing_err RESULT_VARIABLE mh_listing_rc TIMEOUT 60)
if(NOT mh_listing_rc EQUAL 0)
  message(FATAL_ERROR "${mh_exe} --list failed (${mh_listing_rc}): ${mh_listing_err}")
endif()

# mh_entry(NAME TIMEOUT LABELS ENV PROCESSORS COMMAND...)
function(mh_entry name timeout labels env processors)
  add_test("${name}" ${ARGN})
  set_tests_properties("${name}" PROPERTIES LABELS "${labels}"
    SKIP_RETURN_CODE 77 TIMEOUT ${timeout})
  if(processors GREATER 1)
    set_tests_properties("${name}" PROPERTIES PROCESSORS ${processors})
  endif()
  if(NOT "${env}" STREQUAL "")
    set_tests_properties("${name}" PROPERTIES ENVIRONMENT "${env}")
  endif()
endfunction()

string(REPLACE "\n" ";" mh_lines "${mh_listing}")
set(mh_mpi_env_all ${mh_env} ${mh_mpi_env})
foreach(mh_line IN LISTS mh_lines)
  if(NOT mh_line MATCHES "^([a-z0-9_]+) (each|once|dies) ([a-z0-9_,-]+) ?(.*)$")
    if(NOT mh_line STREQUAL "")
      message(FATAL_ERROR "${mh_exe} --list: not a test line: '${mh_line}'")
    endif()
    continue()
  endif()
  set(mh_test ${CMAKE_MATCH_1})
  set(mh_kind ${CMAKE_MATCH_2})
  string(REPLACE "," ";" mh_on "${CMAKE_MATCH_3}")
  list(REMOVE_ITEM mh_on "-")
  set(mh_pattern "${CMAKE_MATCH_4}")
  if(mh_kind STREQUAL "once")
    if(mh_on) # its one backend; none built: no entry
      list(GET mh_on 0 mh_backend)
      mh_entry(${mh_prefix}.${mh_test} ${mh_timeout} "${mh_labels};${mh_once_labels}"
        "${mh_env}" 1 "${mh_exe}" ${mh_test} ${mh_backend})
    endif()
  elseif(mh_kind STREQUAL "dies")
    if("mpi" IN_LIST mh_on AND mh_dies_command)
      mh_entry(${mh_prefix}.mpi2.${mh_test} 120 "${mh_labels};mpi;fault"
        "${mh_mpi_env_all}" 2 ${mh_dies_command} ${mh_mpiexec}
        "${mh_exe}" ${mh_test} "${mh_pattern}")
    endif()
  else()
    foreach(mh_backend IN LISTS mh_on)
      if(NOT mh_backend STREQUAL "mpi")
        mh_entry(${mh_prefix}.${mh_backend}.${mh_test} ${mh_timeout}
          "${mh_labels};${mh_backend}" "${mh_env}" 1 "${mh_exe}" ${mh_test} ${mh_backend})
        continue()
      endif()
      foreach(mh_job IN LISTS mh_mpi_ranks) # a map spans the job's ranks
        if(mh_job MATCHES "^([0-9]+)x([0-9]+)$") # H simulated hosts x R ranks
          math(EXPR mh_n "${CMAKE_MATCH_1} * ${CMAKE_MATCH_2}")
          mh_entry(${mh_prefix}.cluster${mh_job}.${mh_test} ${mh_timeout}
            "${mh_labels};mpi;cluster" "${mh_mpi_env_all}" ${mh_n}
            ${mh_cluster} ${CMAKE_MATCH_1} ${CMAKE_MATCH_2}
            "${mh_exe}" ${mh_test} mpi ${mh_n} ${mh_mpiexec_post})
        else()
          mh_entry(${mh_prefix}.mpi${mh_job}.${mh_test} ${mh_timeout} "${mh_labels};mpi"
            "${mh_mpi_env_all}" ${mh_job} ${mh_mpiexec} ${mh_job} ${mh_mpiexec_pre}
            "${mh_exe}" ${mh_test} mpi ${mh_job} ${mh_mpiexec_post})
        endif()
      endforeach()
    endforeach()
  endif()
endforeach()
