/*
 * stages — the registry of native kernels. Each file in engine/stages/
 * defines one or more `kernel_def`s; registry.c lists them by name.
 */
#ifndef HONE_STAGES_H
#define HONE_STAGES_H

#include "../kernel.h"

/* tokenize writes this next to each dataset it encodes (tokenize.c). */
#define TOKENIZE_META "tokenize.json"

extern const kernel_def stage_concat;
extern const kernel_def stage_wc;
extern const kernel_def stage_ingest;
extern const kernel_def stage_dedupe;
extern const kernel_def stage_split;
extern const kernel_def stage_tokenizer;
extern const kernel_def stage_tokenize;
extern const kernel_def stage_train;
extern const kernel_def stage_evaluate;
extern const kernel_def stage_export;
extern const kernel_def stage_model;
extern const kernel_def stage_generate;
extern const kernel_def stage_lua;        /* dsl.c: stage "name" { run = ... } */
extern const kernel_def stage_lua_map;    /* dsl.c: map { fn = ... } */
extern const kernel_def stage_lua_filter; /* dsl.c: filter { fn = ... } */

#endif
