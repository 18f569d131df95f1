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

#endif
