/* The CPU backend: the op table filled with the kernels of csrc/cpu/. Host memory
 * is device memory here, so allocation is qb_malloc and the copies are memcpy. */
#include "backend/backend.h"

#include <string.h>

#include "cpu/cpu.h"
#include "qbert/core.h"

static void cpu_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);  /* memcpy with NULL pointers is undefined even for 0 */
}

static const qb_backend cpu_backend = {
    .name = "cpu",
    .alloc = qb_malloc,
    .free = qb_free,
    .linear = qb_cpu_linear,
    .layernorm = qb_cpu_layernorm,
    .gelu = qb_cpu_gelu,
    .tanh = qb_cpu_tanh,
    .attention = qb_cpu_attention,
    .embedding = qb_cpu_embedding,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .copy = cpu_copy,
};

const qb_backend *qb_backend_cpu(void) { return &cpu_backend; }
