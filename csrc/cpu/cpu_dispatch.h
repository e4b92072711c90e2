// Instruction-set dispatch for the hot CPU loops. Wheels are compiled for the x86-64 baseline (SSE2); on
// x86-64 Linux with GCC/Clang the functions marked ZS_CPU_CLONES get an extra AVX2+FMA clone that the loader
// picks on CPUs that have it (ifunc). Helpers they call are inlined into each clone (ZS_CPU_INLINE), so their
// loops are vectorised for the clone's instruction set. Elsewhere (aarch64 / Jetson: NEON is baseline) the
// macros are empty.
#pragma once

// GCC < 12 cannot dispatch on the "arch=x86-64-v3" level (no resolver for it): baseline code only there (e.g.
// Ubuntu 22.04's default g++ 11), slower but the same results.
#if defined(__x86_64__) && defined(__linux__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)) && \
    !defined(__CUDACC__) && !defined(ZS_NO_CPU_CLONES)
#define ZS_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
// Loops bound by arithmetic rather than by gathers or memory (segment_windows' calibration and output blend) also
// get an AVX-512 (x86-64-v4) clone. The kernels are built without FMA contraction (CMakeLists.txt), so every clone
// computes the same bits.
#define ZS_CPU_CLONES_AVX512 __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define ZS_CPU_INLINE inline __attribute__((always_inline))
#else
#define ZS_CPU_CLONES
#define ZS_CPU_CLONES_AVX512
#define ZS_CPU_INLINE inline
#endif
