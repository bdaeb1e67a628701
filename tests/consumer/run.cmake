# Install the build into a fresh prefix, then build and run a consumer
# against it twice: with find_package(manyhands) and with pkg-config.
# -DBUILD_DIR -DSOURCE_DIR -DWORK_DIR -DC_COMPILER
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGV}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# find_package
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/cmake-build
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_C_COMPILER=${C_COMPILER}
    -DCMAKE_BUILD_RPATH=${prefix}/lib)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/cmake-build)
run(${WORK_DIR}/cmake-build/consumer)
run(${WORK_DIR}/cmake-build/consumer_static)

# pkg-config
find_program(PKG_CONFIG pkg-config REQUIRED)
file(GLOB pcdirs ${prefix}/lib*/pkgconfig ${prefix}/lib/*/pkgconfig)
string(REPLACE ";" ":" pcpath "${pcdirs}")
set(ENV{PKG_CONFIG_PATH} ${pcpath})
execute_process(COMMAND ${PKG_CONFIG} --cflags --libs manyhands
  OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not know manyhands (${pcpath})")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
file(GLOB libdirs ${prefix}/lib ${prefix}/lib/*-linux-gnu ${prefix}/lib64)
list(GET libdirs 0 libdir)
run(${C_COMPILER} ${SOURCE_DIR}/main.c ${flags} -Wl,-rpath,${libdir}
    -o ${WORK_DIR}/consumer-pc)
run(${WORK_DIR}/consumer-pc)
message(STATUS "consumer ok with find_package and pkg-config")
