/* Private to the model loaders: model.c calls one loader per format, and
 * the loaders share the checks in model_check.c. Nothing calls back into
 * model.c, so the calls run one way: model.c -> loader -> model_check.c. */
#ifndef DUET_MODEL_IMPL_H
#define DUET_MODEL_IMPL_H

#include "engine/model.h"

/* Checks a tensor's shape and type and fills *t. */
int duet_model_bind(struct duet_tensor *t, const char *path, const char *name,
		    enum duet_dtype type, const void *data, int64_t cols,
		    int64_t rows, int64_t want_cols, int64_t want_rows,
		    struct duet_err *err);

/* Each binds m's geometry, weights and vocabulary from the mapped file
 * (m->map, m->map_size). */
int duet_model_load_gguf(struct duet_model *m, struct duet_err *err);
int duet_model_load_llama2c(struct duet_model *m, const char *tokenizer_path,
			    struct duet_err *err);

#endif
