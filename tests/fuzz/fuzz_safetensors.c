/* safetensors: the header, the metadata and every tensor, read as stored and
 * widened to FP32 (qb_safetensors_load_meta); what loads is written back and must
 * load again with the same names, dtypes and shapes. */
#include "fuzz.h"
#include "qbert/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    const char *path = fuzz_file("model.safetensors", data, size);
    for (int widen = 0; widen < 2; widen++) {
        qb_weights w = {0};
        qb_meta meta = {0};
        if (qb_safetensors_load_meta(path, widen, &w, &meta) == QB_OK && !widen) {
            char again_path[300];
            snprintf(again_path, sizeof again_path, "%s/again.safetensors", fuzz_dir());
            const qb_metadata m = {meta.count, (const char *const *)meta.keys, (const char *const *)meta.values};
            if (qb_safetensors_save(again_path, &w, &m) == QB_OK) {
                qb_weights again = {0};
                FUZZ_CHECK(qb_safetensors_load(again_path, false, &again) == QB_OK && again.count == w.count);
                for (int i = 0; i < w.count; i++)
                    FUZZ_CHECK(strcmp(again.names[i], w.names[i]) == 0 &&
                               again.tensors[i].dtype == w.tensors[i].dtype &&
                               qb_tensor_numel(&again.tensors[i]) == qb_tensor_numel(&w.tensors[i]));
                qb_weights_free(&again);
            }
        }
        qb_weights_free(&w);
        qb_meta_free(&meta);
    }
    return 0;
}
