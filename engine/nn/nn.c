#include "nn.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util.h"

void nn_ctx_init(nn_ctx *c, const nn_ops *ops, int threads)
{
	c->ops = ops;
	c->threads = threads < 1 ? 1 : threads;
	c->scratch = NULL;
	c->scratch_n = 0;
	c->crew = !strcmp(ops->name, "cpu") && c->threads > 1 ? crew_new(c->threads > 64 ? 64 : c->threads) : NULL;
	c->dev = NULL;
	c->precision = NN_FP32;
	if (ops->init)
		ops->init(c);
}

void nn_ctx_free(nn_ctx *c)
{
	if (c->crew)
		crew_free(c->crew);
	c->crew = NULL;
	if (c->scratch)
		c->ops->free(c, c->scratch);
	c->scratch = NULL;
	c->scratch_n = 0;
	if (c->ops->fini)
		c->ops->fini(c);
	c->dev = NULL;
}


float nn_dropout_keep(uint64_t seed, uint64_t stream, size_t i, float p)
{
	uint64_t z = seed * 0x9E3779B97F4A7C15ull + (stream << 40) + i;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0 < p ? 0.0f : 1.0f / (1.0f - p);
}

void nn_rope_rows(float *x, const uint32_t *pos, const float *cs, int r0, int r1, int ld, int nh, int D, int inverse)
{
	int h2 = D / 2;
	for (int r = r0; r < r1; r++) {
		const float *co = cs + (size_t)pos[r] * (size_t)D, *si = co + h2;
		for (int h = 0; h < nh; h++) {
			float *v = x + (size_t)r * (size_t)ld + (size_t)h * (size_t)D;
			for (int i = 0; i < h2; i++)
				nn_rope_pair(v + i, v + i + h2, co[i], si[i], inverse);
		}
	}
}

void nn_swiglu_rows(float *h, const float *gu, int r0, int r1, int I)
{
	for (int r = r0; r < r1; r++) {
		const float *g = gu + (size_t)r * 2 * (size_t)I, *u = g + I;
		float *o = h + (size_t)r * (size_t)I;
		for (int i = 0; i < I; i++)
			o[i] = nn_swiglu_one(g[i], u[i]);
	}
}

void nn_swiglu_back_rows(float *dgu, const float *dh, const float *gu, int r0, int r1, int I)
{
	for (int r = r0; r < r1; r++) {
		const float *g = gu + (size_t)r * 2 * (size_t)I, *u = g + I, *d = dh + (size_t)r * (size_t)I;
		float *dg = dgu + (size_t)r * 2 * (size_t)I, *du = dg + I;
		for (int i = 0; i < I; i++)
			nn_swiglu_grad(g[i], u[i], d[i], dg + i, du + i);
	}
}

void nn_kv_expand_rows(float *out, const float *in, int r0, int r1, int H, int Hk, int D)
{
	size_t wo = 3 * (size_t)H * (size_t)D, wi = (size_t)(H + 2 * Hk) * (size_t)D;
	for (int r = r0; r < r1; r++)
		for (size_t k = 0; k < wo; k++)
			out[(size_t)r * wo + k] = in[(size_t)r * wi + nn_kv_src(k, H, Hk, D)];
}

/* each input float gathers its repeats in order (no two writers) */
void nn_kv_expand_back_rows(float *din, const float *dout, int r0, int r1, int H, int Hk, int D)
{
	size_t HD = (size_t)H * (size_t)D, KD = (size_t)Hk * (size_t)D, wo = 3 * HD, wi = HD + 2 * KD;
	int rep = H / Hk;
	for (int r = r0; r < r1; r++) {
		const float *o = dout + (size_t)r * wo;
		float *d = din + (size_t)r * wi;
		for (size_t k = 0; k < HD; k++)
			d[k] += o[k];
		for (int part = 0; part < 2; part++)
			for (int j = 0; j < Hk; j++)
				for (int q = 0; q < D; q++) {
					float a = 0;
					for (int t = 0; t < rep; t++)
						a += o[HD + (size_t)part * HD + ((size_t)j * rep + (size_t)t) * (size_t)D + (size_t)q];
					d[HD + (size_t)part * KD + (size_t)j * (size_t)D + (size_t)q] += a;
				}
	}
}

