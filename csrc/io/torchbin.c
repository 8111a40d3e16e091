/* PyTorch pytorch_model.bin reader: the zip format torch.save has written since 1.6.
 *
 * ARCHIVE/data.pkl   the pickled state dict (protocol 2; protocol 4 is accepted too)
 * ARCHIVE/data/KEY   raw little-endian storage bytes, one entry per storage
 * ARCHIVE/byteorder  "little" (torch >= 2.1 only)
 *
 * data.pkl is run by a small pickle machine that knows only the opcodes and the
 * globals a state dict needs; any other global (os.system, builtins.eval ...) is
 * refused before anything could be called, and nothing is ever "called" anyway:
 * the allowed globals are interpreted here. A tensor is
 *   _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, metadata])
 * with the storage a persistent id ('storage', torch.XStorage, key, location, numel).
 * Several tensors may share one storage (tied weights, views); each is copied out
 * (strided tensors are materialised contiguous) and floating types become F32.
 *
 * Everything is bounded: data.pkl size, stack depth, marks, memo indices, object
 * count, and the total bytes the tensors may expand to. Objects live in a registry
 * and are freed together, so no recursion is needed anywhere. */
#include "qbert/io.h"

#include "io/weightio.h"
#include "io/zip.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PK_MAX_PICKLE ((size_t)64 << 20) /* a BERT-base data.pkl is ~30 KB */
#define PK_MAX_STACK ((size_t)1 << 20)
#define PK_MAX_MARKS ((size_t)1024)
#define PK_MAX_MEMO ((uint64_t)1 << 20)
#define PK_MAX_OBJECTS ((size_t)1 << 21)
#define PK_MAX_GLOBAL_LINE 256

typedef enum {
    PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_TUPLE, PV_LIST, PV_DICT, PV_GLOBAL, PV_STORAGE, PV_TENSOR,
} pv_kind;

/* With their article, for messages: "entry 'n' is an int". */
static const char *const pv_kind_names[] = {
    "None",   "a bool", "an int",   "a float",   "a str",    "a tuple",
    "a list", "a dict", "a global", "a storage", "a tensor",
};

typedef enum { G_ORDERED_DICT, G_REBUILD_TENSOR, G_REBUILD_PARAMETER, G_STORAGE } global_kind;

/* The only globals a state dict may name. */
static const struct {
    const char *module, *name;
    global_kind kind;
    qb_elem elem; /* G_STORAGE only */
} allowed_globals[] = {
    {"collections", "OrderedDict", G_ORDERED_DICT, QB_ELEM_F32},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR, QB_ELEM_F32},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAMETER, QB_ELEM_F32},
    {"torch", "FloatStorage", G_STORAGE, QB_ELEM_F32},
    {"torch", "HalfStorage", G_STORAGE, QB_ELEM_F16},
    {"torch", "BFloat16Storage", G_STORAGE, QB_ELEM_BF16},
    {"torch", "DoubleStorage", G_STORAGE, QB_ELEM_F64},
    {"torch", "LongStorage", G_STORAGE, QB_ELEM_I64},
    {"torch", "IntStorage", G_STORAGE, QB_ELEM_I32},
    {"torch", "ByteStorage", G_STORAGE, QB_ELEM_U8},
    {"torch", "CharStorage", G_STORAGE, QB_ELEM_I8},
};

typedef struct pv pv;
struct pv {
    pv_kind kind;
    union {
        bool b;
        int64_t i;
        double f;
        struct { char *s; size_t len; } str;        /* NUL-terminated, no inner NUL */
        struct { pv **items; size_t n, cap; } seq;  /* tuple, list; dict as key, value pairs */
        int global;                                  /* index into allowed_globals */
        struct {
            qb_elem elem;
            const char *key;     /* owned by the key's PV_STR */
            int64_t numel;
        } storage;
        struct {
            pv *storage;
            int64_t offset;
            int ndim;
            int64_t size[QB_MAX_DIMS], stride[QB_MAX_DIMS];
        } tensor;
    } u;
};

typedef struct {
    const char *path;
    const unsigned char *start, *p, *end, *op; /* op: the opcode being run, for messages */
    pv **stack;
    size_t sp, stack_cap;
    size_t *marks; /* stack heights saved by MARK */
    size_t nmarks, marks_cap;
    pv **memo;
    size_t memo_cap, memo_count;
    pv **objs; /* every object, freed together */
    size_t nobjs, objs_cap;
} vm;

