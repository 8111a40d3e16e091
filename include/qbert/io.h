/* Weight files: safetensors (read + atomic write) and PyTorch pytorch_model.bin
 * (a zip archive holding a pickled state dict and raw storages), read without Python.
 *
 * Every loader validates what it reads against the file size before touching
 * memory: corrupt or hostile files give QB_EFORMAT with a message naming the file
 * and the problem, never a crash. */
#ifndef QBERT_IO_H
#define QBERT_IO_H

#include "qbert/tensor.h"

/* Key/value strings stored under "__metadata__". */
typedef struct {
    int count;
    const char *const *keys;
    const char *const *values;
} qb_metadata;

/* Metadata read from a file: owned copies (qb_meta_free). */
typedef struct {
    int count;
    char **keys, **values;
} qb_meta;
/* The value of `key`, or NULL. */
const char *qb_meta_get(const qb_meta *m, const char *key);
/* Adds or replaces key (copies of both). */
qb_status qb_meta_set(qb_meta *m, const char *key, const char *value);
void qb_meta_free(qb_meta *m);

/* Loads every tensor of a .safetensors file, in header order, into *out (overwritten:
 * pass an empty list; free it with qb_weights_free; left empty on failure).
 * F16/BF16 tensors are converted to F32 when to_f32 is true; F64 always is (qbert has
 * no f64 tensors); other dtypes (I8, U8, I32, I64) are kept as they are. "__metadata__"
 * is validated (an object of strings) and, when meta is not NULL, returned there
 * (count 0 when the file has none). */
qb_status qb_safetensors_load_meta(const char *path, bool to_f32, qb_weights *out, qb_meta *meta);
/* The same without the metadata. */
qb_status qb_safetensors_load(const char *path, bool to_f32, qb_weights *out);

/* Writes all tensors (CPU; any dtype but QB_I4, which is stored packed as U8) with
 * optional metadata (meta may be NULL); the header lists them in list order. The header
 * is padded with spaces to a multiple of 8 bytes and the data section holds the tensors
 * largest element size first, so each starts at a multiple of its element size (and
 * mmap users can read them in place). Streams to PATH.tmp.PID, fsyncs and renames over
 * PATH: memory is not doubled, and a failed save leaves no file behind. */
qb_status qb_safetensors_save(const char *path, const qb_weights *w, const qb_metadata *meta);

/* Loads the state dict of a torch.save() zip file (pytorch_model.bin) into *out (as
 * for qb_safetensors_load), in pickle order. Floating tensors (f16, bf16, f32, f64)
 * become F32; int64/int32/uint8/int8 are kept. Strided views are materialised
 * contiguous; tensors sharing a storage each get their own copy. Accepts the pickle
 * opcodes torch.save emits for a dict/OrderedDict of tensors (protocol 2, or 4), also
 * when wrapped one level deep as the "state_dict" or "model" entry of a checkpoint
 * dict. Any other object or global (os.system ...) is rejected with QB_EFORMAT;
 * deflate-compressed entries with QB_EUNSUPPORTED. */
qb_status qb_torchbin_load(const char *path, qb_weights *out);

/* An INI text through inih: ini_parse_string's handler and return value (0, the first
 * line that failed, or -1 when out of memory), with lines of any length and no silent
 * override: an indented line (inih would add it to the value above) and a key set
 * twice in a section (also across repeated [section] headers) fail at their line, *why
 * saying which (NULL: inih's syntax error, or the handler's). */
int qb_ini_parse(const char *text, int (*handler)(void *user, const char *section, const char *key, const char *value),
                 void *user, const char **why);

#endif
