/* pytorch_model.bin: the zip directory, the pickle (only a state dict's opcodes and
 * globals are accepted) and the storages (qb_torchbin_load). */
#include "fuzz.h"
#include "qbert/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    qb_weights w = {0};
    qb_torchbin_load(fuzz_file("pytorch_model.bin", data, size), &w);
    qb_weights_free(&w);
    return 0;
}