/* The CUDA backend: a library of its own (make cuda), so that the engine
 * builds and runs where there is no CUDA. Looked for in $HONE_CUDA_LIB, then
 * beside the executable (build/ under it, as make leaves it). */
static const nn_ops *cuda_ops;

static void *cuda_open(char *why, size_t n)
{
	const char *env = getenv("HONE_CUDA_LIB");
	char exe[4096], path[4200];
	ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
	exe[k > 0 ? k : 0] = 0;
	char *slash = strrchr(exe, '/');
	if (slash)
		*slash = 0;
	const char *sub[] = {"/build/libhone-cuda.so", "/libhone-cuda.so", "/../libhone-cuda.so"};
	for (size_t i = 0; i < (env && *env ? 1 : sizeof sub / sizeof *sub); i++) {
		if (env && *env)
			snprintf(path, sizeof path, "%s", env);
		else
			snprintf(path, sizeof path, "%s%s", slash ? exe : ".", sub[i]);
		if (access(path, F_OK) != 0)
			continue;
		void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (!h)
			snprintf(why, n, "%s does not load: %s", path, dlerror());
		return h;
	}
	if (env && *env)
		snprintf(why, n, "the CUDA backend is not built (HONE_CUDA_LIB=%s: no such file)", env);
	else
		snprintf(why, n, "the CUDA backend is not built (no libhone-cuda.so in %s/build or beside the executable)",
		         slash ? exe : ".");
	return NULL;
}

static const nn_ops *find_backend(herr *e, const char *name);

const nn_ops *nn_backend(herr *e, const char *name)
{
	const nn_ops *ops = find_backend(e, name);
	const char *p = getenv("HONE_PROFILE");
	return ops && p && *p && strcmp(p, "0") ? nn_profiled(ops) : ops;
}

/* HONE_DEVICE_EMULATE=1: "cuda" is the CPU's kernels under another name,
 * so that the device code paths (copies of the parameters, uploads, the
 * trainer's loop on a device) run, and are tested, where there is no GPU;
 * their results are the CPU's bits. */
static nn_ops emulated;

static const nn_ops *find_backend(herr *e, const char *name)
{
	if (!name || !strcmp(name, "cpu"))
		return &nn_cpu;
	const char *em = getenv("HONE_DEVICE_EMULATE");
	if (!strcmp(name, "cuda") && em && *em && strcmp(em, "0")) {
		emulated = nn_cpu;
		emulated.name = "cuda (emulated on the CPU)";
		return &emulated;
	}
	if (strcmp(name, "cuda")) {
		herr_set(e, "device: expected \"cpu\" or \"cuda\", got \"%s\"", name);
		return NULL;
	}
	if (cuda_ops)
		return cuda_ops;
	char why[4400];
	void *h = cuda_open(why, sizeof why);
	if (!h) {
		herr_set(e, "device \"cuda\": %s", why);
		herr_hint(e, "run `make cuda` on a machine with nvcc, or point HONE_CUDA_LIB at libhone-cuda.so");
		return NULL;
	}
	const nn_ops *(*get)(char *, size_t) = (const nn_ops *(*)(char *, size_t))dlsym(h, "hone_nn_cuda");
	why[0] = 0;
	const nn_ops *ops = get ? get(why, sizeof why) : NULL;
	if (!ops) {
		herr_set(e, "device \"cuda\": %s", get ? why : "libhone-cuda.so has no hone_nn_cuda");
		dlclose(h);
		return NULL;
	}
	cuda_ops = ops; /* kept loaded for the life of the process */
	return ops;
}
