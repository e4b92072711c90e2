# CMake toolchain file: cross-compile the native library and the C++ tests for 64-bit ARM Linux (the CPU of
# every Jetson) with Debian's g++-aarch64-linux-gnu, and run what is built (GoogleTest discovery, ctest) under
# qemu-user-static. Used by tools/cross_test_aarch64.sh; CUDA is off in this build (no aarch64 nvcc here).
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DZS_WITH_CUDA=OFF ...
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(ZS_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${ZS_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${ZS_CROSS_TRIPLE}-g++)

# Debian's cross toolchain keeps the target's libraries (libc, libstdc++, libgomp) under /usr/aarch64-linux-gnu.
set(ZS_CROSS_SYSROOT /usr/${ZS_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH ${ZS_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)  # build tools run on the host
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)   # libraries and headers must be the target's
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Target binaries run through the user-mode emulator; -L points its dynamic loader at the target's libraries.
find_program(ZS_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(ZS_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${ZS_QEMU_AARCH64} -L ${ZS_CROSS_SYSROOT})
endif()
