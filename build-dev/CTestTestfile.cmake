# CMake generated Testfile for 
# Source directory: /work/wt/merge
# Build directory: /work/wt/merge/build-dev
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
include("/work/wt/merge/build-dev/zsseg_cpp_tests_4fba942f_include.cmake")
