# CMake generated Testfile for 
# Source directory: /work/main
# Build directory: /work/main/build-unit
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
add_test([=[test_config]=] "/work/main/build-unit/test_config")
set_tests_properties([=[test_config]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/CMakeLists.txt;69;add_test;/work/main/CMakeLists.txt;0;")
add_test([=[test_units]=] "/work/main/build-unit/test_units")
set_tests_properties([=[test_units]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/CMakeLists.txt;69;add_test;/work/main/CMakeLists.txt;0;")
