/* The CUDA backend of a build without a CUDA toolkit (CMake compiles this file
 * instead of cuda.c): asking for it is a clear error. */
#include "backend/backend.h"

qb_status qb_backend_cuda(const qb_backend **out)
{
    *out = NULL;
    return qb_fail(QB_EUNSUPPORTED, "this qbert was built without CUDA (no nvcc was found when it was configured)");
}

void qb_backend_cuda_device(int index) { (void)index; }
