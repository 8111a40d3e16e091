/* CPUID feature detection. A feature counts only when the OS also saves its
 * register state (XGETBV): AVX needs XMM|YMM, AVX-512 also opmask|ZMM, AMX tile data. */
#include "qbert/core.h"

#include <cpuid.h>

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

unsigned qb_cpu_features(void)
{
    static int done;
    static unsigned feats;
    if (done) return feats;
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) goto out;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1;
    if (!osxsave) goto out;
    uint64_t xcr0 = xgetbv0();
    int os_avx = (xcr0 & 0x6) == 0x6;
    int os_avx512 = (xcr0 & 0xe6) == 0xe6;
    int os_amx = (xcr0 & 0x60000) == 0x60000;
    if (__get_cpuid_max(0, NULL) < 7) goto out;
    __cpuid_count(7, 0, a, b, c, d);
    if (os_avx && ((b >> 5) & 1)) f |= QB_CPU_AVX2;
    if (os_avx && fma) f |= QB_CPU_FMA;
    if (os_avx512 && ((b >> 16) & 1)) f |= QB_CPU_AVX512F;
    if (os_avx512 && ((b >> 30) & 1)) f |= QB_CPU_AVX512BW;
    if (os_avx512 && ((c >> 11) & 1)) f |= QB_CPU_AVX512VNNI;
    if (os_amx && ((d >> 25) & 1)) f |= QB_CPU_AMX_INT8;
    __cpuid_count(7, 1, a, b, c, d);
    if (os_avx && ((a >> 4) & 1)) f |= QB_CPU_AVXVNNI;
out:
    feats = f;
    done = 1;
    return feats;
}