/* A data.pkl error, located by the offset of the opcode that failed. */
static qb_status pk_fail(vm *m, qb_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static qb_status pk_fail(vm *m, qb_status code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qb_fail(code, "%s: data.pkl byte %td: %s", m->path, m->op - m->start, msg);
}

/* Doubles *cap until it holds `need` elements of `size` bytes, never past `limit`. */
static bool grow(void **arr, size_t *cap, size_t need, size_t size, size_t limit)
{
    if (need <= *cap) return true;
    if (need > limit) return false;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    if (c > limit) c = limit;
    void *p = realloc(*arr, c * size);
    if (!p) return false;
    *arr = p;
    *cap = c;
    return true;
}

static qb_status new_pv(vm *m, pv_kind kind, pv **out)
{
    if (!grow((void **)&m->objs, &m->objs_cap, m->nobjs + 1, sizeof *m->objs, PK_MAX_OBJECTS))
        return pk_fail(m, QB_EFORMAT, "more than %zu objects (or out of memory)", PK_MAX_OBJECTS);
    pv *v = calloc(1, sizeof *v);
    if (!v) return pk_fail(m, QB_ENOMEM, "out of memory");
    v->kind = kind;
    m->objs[m->nobjs++] = v;
    *out = v;
    return QB_OK;
}

static void vm_free(vm *m)
{
    for (size_t i = 0; i < m->nobjs; i++) {
        pv *v = m->objs[i];
        if (v->kind == PV_STR) free(v->u.str.s);
        if (v->kind == PV_TUPLE || v->kind == PV_LIST || v->kind == PV_DICT) free(v->u.seq.items);
        free(v);
    }
    free(m->objs);
    free(m->stack);
    free(m->marks);
    free(m->memo);
}

/* The lowest stack slot the current MARK frame may pop. */
static size_t frame_floor(const vm *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

static qb_status push(vm *m, pv *v)
{
    if (!grow((void **)&m->stack, &m->stack_cap, m->sp + 1, sizeof *m->stack, PK_MAX_STACK))
        return pk_fail(m, QB_EFORMAT, "stack deeper than %zu (or out of memory)", PK_MAX_STACK);
    m->stack[m->sp++] = v;
    return QB_OK;
}

static qb_status pop(vm *m, pv **v)
{
    if (m->sp <= frame_floor(m)) return pk_fail(m, QB_EFORMAT, "stack underflow");
    *v = m->stack[--m->sp];
    return QB_OK;
}

static qb_status top(vm *m, pv **v)
{
    if (m->sp <= frame_floor(m)) return pk_fail(m, QB_EFORMAT, "stack underflow");
    *v = m->stack[m->sp - 1];
    return QB_OK;
}

/* Ends the current MARK frame: its items are stack[*base .. sp). */
static qb_status pop_mark(vm *m, size_t *base)
{
    if (m->nmarks == 0) return pk_fail(m, QB_EFORMAT, "no MARK to pop");
    *base = m->marks[--m->nmarks];
    return QB_OK;
}

static qb_status append_item(vm *m, pv *seq, pv *item)
{
    if (!grow((void **)&seq->u.seq.items, &seq->u.seq.cap, seq->u.seq.n + 1, sizeof(pv *), PK_MAX_OBJECTS * 2))
        return pk_fail(m, QB_EFORMAT, "cannot grow %s (too many items or out of memory)",
                       pv_kind_names[seq->kind]);
    seq->u.seq.items[seq->u.seq.n++] = item;
    return QB_OK;
}

/* A tuple or list of stack[base .. sp); the items leave the stack. */
static qb_status make_seq(vm *m, pv_kind kind, size_t base, pv **out)
{
    qb_status st = new_pv(m, kind, out);
    for (size_t i = base; i < m->sp && !st; i++) st = append_item(m, *out, m->stack[i]);
    m->sp = base;
    return st;
}

static qb_status need(vm *m, size_t n)
{
    if ((size_t)(m->end - m->p) < n) return pk_fail(m, QB_EFORMAT, "truncated: %zu more bytes expected", n);
    return QB_OK;
}

static uint64_t read_le(vm *m, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | m->p[i];
    m->p += n;
    return v;
}

static qb_status push_str(vm *m, size_t len)
{
    qb_status st = need(m, len);
    if (st) return st;
    if (memchr(m->p, 0, len)) return pk_fail(m, QB_EFORMAT, "string contains a NUL byte");
    pv *v;
    if ((st = new_pv(m, PV_STR, &v))) return st;
    v->u.str.s = malloc(len + 1);
    if (!v->u.str.s) return pk_fail(m, QB_ENOMEM, "cannot allocate a %zu-byte string", len);
    memcpy(v->u.str.s, m->p, len);
    v->u.str.s[len] = '\0';
    v->u.str.len = len;
    m->p += len;
    return push(m, v);
}

static qb_status push_int(vm *m, int64_t i)
{
    pv *v;
    qb_status st = new_pv(m, PV_INT, &v);
    if (st) return st;
    v->u.i = i;
    return push(m, v);
}

static qb_status push_new(vm *m, pv_kind kind)
{
    pv *v;
    qb_status st = new_pv(m, kind, &v);
    return st ? st : push(m, v);
}

/* Looks a global up in the allowlist; everything else is refused here. */
static qb_status push_global(vm *m, const char *module, size_t mlen, const char *name, size_t nlen)
{
    for (size_t g = 0; g < sizeof allowed_globals / sizeof allowed_globals[0]; g++) {
        if (strlen(allowed_globals[g].module) == mlen && memcmp(allowed_globals[g].module, module, mlen) == 0 &&
            strlen(allowed_globals[g].name) == nlen && memcmp(allowed_globals[g].name, name, nlen) == 0) {
            pv *v;
            qb_status st = new_pv(m, PV_GLOBAL, &v);
            if (st) return st;
            v->u.global = (int)g;
            return push(m, v);
        }
    }
    return pk_fail(m, QB_EFORMAT, "not a plain state dict: global %.*s.%.*s is not allowed",
                   (int)(mlen > 100 ? 100 : mlen), module, (int)(nlen > 100 ? 100 : nlen), name);
}

/* GLOBAL: "module\nname\n" as two text lines. */
static qb_status op_global(vm *m)
{
    const char *line[2];
    size_t len[2];
    for (int k = 0; k < 2; k++) {
        size_t left = (size_t)(m->end - m->p), max = left < PK_MAX_GLOBAL_LINE ? left : PK_MAX_GLOBAL_LINE;
        const unsigned char *nl = memchr(m->p, '\n', max);
        if (!nl)
            return pk_fail(m, QB_EFORMAT, "GLOBAL name is not a line of at most %d bytes", PK_MAX_GLOBAL_LINE);
        line[k] = (const char *)m->p;
        len[k] = (size_t)(nl - m->p);
        m->p = nl + 1;
    }
    return push_global(m, line[0], len[0], line[1], len[1]);
}

/* STACK_GLOBAL (protocol 4): module and name are the two strings on the stack. */
static qb_status op_stack_global(vm *m)
{
    pv *name = NULL, *module = NULL;
    qb_status st = pop(m, &name);
    if (!st) st = pop(m, &module);
    if (st) return st;
    if (module->kind != PV_STR || name->kind != PV_STR)
        return pk_fail(m, QB_EFORMAT, "STACK_GLOBAL needs two strings");
    return push_global(m, module->u.str.s, module->u.str.len, name->u.str.s, name->u.str.len);
}

static bool is_int_tuple(const pv *v, int max_len)
{
    if (v->kind != PV_TUPLE || v->u.seq.n > (size_t)max_len) return false;
    for (size_t i = 0; i < v->u.seq.n; i++)
        if (v->u.seq.items[i]->kind != PV_INT || v->u.seq.items[i]->u.i < 0) return false;
    return true;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) */
static qb_status rebuild_tensor(vm *m, const pv *args, pv **out)
{
    size_t n = args->u.seq.n;
    pv *const *a = args->u.seq.items;
    if (n != 6 && n != 7)
        return pk_fail(m, QB_EFORMAT, "_rebuild_tensor_v2 takes 6 or 7 arguments, got %zu", n);
    if (a[0]->kind != PV_STORAGE)
        return pk_fail(m, QB_EFORMAT, "_rebuild_tensor_v2: argument 1 is %s, not a storage",
                       pv_kind_names[a[0]->kind]);
    if (a[1]->kind != PV_INT || a[1]->u.i < 0)
        return pk_fail(m, QB_EFORMAT, "_rebuild_tensor_v2: storage offset is not a non-negative int");
    if (a[2]->kind == PV_TUPLE && a[2]->u.seq.n > QB_MAX_DIMS)
        return pk_fail(m, QB_EUNSUPPORTED, "_rebuild_tensor_v2: %zu dimensions (qbert supports at most %d)",
                       a[2]->u.seq.n, QB_MAX_DIMS);
    if (!is_int_tuple(a[2], QB_MAX_DIMS) || !is_int_tuple(a[3], QB_MAX_DIMS) || a[2]->u.seq.n != a[3]->u.seq.n)
        return pk_fail(m, QB_EFORMAT, "_rebuild_tensor_v2: size and stride are not two tuples of "
                       "non-negative ints of the same length");
    if (a[4]->kind != PV_BOOL) return pk_fail(m, QB_EFORMAT, "_rebuild_tensor_v2: requires_grad is not a bool");
    if (a[5]->kind != PV_DICT)
        return pk_fail(m, QB_EFORMAT, "_rebuild_tensor_v2: backward hooks are not a dict");
    if (n == 7 && a[6]->kind != PV_DICT && a[6]->kind != PV_NONE)
        return pk_fail(m, QB_EFORMAT, "_rebuild_tensor_v2: metadata is not a dict");
    qb_status st = new_pv(m, PV_TENSOR, out);
    if (st) return st;
    (*out)->u.tensor.storage = a[0];
    (*out)->u.tensor.offset = a[1]->u.i;
    (*out)->u.tensor.ndim = (int)a[2]->u.seq.n;
    for (size_t d = 0; d < a[2]->u.seq.n; d++) {
        (*out)->u.tensor.size[d] = a[2]->u.seq.items[d]->u.i;
        (*out)->u.tensor.stride[d] = a[3]->u.seq.items[d]->u.i;
    }
    return QB_OK;
}

static qb_status op_reduce(vm *m)
{
    pv *args = NULL, *fn = NULL, *res = NULL;
    qb_status st = pop(m, &args);
    if (!st) st = pop(m, &fn);
    if (st) return st;
    if (fn->kind != PV_GLOBAL) return pk_fail(m, QB_EFORMAT, "REDUCE calls %s", pv_kind_names[fn->kind]);
    if (args->kind != PV_TUPLE)
        return pk_fail(m, QB_EFORMAT, "REDUCE arguments are %s", pv_kind_names[args->kind]);
    size_t n = args->u.seq.n;
    switch (allowed_globals[fn->u.global].kind) {
    case G_ORDERED_DICT:
        if (n != 0) return pk_fail(m, QB_EFORMAT, "OrderedDict() with arguments");
        st = new_pv(m, PV_DICT, &res);
        break;
    case G_REBUILD_TENSOR:
        st = rebuild_tensor(m, args, &res);
        break;
    case G_REBUILD_PARAMETER: /* _rebuild_parameter(data, requires_grad, backward_hooks): the data */
        if (n != 3 || args->u.seq.items[0]->kind != PV_TENSOR)
            return pk_fail(m, QB_EFORMAT, "_rebuild_parameter needs (tensor, requires_grad, hooks)");
        res = args->u.seq.items[0];
        break;
    case G_STORAGE:
        return pk_fail(m, QB_EFORMAT, "not a plain state dict: torch.%s is called",
                       allowed_globals[fn->u.global].name);
    }
    return st ? st : push(m, res);
}

/* BINPERSID: ('storage', torch.XStorage, key, location, numel) names a zip entry. */
static qb_status op_persid(vm *m)
{
    pv *pid = NULL, *v;
    qb_status st = pop(m, &pid);
    if (st) return st;
    pv *const *a = pid->kind == PV_TUPLE ? pid->u.seq.items : NULL;
    if (!a || pid->u.seq.n != 5 || a[0]->kind != PV_STR || strcmp(a[0]->u.str.s, "storage") != 0 ||
        a[1]->kind != PV_GLOBAL || allowed_globals[a[1]->u.global].kind != G_STORAGE || a[2]->kind != PV_STR ||
        a[3]->kind != PV_STR || a[4]->kind != PV_INT || a[4]->u.i < 0)
        return pk_fail(m, QB_EFORMAT,
                       "persistent id is not ('storage', torch.<type>Storage, key, location, numel)");
    if ((st = new_pv(m, PV_STORAGE, &v))) return st;
    v->u.storage.elem = allowed_globals[a[1]->u.global].elem;
    v->u.storage.key = a[2]->u.str.s;
    v->u.storage.numel = a[4]->u.i;
    return push(m, v);
}

static qb_status memo_put(vm *m, uint64_t idx)
{
    pv *v = NULL;
    qb_status st = top(m, &v);
    if (st) return st;
    if (idx >= PK_MAX_MEMO) return pk_fail(m, QB_EFORMAT, "memo index %" PRIu64 " over the limit", idx);
    size_t old = m->memo_cap;
    if (!grow((void **)&m->memo, &m->memo_cap, (size_t)idx + 1, sizeof *m->memo, PK_MAX_MEMO))
        return pk_fail(m, QB_ENOMEM, "cannot grow the memo");
    if (m->memo_cap > old) memset(m->memo + old, 0, (m->memo_cap - old) * sizeof *m->memo);
    if (!m->memo[idx]) m->memo_count++;
    m->memo[idx] = v;
    return QB_OK;
}

static qb_status memo_get(vm *m, uint64_t idx)
{
    if (idx >= m->memo_cap || !m->memo[idx])
        return pk_fail(m, QB_EFORMAT, "memo entry %" PRIu64 " is not set", idx);
    return push(m, m->memo[idx]);
}

/* APPEND(S) / SETITEM(S): the target sits just below the items. */
static qb_status add_items(vm *m, size_t base, pv_kind kind)
{
    if (base <= frame_floor(m) || m->stack[base - 1]->kind != kind)
        return pk_fail(m, QB_EFORMAT, "%s target is not %s", kind == PV_DICT ? "SETITEMS" : "APPENDS",
                       pv_kind_names[kind]);
    if (kind == PV_DICT && (m->sp - base) % 2 != 0)
        return pk_fail(m, QB_EFORMAT, "SETITEMS with an odd item count");
    pv *target = m->stack[base - 1];
    qb_status st = QB_OK;
    for (size_t i = base; i < m->sp && !st; i++) st = append_item(m, target, m->stack[i]);
    m->sp = base;
    return st;
}

/* Pickle opcodes (pickletools names). */
enum {
    OP_MARK = '(', OP_STOP = '.', OP_BINFLOAT = 'G', OP_BININT = 'J', OP_BININT1 = 'K', OP_BININT2 = 'M',
    OP_NONE = 'N', OP_BINPERSID = 'Q', OP_REDUCE = 'R', OP_BINUNICODE = 'X', OP_EMPTY_LIST = ']',
    OP_APPEND = 'a', OP_BUILD = 'b', OP_GLOBAL = 'c', OP_APPENDS = 'e', OP_BINGET = 'h', OP_LONG_BINGET = 'j',
    OP_BINPUT = 'q', OP_LONG_BINPUT = 'r', OP_SETITEM = 's', OP_TUPLE = 't', OP_EMPTY_TUPLE = ')',
    OP_SETITEMS = 'u', OP_EMPTY_DICT = '}', OP_PROTO = 0x80, OP_TUPLE1 = 0x85, OP_TUPLE2 = 0x86,
    OP_TUPLE3 = 0x87, OP_NEWTRUE = 0x88, OP_NEWFALSE = 0x89, OP_LONG1 = 0x8a, OP_SHORT_BINUNICODE = 0x8c,
    OP_STACK_GLOBAL = 0x93, OP_MEMOIZE = 0x94, OP_FRAME = 0x95,
};

/* Runs one opcode (already consumed, at m->op). */
static qb_status step(vm *m, int op, bool *stop, pv **result)
{
    qb_status st = QB_OK;
    pv *v = NULL, *k = NULL; /* set by the pop/top that precede every use */
    size_t base = 0;
    switch (op) {
    case OP_PROTO:
        if ((st = need(m, 1))) return st;
        if (*m->p < 2 || *m->p > 5)
            return pk_fail(m, QB_EFORMAT, "pickle protocol %d (expected 2 to 5)", *m->p);
        m->p++;
        return QB_OK;
    case OP_FRAME: /* protocol 4 framing: only a read-ahead hint */
        if ((st = need(m, 8))) return st;
        if (read_le(m, 8) > (uint64_t)(m->end - m->p)) return pk_fail(m, QB_EFORMAT, "FRAME runs past the end");
        return QB_OK;
    case OP_MARK:
        if (!grow((void **)&m->marks, &m->marks_cap, m->nmarks + 1, sizeof *m->marks, PK_MAX_MARKS))
            return pk_fail(m, QB_EFORMAT, "MARKs nested deeper than %zu", PK_MAX_MARKS);
        m->marks[m->nmarks++] = m->sp;
        return QB_OK;
    case OP_STOP:
        if ((st = pop(m, result))) return st;
        if (m->sp != 0 || m->nmarks != 0) return pk_fail(m, QB_EFORMAT, "STOP with items left on the stack");
        if (m->p != m->end) return pk_fail(m, QB_EFORMAT, "%td bytes after STOP", m->end - m->p);
        *stop = true;
        return QB_OK;
    case OP_NONE: return push_new(m, PV_NONE);
    case OP_NEWTRUE:
    case OP_NEWFALSE:
        if ((st = new_pv(m, PV_BOOL, &v))) return st;
        v->u.b = op == OP_NEWTRUE;
        return push(m, v);
    case OP_BININT1:
    case OP_BININT2:
    case OP_BININT: {
        int n = op == OP_BININT1 ? 1 : op == OP_BININT2 ? 2 : 4;
        if ((st = need(m, (size_t)n))) return st;
        uint64_t u = read_le(m, n);
        return push_int(m, op == OP_BININT ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u);
    }
    case OP_LONG1: { /* n-byte two's complement; a state dict never needs more than 8 */
        if ((st = need(m, 1))) return st;
        int n = *m->p++;
        if (n > 8) return pk_fail(m, QB_EFORMAT, "LONG1 of %d bytes does not fit in 64 bits", n);
        if ((st = need(m, (size_t)n))) return st;
        uint64_t u = read_le(m, n);
        if (n > 0 && n < 8 && (u >> (8 * n - 1)) & 1) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        return push_int(m, (int64_t)u);
    }
    case OP_BINFLOAT: { /* big-endian IEEE double */
        if ((st = need(m, 8))) return st;
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = (u << 8) | *m->p++;
        if ((st = new_pv(m, PV_FLOAT, &v))) return st;
        memcpy(&v->u.f, &u, 8);
        return push(m, v);
    }
    case OP_BINUNICODE:
        if ((st = need(m, 4))) return st;
        return push_str(m, (size_t)read_le(m, 4));
    case OP_SHORT_BINUNICODE:
        if ((st = need(m, 1))) return st;
        return push_str(m, *m->p++);
    case OP_EMPTY_TUPLE: return push_new(m, PV_TUPLE);
    case OP_EMPTY_LIST: return push_new(m, PV_LIST);
    case OP_EMPTY_DICT: return push_new(m, PV_DICT);
    case OP_TUPLE:
        if ((st = pop_mark(m, &base)) || (st = make_seq(m, PV_TUPLE, base, &v))) return st;
        return push(m, v);
    case OP_TUPLE1:
    case OP_TUPLE2:
    case OP_TUPLE3: {
        size_t n = (size_t)(op - OP_TUPLE1 + 1);
        if (m->sp - frame_floor(m) < n) return pk_fail(m, QB_EFORMAT, "stack underflow");
        if ((st = make_seq(m, PV_TUPLE, m->sp - n, &v))) return st;
        return push(m, v);
    }
    case OP_BINPUT:
        if ((st = need(m, 1))) return st;
        return memo_put(m, read_le(m, 1));
    case OP_LONG_BINPUT:
        if ((st = need(m, 4))) return st;
        return memo_put(m, read_le(m, 4));
    case OP_MEMOIZE: return memo_put(m, m->memo_count);
    case OP_BINGET:
        if ((st = need(m, 1))) return st;
        return memo_get(m, read_le(m, 1));
    case OP_LONG_BINGET:
        if ((st = need(m, 4))) return st;
        return memo_get(m, read_le(m, 4));
    case OP_GLOBAL: return op_global(m);
    case OP_STACK_GLOBAL: return op_stack_global(m);
    case OP_REDUCE: return op_reduce(m);
    case OP_BINPERSID: return op_persid(m);
    case OP_APPEND:
        if ((st = pop(m, &v)) || (st = top(m, &k))) return st;
        if (k->kind != PV_LIST) return pk_fail(m, QB_EFORMAT, "APPEND target is not a list");
        return append_item(m, k, v);
    case OP_APPENDS:
        if ((st = pop_mark(m, &base))) return st;
        return add_items(m, base, PV_LIST);
    case OP_SETITEM:
        if (m->sp - frame_floor(m) < 3 || m->stack[m->sp - 3]->kind != PV_DICT)
            return pk_fail(m, QB_EFORMAT, "SETITEM target is not a dict");
        return add_items(m, m->sp - 2, PV_DICT);
    case OP_SETITEMS:
        if ((st = pop_mark(m, &base))) return st;
        return add_items(m, base, PV_DICT);
    case OP_BUILD: /* a state dict's OrderedDict carries `_metadata` (module versions): ignored */
        if ((st = pop(m, &v)) || (st = top(m, &k))) return st;
        if (k->kind != PV_DICT) return pk_fail(m, QB_EFORMAT, "BUILD on %s", pv_kind_names[k->kind]);
        return QB_OK;
    default:
        return pk_fail(m, QB_EFORMAT, "unsupported pickle opcode 0x%02x (not a plain state dict)", op);
    }
}

static qb_status run_pickle(vm *m, const unsigned char *data, size_t len, pv **result)
{
    m->start = m->p = m->op = data;
    m->end = data + len;
    bool stop = false;
    while (!stop) {
        m->op = m->p;
        if (m->p == m->end) return pk_fail(m, QB_EFORMAT, "pickle ends without STOP");
        int op = *m->p++;
        qb_status st = step(m, op, &stop, result);
        if (st) return st;
    }
    return QB_OK;
}

/* Index of the first item of `d` that is not a str -> tensor pair, or -1. */
static ptrdiff_t first_non_tensor(const pv *d)
{
    for (size_t i = 0; i < d->u.seq.n; i += 2)
        if (d->u.seq.items[i]->kind != PV_STR || d->u.seq.items[i + 1]->kind != PV_TENSOR) return (ptrdiff_t)i;
    return -1;
}

static qb_status not_state_dict(const char *path, const char *prefix, const pv *d, ptrdiff_t bad)
{
    const pv *key = d->u.seq.items[bad], *val = d->u.seq.items[bad + 1];
    if (key->kind != PV_STR)
        return qb_fail(QB_EFORMAT, "%s: not a plain state dict: %sa key is %s", path, prefix,
                       pv_kind_names[key->kind]);
    return qb_fail(QB_EFORMAT, "%s: not a plain state dict: %sentry '%.200s' is %s", path, prefix, key->u.str.s,
                   pv_kind_names[val->kind]);
}

/* The str -> tensor dict: the pickled object itself, or its "state_dict" / "model"
 * entry (training checkpoints wrap the weights one level deep beside other values). */
static qb_status find_state_dict(const char *path, const pv *root, const pv **out)
{
    if (root->kind != PV_DICT)
        return qb_fail(QB_EFORMAT, "%s: not a plain state dict: the pickled object is %s", path,
                       pv_kind_names[root->kind]);
    ptrdiff_t bad = first_non_tensor(root);
    if (bad < 0) {
        *out = root;
        return QB_OK;
    }
    static const char *const wrappers[] = {"state_dict", "model"};
    for (size_t w = 0; w < 2; w++) {
        for (size_t i = 0; i < root->u.seq.n; i += 2) {
            const pv *k = root->u.seq.items[i], *v = root->u.seq.items[i + 1];
            if (k->kind != PV_STR || strcmp(k->u.str.s, wrappers[w]) != 0 || v->kind != PV_DICT) continue;
            ptrdiff_t inner = first_non_tensor(v);
            if (inner >= 0) {
                char prefix[64];
                snprintf(prefix, sizeof prefix, "in '%s', ", wrappers[w]);
                return not_state_dict(path, prefix, v, inner);
            }
            *out = v;
            return QB_OK;
        }
    }
    return not_state_dict(path, "", root, bad);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static qb_status check_unique_names(const char *path, const pv *d)
{
    size_t n = d->u.seq.n / 2;
    if (n < 2) return QB_OK;
    const char **names = malloc(n * sizeof *names);
    if (!names) return qb_fail(QB_ENOMEM, "%s: cannot allocate the name index", path);
    for (size_t i = 0; i < n; i++) names[i] = d->u.seq.items[2 * i]->u.str.s;
    qsort(names, n, sizeof *names, cmp_name);
    qb_status st = QB_OK;
    for (size_t i = 1; i < n && !st; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            st = qb_fail(QB_EFORMAT, "%s: tensor '%.200s' appears twice in the state dict", path, names[i]);
    free(names);
    return st;
}

typedef struct {
    const char *path;
    qb_zip zip;
    const char *prefix; /* the archive folder, e.g. "archive" or "pytorch_model" */
    size_t prefix_len;
    uint64_t out_bytes, out_limit;
} torch_file;

/* The archive entry "<prefix>/<dir><name>", or *e = NULL. */
static qb_status find_in_archive(torch_file *tf, const char *dir, const char *name, qb_zip_entry **e)
{
    size_t n = tf->prefix_len + 1 + strlen(dir) + strlen(name) + 1;
    char *full = malloc(n);
    if (!full) return qb_fail(QB_ENOMEM, "%s: out of memory", tf->path);
    snprintf(full, n, "%.*s/%s%s", (int)tf->prefix_len, tf->prefix, dir, name);
    *e = qb_zip_find(&tf->zip, full);
    free(full);
    return QB_OK;
}

/* Finds the storage's zip entry and checks it holds exactly `numel` elements. */
static qb_status resolve_storage(torch_file *tf, const char *tname, pv *s, const unsigned char **bytes)
{
    qb_zip_entry *e = NULL;
    qb_status st = find_in_archive(tf, "data/", s->u.storage.key, &e);
    if (st) return st;
    int plen = (int)(tf->prefix_len > 100 ? 100 : tf->prefix_len);
    if (!e)
        return qb_fail(QB_EFORMAT, "%s: tensor '%.200s': storage '%.100s' (%.*s/data/%.100s) is missing from "
                       "the archive", tf->path, tname, s->u.storage.key, plen, tf->prefix, s->u.storage.key);
    size_t len;
    if ((st = qb_zip_read(&tf->zip, e, bytes, &len))) return st;
    uint64_t es = qb_elem_size(s->u.storage.elem);
    if (len / es != (uint64_t)s->u.storage.numel || len % es != 0)
        return qb_fail(QB_EFORMAT, "%s: tensor '%.200s': storage '%.100s' has %zu bytes, not %" PRId64
                       " %s elements", tf->path, tname, s->u.storage.key, len, s->u.storage.numel,
                       qb_elem_name(s->u.storage.elem));
    return QB_OK;
}

/* Checks the tensor's view against its storage, then copies it out as a contiguous tensor. */
static qb_status materialise(torch_file *tf, const char *name, const pv *tv, qb_weights *w)
{
    pv *s = tv->u.tensor.storage;
    const unsigned char *bytes;
    qb_status st = resolve_storage(tf, name, s, &bytes);
    if (st) return st;
    int ndim = tv->u.tensor.ndim;
    const int64_t *size = tv->u.tensor.size, *stride = tv->u.tensor.stride;
    int64_t numel = 1, last = tv->u.tensor.offset, snumel = s->u.storage.numel;
    bool overflow = false;
    for (int d = 0; d < ndim; d++) {
        overflow |= __builtin_mul_overflow(numel, size[d], &numel);
        int64_t span;
        if (size[d] > 0) overflow |= __builtin_mul_overflow(size[d] - 1, stride[d], &span) ||
                                     __builtin_add_overflow(last, span, &last);
    }
    /* numel <= storage numel also keeps broadcast (stride 0) tensors from expanding a small file. */
    if (overflow || numel > snumel || (numel > 0 && last >= snumel) || tv->u.tensor.offset > snumel)
        return qb_fail(QB_EFORMAT, "%s: tensor '%.200s': size, stride and offset %" PRId64
                       " address elements outside its storage '%.100s' of %" PRId64 " elements",
                       tf->path, name, tv->u.tensor.offset, s->u.storage.key, snumel);
    qb_tensor t = {0};
    t.dtype = qb_elem_dtype(s->u.storage.elem, true);
    t.device = QB_DEV_CPU;
    t.ndim = ndim;
    memcpy(t.shape, size, (size_t)ndim * sizeof *size);
    size_t nbytes = qb_tensor_nbytes(&t);
    tf->out_bytes += nbytes;
    if (tf->out_bytes > tf->out_limit)
        return qb_fail(QB_EFORMAT,
                       "%s: tensor '%.200s': the tensors expand to more than %" PRIu64
                       " bytes (8x the file): too many views of the same storages",
                       tf->path, name, tf->out_limit);
    t.data = qb_malloc(nbytes);
    if (!t.data)
        return qb_fail(QB_ENOMEM, "%s: tensor '%.200s': cannot allocate %zu bytes", tf->path, name, nbytes);
    t.owned = true;
    size_t es = qb_elem_size(s->u.storage.elem);
    qb_elem_copy(t.data, bytes + (size_t)tv->u.tensor.offset * es, s->u.storage.elem, true, ndim, size, stride);
    if ((st = qb_weights_add(w, name, t))) qb_tensor_free(&t);
    return st;
}

/* The archive folder: the one "<prefix>/data.pkl" entry (torch names it after the file). */
static qb_status find_prefix(torch_file *tf, qb_zip_entry **pkl)
{
    *pkl = NULL;
    for (size_t i = 0; i < tf->zip.count; i++) {
        qb_zip_entry *e = &tf->zip.entries[i];
        const char *slash = memchr(e->name, '/', e->name_len);
        size_t plen = slash ? (size_t)(slash - e->name) : 0;
        if (!slash || e->name_len != plen + 9 || memcmp(slash, "/data.pkl", 9) != 0) continue;
        if (*pkl)
            return qb_fail(QB_EFORMAT, "%s: more than one */data.pkl in the archive", tf->path);
        *pkl = e;
        tf->prefix = e->name;
        tf->prefix_len = plen;
    }
    if (!*pkl) return qb_fail(QB_EFORMAT, "%s: no <archive>/data.pkl entry: not a torch.save file", tf->path);
    return QB_OK;
}

/* torch >= 2.1 records the byte order; storages are read as little-endian. */
static qb_status check_byteorder(torch_file *tf)
{
    qb_zip_entry *e = NULL;
    qb_status st = find_in_archive(tf, "", "byteorder", &e);
    if (st || !e) return st;
    const unsigned char *b;
    size_t len;
    if ((st = qb_zip_read(&tf->zip, e, &b, &len))) return st;
    if (len == 6 && memcmp(b, "little", 6) == 0) return QB_OK;
    if (len == 3 && memcmp(b, "big", 3) == 0)
        return qb_fail(QB_EUNSUPPORTED, "%s: big-endian storages are not supported", tf->path);
    return qb_fail(QB_EFORMAT, "%s: %.*s/byteorder is neither \"little\" nor \"big\"", tf->path,
                   (int)(tf->prefix_len > 100 ? 100 : tf->prefix_len), tf->prefix);
}

static qb_status load_archive(torch_file *tf, const qb_mapped_file *mf, qb_weights *w)
{
    /* Before 1.6 torch.save wrote a bare pickle stream (it starts with PROTO 2, LONG1). */
    if (mf->size >= 3 && mf->data[0] == OP_PROTO && mf->data[1] == 2 && mf->data[2] == OP_LONG1)
        return qb_fail(QB_EUNSUPPORTED, "%s: legacy torch.save format (torch < 1.6) is not supported; "
                       "re-save it with a newer torch", tf->path);
    qb_status st = qb_zip_open(&tf->zip, tf->path, mf->data, mf->size);
    if (st) return st;
    qb_zip_entry *pkl;
    const unsigned char *pdata;
    size_t plen;
    if ((st = find_prefix(tf, &pkl)) || (st = check_byteorder(tf))) return st;
    if (pkl->usize > PK_MAX_PICKLE)
        return qb_fail(QB_EFORMAT, "%s: data.pkl is %" PRIu64 " bytes (limit %zu)", tf->path, pkl->usize,
                       PK_MAX_PICKLE);
    if ((st = qb_zip_read(&tf->zip, pkl, &pdata, &plen))) return st;

    vm m = {0};
    m.path = tf->path;
    pv *root = NULL;
    const pv *dict = NULL;
    st = run_pickle(&m, pdata, plen, &root);
    if (!st) st = find_state_dict(tf->path, root, &dict);
    if (!st) st = check_unique_names(tf->path, dict);
    for (size_t i = 0; !st && i < dict->u.seq.n; i += 2)
        st = materialise(tf, dict->u.seq.items[i]->u.str.s, dict->u.seq.items[i + 1], w);
    vm_free(&m);
    return st;
}

qb_status qb_torchbin_load(const char *path, qb_weights *out)
{
    memset(out, 0, sizeof *out);
    qb_mapped_file mf;
    qb_status st = qb_map_file(&mf, path);
    if (st) return st;
    torch_file tf = {0};
    tf.path = path;
    tf.out_limit = 8 * (uint64_t)mf.size + ((uint64_t)1 << 20);
    qb_weights w = {0};
    st = load_archive(&tf, &mf, &w);
    qb_zip_close(&tf.zip);
    qb_unmap_file(&mf);
    if (st) {
        qb_weights_free(&w);
        return st;
    }
    *out = w;
    return QB_OK;
}
