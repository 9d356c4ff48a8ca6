#include <string.h>

#include "stages.h"

static const kernel_def *const all[] = {
	&stage_concat, &stage_wc, &stage_ingest, &stage_dedupe, &stage_split, &stage_tokenizer, &stage_tokenize, &stage_train, &stage_evaluate, &stage_export, &stage_model, &stage_generate, &stage_lua, &stage_lua_map, &stage_lua_filter,
};

const kernel_def *kernel_find(const char *name)
{
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		if (!strcmp(all[i]->name, name))
			return all[i];
	return NULL;
}
