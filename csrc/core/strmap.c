/* String -> dense index maps (include/qbert/core.h): open addressing with linear
 * probing over slots that hold index + 1, keys copied into the map. */
#include "qbert/core.h"

#include <stdlib.h>
#include <string.h>

struct qb_strmap {
    char **keys;            /* (cap) in insertion order, n used */
    size_t *lens;
    int n, cap;
    int *slots;             /* (nslots): 0 empty, else index + 1 */
    size_t nslots;          /* power of two, at least twice n */
};

/* FNV-1a: short words, no adversary. */
static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

qb_strmap *qb_strmap_new(void) { return calloc(1, sizeof(qb_strmap)); }

void qb_strmap_free(qb_strmap *m)
{
    if (!m) return;
    for (int i = 0; i < m->n; i++) free(m->keys[i]);
    free(m->keys), free(m->lens), free(m->slots), free(m);
}

/* The slot of key (holding it, or the empty one where it would go). */
static size_t probe(const qb_strmap *m, const char *key, size_t len)
{
    size_t h = fnv1a(key, len) & (m->nslots - 1);
    for (; m->slots[h]; h = (h + 1) & (m->nslots - 1)) {
        const int i = m->slots[h] - 1;
        if (m->lens[i] == len && memcmp(m->keys[i], key, len) == 0) break;
    }
    return h;
}

static bool grow(qb_strmap *m)
{
    const size_t ns = m->nslots ? 2 * m->nslots : 1024;
    int *slots = calloc(ns, sizeof *slots);
    char **keys = slots ? realloc(m->keys, ns / 2 * sizeof *keys) : NULL;
    if (keys) m->keys = keys;
    size_t *lens = keys ? realloc(m->lens, ns / 2 * sizeof *lens) : NULL;
    if (lens) m->lens = lens;
    if (!lens) {
        free(slots);
        return false;
    }
    free(m->slots);
    m->slots = slots, m->nslots = ns, m->cap = (int)(ns / 2);
    for (int i = 0; i < m->n; i++) m->slots[probe(m, m->keys[i], m->lens[i])] = i + 1;
    return true;
}

int qb_strmap_find(const qb_strmap *m, const char *key, size_t len)
{
    return m->nslots ? m->slots[probe(m, key, len)] - 1 : -1;
}

int qb_strmap_intern(qb_strmap *m, const char *key, size_t len)
{
    if (m->n + 1 > m->cap && !grow(m)) return -1;
    const size_t h = probe(m, key, len);
    if (m->slots[h]) return m->slots[h] - 1;
    char *copy = malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, key, len);
    copy[len] = '\0';
    m->keys[m->n] = copy, m->lens[m->n] = len;
    m->slots[h] = ++m->n;
    return m->n - 1;
}

int qb_strmap_count(const qb_strmap *m) { return m->n; }

const char *qb_strmap_key(const qb_strmap *m, int index) { return m->keys[index]; }
