/* Qualifiers for code that compiles both as CUDA device code and as plain host C++
 * (the tensor-core kernels' bodies also run in the host emulation of tests/simt.h). */
#ifndef QBERT_CUDA_PORTABLE_CUH
#define QBERT_CUDA_PORTABLE_CUH

#if defined(__CUDACC__)
#define QB_HD __host__ __device__ __forceinline__  /* host and device */
#define QB_DEV __device__ __forceinline__          /* device (and the emulation) */
#define QB_UNROLL _Pragma("unroll")
#define QB_NO_UNROLL _Pragma("unroll 1")
#else
#define QB_HD inline
#define QB_DEV inline
#define QB_UNROLL
#define QB_NO_UNROLL
#endif

#endif
