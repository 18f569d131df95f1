/* model_file.h — the training model file (docs/model-format.md) as bytes, so
 * that a checkpoint can carry a whole model file inside it. fm_model_save and
 * fm_model_load (fewmul.h) are these plus the file. */
#ifndef FEWMUL_MODEL_FILE_H
#define FEWMUL_MODEL_FILE_H

#include "bytes.h"
#include "fewmul.h"

/* Appends the complete file image of `model`, CRC included, to w. */
int fmi_model_serialize(const fm_model *model, fm_writer *w);
/* Reads a model from the file image data[0..len); `path` names it in messages.
 * Every count is checked against len before anything is allocated. */
int fmi_model_parse(const uint8_t *data, size_t len, const char *path, fm_model **out);

/* What the header of a model file declares. */
typedef struct fmi_model_head {
    uint64_t bytes;     /* the size of the whole model file, CRC included */
    size_t state_count; /* the state values its architecture has */
    fm_optimizer opt;
} fmi_model_head;

/* Reads and checks the header of the model file at offset `at` of f, in room
 * bytes (the file's size, or a checkpoint's model length), as fmi_model_parse
 * would, and the sizes it declares against room; allocates nothing sized by
 * the file. */
int fmi_model_file_head(const fmi_file_head *f, uint64_t at, uint64_t room, fmi_model_head *out);

#endif
