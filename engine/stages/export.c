/*
 * export — one bundle with everything needed to use and to reproduce a
 * model: model.safetensors + config.json (train's output), tokenizer.json
 * (Hugging Face format, from the tokenizer stage), metrics.json (from an
 * evaluate stage, optional), curve.jsonl, and lineage.json (every upstream
 * stage's key, kernel version and parameters, and the content ids of the
 * sources). The output folder holds bundle.tar.gz; the engine copies it to
 * `to` (engine/kernel.h: materialize). Same inputs, same bundle bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "../io/bpe.h"
#include "../ml/bundle.h"
#include "../ml/deploy.h"
#include "../models/gpt2.h"
#include "stages.h"

static int has(const kinput *in, const char *file)
{
	char *p = path_join(in->path, file);
	int ok = in->is_dir && fs_exists(p);
	free(p);
	return ok;
}

static int add_file(kctx *c, bundle *b, const char *dir, const char *file, const char *as)
{
	char *p = path_join(dir, file);
	b->m = xrealloc(b->m, (b->n + 1) * sizeof *b->m);
	bundle_member *m = &b->m[b->n];
	buf_init(&m->data);
	int rc = fs_read(&c->err, p, &m->data);
	free(p);
	if (rc) {
		buf_free(&m->data);
		return -1;
	}
	m->name = xstrdup(as);
	b->n++;
	return 0;
}

static void add_buf(bundle *b, const char *as, buf *data)
{
	b->m = xrealloc(b->m, (b->n + 1) * sizeof *b->m);
	b->m[b->n].name = xstrdup(as);
	b->m[b->n].data = *data;
	buf_init(data);
	b->n++;
}

/* format = "gguf": the GPT-2 and its byte-level tokenizer as model.gguf */
static int export_gguf(kctx *c, const hval *params, const kinput *model, const kinput *tok, const char *outdir)
{
	if (!tok || !has(tok, "encoder.json"))
		return kctx_fail(c, "export: format = \"gguf\" needs the model's byte-level BPE tokenizer as an input, as in "
		                 "export { lm, tok, format = \"gguf\" }");
	gpt2 m;
	bpe *b = NULL;
	if (gpt2_load_dir(&c->err, &m, model->path) != 0)
		return herr_prefix(&c->err, "export: %s", model->label);
	int rc = bpe_load_dir(&c->err, &b, tok->path);
	char *path = NULL;
	size_t bytes = 0;
	if (rc == 0)
		rc = kctx_out_path(c, outdir, "model.gguf", &path);
	if (rc == 0 && deploy_gguf(&c->err, &m, b, hval_get_str(params, "quant", "f16"), path, &bytes) != 0)
		rc = herr_prefix(&c->err, "export: %s", model->label);
	if (rc == 0) {
		kctx_metric(c, "tensor_bytes", (double)bytes);
		kctx_metric(c, "params", (double)m.nparams);
	}
	free(path);
	if (b)
		bpe_free(b);
	gpt2_free(&m);
	return rc;
}

static int k_export(kctx *c, const hval *params, const kinput *in, size_t nin, const char *outdir)
{
	const kinput *model = NULL, *tok = NULL, *score = NULL;
	for (size_t i = 0; i < nin; i++) {
		if (has(&in[i], "model.safetensors") && has(&in[i], "config.json"))
			model = &in[i];
		else if ((in[i].is_dir && bpe_dir_is_bpe(in[i].path)) || (has(&in[i], "vocab.txt") && has(&in[i], "tokenizer.json")))
			tok = &in[i]; /* byte-level BPE, or WordPiece */
		else if (has(&in[i], "metrics.json"))
			score = &in[i];
		else
			return kctx_fail(c, "export: input %s is not a model (train), a tokenizer or an evaluation", in[i].label);
	}
	if (!model)
		return kctx_fail(c, "export: give a model (train's output), as in export { model, tok, score, to = \"dist/model.tar.gz\" }");
	if (!strcmp(hval_get_str(params, "format", "bundle"), "gguf"))
		return export_gguf(c, params, model, tok, outdir);
	bundle b = {NULL, 0};
	int rc = add_file(c, &b, model->path, "config.json", "config.json");
	if (rc == 0 && kctx_lineage(c)) {
		buf l;
		buf_init(&l);
		buf_adds(&l, kctx_lineage(c));
		add_buf(&b, "lineage.json", &l);
	}
	if (rc == 0 && score)
		rc = add_file(c, &b, score->path, "metrics.json", "metrics.json");
	if (rc == 0)
		rc = add_file(c, &b, model->path, "model.safetensors", "model.safetensors");
	if (rc == 0 && tok)
		rc = add_file(c, &b, tok->path, "tokenizer.json", "tokenizer.json");
	if (rc == 0 && tok && has(tok, "vocab.txt"))
		rc = add_file(c, &b, tok->path, "vocab.txt", "vocab.txt"); /* BERT folders carry it too */
	if (rc == 0)
		rc = add_file(c, &b, model->path, "curve.jsonl", "training/curve.jsonl");
	if (rc == 0 && has(model, "tokenize.json"))
		rc = add_file(c, &b, model->path, "tokenize.json", "tokenize.json");
	const char *tmpl = hval_get_str(params, "chat_template", NULL);
	if (rc == 0 && tmpl) { /* for hone serve's chat */
		buf cj;
		buf_init(&cj);
		buf_adds(&cj, "{\"chat_template\": ");
		buf_json_str(&cj, tmpl);
		buf_adds(&cj, "}\n");
		add_buf(&b, "chat.json", &cj);
	}
	buf out;
	buf_init(&out);
	if (rc == 0)
		rc = bundle_write(&c->err, b.m, b.n, &out);
	char *path = NULL;
	if (rc == 0)
		rc = kctx_out_path(c, outdir, "bundle.tar.gz", &path);
	if (rc == 0)
		rc = fs_write_atomic(&c->err, path, out.p, out.len);
	if (rc == 0) {
		kctx_metric(c, "bytes", (double)out.len);
		kctx_metric(c, "members", (double)b.n);
	}
	free(path);
	buf_free(&out);
	bundle_free(&b);
	return rc;
}

const kernel_def stage_export = {"export", 2, k_export, "bundle.tar.gz|model.gguf"};
