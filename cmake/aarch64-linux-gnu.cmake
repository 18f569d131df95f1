# aarch64-linux-gnu.cmake — a CMake toolchain file for cross-building fewmul
# for 64-bit Arm Linux (aarch64) on a Debian x86-64 machine with
# gcc-aarch64-linux-gnu and qemu-user, and arm64 zlib and cmocka
# (dpkg --add-architecture arm64; zlib1g-dev:arm64 libcmocka-dev:arm64).
# ctest runs each test program under qemu-aarch64 (CMAKE_CROSSCOMPILING_EMULATOR).
# Configure the portable build (README, "Building for aarch64"):
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#     -DFEWMUL_USE_BLAS=OFF -DFEWMUL_NATIVE=OFF -DFEWMUL_MPI=OFF
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
# Libraries and headers of the target only: the arm64 packages' multiarch
# folders (/usr/lib/aarch64-linux-gnu) and the cross toolchain's own prefix;
# programs (objdump, python3) from the host.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# the target's dynamic loader and libraries: qemu looks under -L first
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;/usr/aarch64-linux-gnu)
