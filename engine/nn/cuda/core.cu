/*
 * The CUDA backend of engine/nn/nn.h: memory, the matrix products (cuBLAS,
 * fp32, no TF32), the linear layer, the optimizer's passes, and the table
 * that nn_backend("cuda") loads from libhone-cuda.so (hone_nn_cuda).
 */
#include "cuda.cuh"

#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>

cu_state cu;

void cu_fatal(const char *what, const char *why, const char *file, int line)
{
	fprintf(stderr, "hone: CUDA: %s failed: %s (%s:%d)\n", what, why, file, line);
	exit(1);
}

/* --- memory ---------------------------------------------------------------------- */

/* the most device memory in use (cudaMemGetInfo: the context and cuBLAS's
 * workspace included) seen after an allocation, for peak_bytes */
static size_t peak;

static void note_peak(void)
{
	size_t fr = 0, tot = 0;
	if (cudaMemGetInfo(&fr, &tot) == cudaSuccess && tot - fr > peak)
		peak = tot - fr;
}

static size_t cu_peak_bytes(nn_ctx *c)
{
	(void)c;
	note_peak();
	return peak;
}

static void *cu_alloc(nn_ctx *c, size_t n)
{
	(void)c;
	void *p = NULL;
	cudaError_t e = cudaMalloc(&p, n ? n : 1);
	if (e != cudaSuccess) {
		size_t fr = 0, tot = 0;
		cudaGetLastError();
		cudaMemGetInfo(&fr, &tot);
		fprintf(stderr, "hone: CUDA: out of device memory: asked for %.1f MiB with %.1f of %.1f MiB free\n",
		        (double)n / 1048576.0, (double)fr / 1048576.0, (double)tot / 1048576.0);
		exit(1);
	}
	CK(cudaMemsetAsync(p, 0, n ? n : 1, cu.s));
	note_peak();
	return p;
}

static void cu_free(nn_ctx *c, void *p)
{
	(void)c;
	if (p)
		CK(cudaFree(p));
}

static void cu_zero(nn_ctx *c, void *p, size_t n)
{
	(void)c;
	if (n)
		CK(cudaMemsetAsync(p, 0, n, cu.s));
}

static void cu_copy(nn_ctx *c, void *d, const void *s, size_t n)
{
	(void)c;
	if (n && d != s)
		CK(cudaMemcpyAsync(d, s, n, cudaMemcpyDeviceToDevice, cu.s));
}

static void cu_upload(nn_ctx *c, void *d, const void *h, size_t n)
{
	(void)c;
	if (n)
		CK(cudaMemcpyAsync(d, h, n, cudaMemcpyHostToDevice, cu.s));
	CK(cudaStreamSynchronize(cu.s)); /* the host buffer is the caller's again */
}

static void cu_download(nn_ctx *c, void *h, const void *s, size_t n)
{
	(void)c;
	if (n)
		CK(cudaMemcpyAsync(h, s, n, cudaMemcpyDeviceToHost, cu.s));
	CK(cudaStreamSynchronize(cu.s));
}

const float *cu_ones(size_t n)
{
	if (n > cu.nones) {
		if (cu.ones)
			CK(cudaFree(cu.ones));
		size_t k = n < 4096 ? 4096 : n;
		CK(cudaMalloc(&cu.ones, k * sizeof(float)));
		float *h = (float *)malloc(k * sizeof(float));
		for (size_t i = 0; i < k; i++)
			h[i] = 1.0f;
		CK(cudaMemcpy(cu.ones, h, k * sizeof(float), cudaMemcpyHostToDevice));
		free(h);
		cu.nones = k;
	}
	return cu.ones;
}

const double *cu_red_get(int k)
{
	CK(cudaMemcpyAsync(cu.hred, cu.red, (size_t)k * sizeof(double), cudaMemcpyDeviceToHost, cu.s));
	CK(cudaStreamSynchronize(cu.s));
	return cu.hred;
}

__global__ void k_sum_doubles(double *out, const double *x, size_t n)
{
	__shared__ double sh[1024];
	double s = 0;
	for (size_t i = threadIdx.x; i < n; i += blockDim.x)
		s += x[i];
	s = block_sum(s, sh);
	if (threadIdx.x == 0)
		*out = s;
}

void cu_sum_into(const double *x, size_t n, int slot)
{
	k_sum_doubles<<<1, 1024, 0, cu.s>>>(cu.red + slot, x, n);
	CKL();
}

/* --- products ---------------------------------------------------------------------- */

void cu_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, long long sa, const float *b,
             int ldb, long long sb, float beta, float *c, int ldc, long long sc, int batch)
{
	if (m <= 0 || n <= 0)
		return;
	cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
	if (k <= 0) { /* C = beta·C */
		alpha = 0;
		k = 1;
	}
	if (batch == 1)
		CKB(cublasSgemm(cu.h, ob, oa, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc));
	else
		CKB(cublasSgemmStridedBatched(cu.h, ob, oa, n, m, k, &alpha, b, ldb, sb, a, lda, sa, &beta, c, ldc, sc, batch));
}

/* rows × cols of x (row stride ld) → a bf16 matrix of prow × pcol (its
 * row stride), zero outside x */
__global__ void k_to_bf16(__nv_bfloat16 *d, const float *s, int rows, int cols, int ld, int prow, int pcol)
{
	size_t n = (size_t)prow * pcol;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		size_t r = i / (size_t)pcol, c = i % (size_t)pcol;
		d[i] = r < (size_t)rows && c < (size_t)cols ? __float2bfloat16_rn(s[r * ld + c]) : __float2bfloat16_rn(0.0f);
	}
}

/* A bf16 copy of the rows × cols matrix x (row stride ld) in buffer slot,
 * both dimensions padded with zeros to a multiple of 8 (its row stride: ld) */
struct bfm {
	const __nv_bfloat16 *p;
	int ld;
};

static int up8(int x) { return (x + 7) / 8 * 8; }

/* The same, eight columns a thread (pcol is a multiple of 8) with 32-bit
 * indices (no 64-bit division per value) and, where x's rows are 16-byte
 * aligned, two float4 loads: the same rounding, value for value */
__global__ void k_to_bf16_8(__nv_bfloat16 *d, const float *s, int rows, int cols, int ld, int prow, int pcol, int vec)
{
	unsigned per = (unsigned)pcol / 8, n = (unsigned)prow * per;
	for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		unsigned r = i / per, c = (i % per) * 8;
		float v[8];
		if (vec && r < (unsigned)rows && c + 8 <= (unsigned)cols) {
			const float4 *x = (const float4 *)(s + (size_t)r * ld + c);
			float4 a = x[0], b = x[1];
			v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
		} else {
			for (int j = 0; j < 8; j++)
				v[j] = r < (unsigned)rows && c + j < (unsigned)cols ? s[(size_t)r * ld + c + j] : 0.0f;
		}
		__nv_bfloat162 o[4] = {__floats2bfloat162_rn(v[0], v[1]), __floats2bfloat162_rn(v[2], v[3]),
		                       __floats2bfloat162_rn(v[4], v[5]), __floats2bfloat162_rn(v[6], v[7])};
		*(uint4 *)(d + (size_t)r * pcol + c) = *(uint4 *)o;
	}
}

static bfm to_bf16(int slot, const float *x, int rows, int cols, int ld)
{
	int prow = up8(rows), pcol = up8(cols);
	size_t n = (size_t)prow * (size_t)pcol;
	if (n > cu.nbf[slot]) {
		if (cu.bf[slot])
			CK(cudaFree(cu.bf[slot]));
		CK(cudaMalloc(&cu.bf[slot], n * sizeof(__nv_bfloat16)));
		cu.nbf[slot] = n;
		note_peak();
	}
	__nv_bfloat16 *d = (__nv_bfloat16 *)cu.bf[slot];
	if (n / 8 < 0xffffffffu) {
		int vec = ld % 4 == 0 && (size_t)x % 16 == 0;
		k_to_bf16_8<<<cu_blocks(n / 8, 256), 256, 0, cu.s>>>(d, x, rows, cols, ld, prow, pcol, vec);
	} else {
		k_to_bf16<<<cu_blocks(n, 256), 256, 0, cu.s>>>(d, x, rows, cols, ld, prow, pcol);
	}
	CKL();
	return bfm{d, pcol};
}

/* C[rows × cols] (stride ldc) to or from a packed copy of stride pc */
__global__ void k_copy2d(float *d, int ldd, const float *s, int lds, int rows, int cols)
{
	size_t n = (size_t)rows * cols;
	if (n < 0xffffffffu) { /* 32-bit indices: no 64-bit division per value */
		for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < (unsigned)n; i += gridDim.x * blockDim.x) {
			unsigned r = i / (unsigned)cols, c = i % (unsigned)cols;
			d[(size_t)r * ldd + c] = s[(size_t)r * lds + c];
		}
		return;
	}
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		size_t r = i / (size_t)cols, c = i % (size_t)cols;
		d[r * ldd + c] = s[r * lds + c];
	}
}

/* C = alpha·op(A)·op(B) + beta·C from bf16 copies (to_bf16's: K padded
 * with zeros, so the sums are the same), fp32 accumulation, into c, or
 * into an aligned copy of c when c's rows are not aligned or m is not a
 * multiple of 8 (the copies hold zeros up to it: cuBLAS would otherwise
 * take its kernels for unaligned data, a 50,257-row weight gradient five
 * times slower; the rows past m are computed and dropped). */
static void gemm_bf(nn_ctx *c, int ta, int tb, int m, int n, int k, float alpha, bfm a, bfm b, float beta, float *cm,
                    int ldc)
{
	float *out = cm;
	int np = up8(n), mp = up8(m), ldo = ldc, pad = ldc % 8 != 0 || (size_t)cm % 16 != 0 || mp != m;
	if (pad) {
		out = (float *)nn_scratch(c, (size_t)mp * np * sizeof(float));
		ldo = np;
		if (beta != 0) {
			k_copy2d<<<cu_blocks((size_t)m * n, 256), 256, 0, cu.s>>>(out, ldo, cm, ldc, m, n);
			CKL();
		}
	}
	cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
	CKB(cublasSetMathMode(cu.h, CUBLAS_DEFAULT_MATH));
	CKB(cublasGemmEx(cu.h, ob, oa, n, pad ? mp : m, up8(k), &alpha, b.p, CUDA_R_16BF, b.ld, a.p, CUDA_R_16BF, a.ld, &beta,
	                 out, CUDA_R_32F, ldo, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	CKB(cublasSetMathMode(cu.h, CUBLAS_PEDANTIC_MATH));
	if (pad) {
		k_copy2d<<<cu_blocks((size_t)m * n, 256), 256, 0, cu.s>>>(cm, ldc, out, ldo, m, n);
		CKL();
	}
}

/* the operand a product reads: m × k (or k × m transposed), as stored */
static bfm operand(int slot, const float *x, int t, int rows, int cols, int ld)
{
	return t ? to_bf16(slot, x, cols, rows, ld) : to_bf16(slot, x, rows, cols, ld);
}

/* With NN_BF16: the product from bf16 copies of a and b, every dimension
 * padded to a multiple of 8 with zeros (the tensor cores' kernels want
 * 16-byte rows; a vocabulary of 50,257 would otherwise take a kernel for
 * unaligned data at a fraction of the speed). */
void cu_gemm_p(nn_ctx *c, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
               int ldb, float beta, float *cm, int ldc)
{
	if (c->precision != NN_BF16 || m <= 0 || n <= 0 || k <= 0) {
		cu_gemm(ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, cm, ldc, 0, 1);
		return;
	}
	gemm_bf(c, ta, tb, m, n, k, alpha, operand(0, a, ta, m, k, lda), operand(1, b, tb, k, n, ldb), beta, cm, ldc);
}

static void cu_matmul(nn_ctx *c, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                      const float *b, int ldb, float beta, float *cm, int ldc)
{
	cu_gemm_p(c, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc);
}

__global__ void k_add_bias(float *y, const float *b, size_t n, int D)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		y[i] += b[i % (size_t)D];
}

/* four values a thread, 32-bit indices (D a multiple of 4, both aligned) */
__global__ void k_add_bias4(float4 *y, const float4 *b, unsigned n4, unsigned D4)
{
	for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += gridDim.x * blockDim.x) {
		float4 v = y[i], w = b[i % D4];
		v.x += w.x, v.y += w.y, v.z += w.z, v.w += w.w;
		y[i] = v;
	}
}

static void add_bias(float *y, const float *b, int N, int D)
{
	size_t n = (size_t)N * (size_t)D;
	if (D % 4 == 0 && n / 4 < 0xffffffffu && (size_t)y % 16 == 0 && (size_t)b % 16 == 0)
		k_add_bias4<<<cu_blocks(n / 4, 256), 256, 0, cu.s>>>((float4 *)y, (const float4 *)b, (unsigned)(n / 4),
		                                                     (unsigned)(D / 4));
	else
		k_add_bias<<<cu_blocks(n, 256), 256, 0, cu.s>>>(y, b, n, D);
	CKL();
}

static void cu_linear_forward(nn_ctx *c, float *y, const float *x, const float *w, const float *b, int N, int in,
                              int out, int layout, int acc)
{
	if (layout == NN_W_IN_OUT)
		cu_gemm_p(c, 0, 0, N, out, in, 1.0f, x, in, w, out, acc ? 1.0f : 0.0f, y, out);
	else
		cu_gemm_p(c, 0, 1, N, out, in, 1.0f, x, in, w, in, acc ? 1.0f : 0.0f, y, out);
	if (b)
		add_bias(y, b, N, out);
}

static void cu_linear_backward(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, int N, int in, int out, int layout)
{
	if (c->precision == NN_BF16 && N > 0 && in > 0 && out > 0) { /* dy made bf16 once for both products */
		bfm g = to_bf16(2, dy, N, out, out);
		if (dw && layout == NN_W_IN_OUT)
			gemm_bf(c, 1, 0, in, out, N, 1.0f, to_bf16(0, x, N, in, in), g, 1.0f, dw, out);
		else if (dw)
			gemm_bf(c, 1, 0, out, in, N, 1.0f, g, to_bf16(0, x, N, in, in), 1.0f, dw, in);
		if (db)
			cu_gemm(0, 0, 1, out, N, 1.0f, cu_ones((size_t)N), N, 0, dy, out, 0, 1.0f, db, out, 0, 1);
		if (dx && layout == NN_W_IN_OUT)
			gemm_bf(c, 0, 1, N, in, out, 1.0f, g, to_bf16(1, w, in, out, out), 1.0f, dx, in);
		else if (dx)
			gemm_bf(c, 0, 0, N, in, out, 1.0f, g, to_bf16(1, w, out, in, in), 1.0f, dx, in);
		return;
	}
	if (dw && layout == NN_W_IN_OUT)
		cu_gemm_p(c, 1, 0, in, out, N, 1.0f, x, in, dy, out, 1.0f, dw, out);
	else if (dw)
		cu_gemm_p(c, 1, 0, out, in, N, 1.0f, dy, out, x, in, 1.0f, dw, in);
	if (db) /* Σ over rows as a product with ones, in fp32: a fixed order */
		cu_gemm(0, 0, 1, out, N, 1.0f, cu_ones((size_t)N), N, 0, dy, out, 0, 1.0f, db, out, 0, 1);
	if (dx && layout == NN_W_IN_OUT)
		cu_gemm_p(c, 0, 1, N, in, out, 1.0f, dy, out, w, out, 1.0f, dx, in);
	else if (dx)
		cu_gemm_p(c, 0, 0, N, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);
}

/* --- the optimizer ----------------------------------------------------------------- */

#define SUM_CHUNK 16384

/* one block per chunk of SUM_CHUNK values, summed in double */
__global__ void k_sumsq_chunks(double *part, const float *x, size_t n)
{
	__shared__ double sh[256];
	size_t lo = (size_t)blockIdx.x * SUM_CHUNK, hi = lo + SUM_CHUNK < n ? lo + SUM_CHUNK : n;
	double s = 0;
	for (size_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
		s += (double)x[i] * x[i];
	s = block_sum(s, sh);
	if (threadIdx.x == 0)
		part[blockIdx.x] = s;
}

double cu_sumsq(nn_ctx *c, const float *x, size_t n)
{
	if (!n)
		return 0;
	size_t chunks = (n + SUM_CHUNK - 1) / SUM_CHUNK;
	double *part = (double *)nn_scratch(c, chunks * sizeof(double));
	k_sumsq_chunks<<<(unsigned)chunks, 256, 0, cu.s>>>(part, x, n);
	CKL();
	cu_sum_into(part, chunks, 0);
	return cu_red_get(1)[0];
}

/* engine/ml/optim.c's adamw_part, element for element */
__global__ void k_adamw(float *p, float *g, float *m, float *v, size_t n, float b1, float b2, float eps, float decay,
                        float step, float bc2s, float gs)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		nn_adamw_one(p + i, g + i, m + i, v + i, b1, b2, eps, decay, step, bc2s, gs);
}

void cu_adamw(nn_ctx *c, float *p, float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
              float wd, long long t, float gscale)
{
	(void)c;
	float bc1 = (float)(1.0 - pow((double)b1, (double)t)), bc2s = (float)sqrt(1.0 - pow((double)b2, (double)t));
	k_adamw<<<cu_blocks(n, 256), 256, 0, cu.s>>>(p, g, m, v, n, b1, b2, eps, 1.0f - lr * wd, lr / bc1, bc2s, gscale);
	CKL();
}

/* --- attention that keeps its log-sum-exp: fused in bf16, else the plain path ------------- */

static void cu_attention_forward_lse(nn_ctx *c, float *y, float *lse, const float *qkv, const uint8_t *mask, int B, int T,
                                     int C, int H, int causal)
{
	if (c->precision == NN_BF16 && cu_flash_ok(C, H) && B > 0 && T > 0)
		cu_flash_forward(c, y, lse, qkv, mask, B, T, C, H, causal);
	else
		cu_attention_forward(c, y, qkv, mask, B, T, C, H, causal);
}

static void cu_attention_backward_lse(nn_ctx *c, float *dqkv, const float *dy, const float *qkv, const float *y,
                                      const float *lse, const uint8_t *mask, int B, int T, int C, int H, int causal)
{
	if (c->precision == NN_BF16 && cu_flash_ok(C, H) && B > 0 && T > 0)
		cu_flash_backward(c, dqkv, dy, qkv, y, lse, mask, B, T, C, H, causal);
	else
		cu_attention_backward(c, dqkv, dy, qkv, mask, B, T, C, H, causal);
}

/* --- the table ------------------------------------------------------------------------ */

static const nn_ops nn_cuda = {
	"cuda", NULL, NULL,
	cu_alloc, cu_free, cu_zero, cu_copy, cu_upload, cu_download,
	cu_matmul,
	cu_linear_forward, cu_linear_backward,
	cu_embedding_forward, cu_embedding_backward,
	cu_layernorm_forward, cu_layernorm_backward,
	cu_rmsnorm_forward, cu_rmsnorm_backward,
	cu_attention_forward, cu_attention_backward, cu_attention_decode,
	cu_gelu_forward, cu_gelu_backward,
	cu_tanh_forward, cu_tanh_backward,
	cu_softmax_crossentropy, cu_bce_logits, cu_mse,
	cu_dropout_forward, cu_dropout_backward,
	cu_rope, cu_swiglu_forward, cu_swiglu_backward, cu_kv_expand_forward, cu_kv_expand_backward,
	cu_sumsq, cu_adamw,
	cu_attention_forward_lse, cu_attention_backward_lse,
	cu_peak_bytes,
};

/* What nn_backend calls after dlopen: the table, or NULL with the reason
 * (no GPU, a driver too old for this build). */
extern "C" __attribute__((visibility("default"))) const nn_ops *hone_nn_cuda(char *why, size_t n)
{
	static int ready;
	if (ready)
		return &nn_cuda;
	int dev = 0;
	cudaError_t e = cudaGetDeviceCount(&dev);
	if (e != cudaSuccess || dev < 1) {
		snprintf(why, n, "no CUDA device here (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
		return NULL;
	}
	cudaDeviceProp pr;
	if (cudaGetDeviceProperties(&pr, 0) != cudaSuccess || cudaStreamCreateWithFlags(&cu.s, cudaStreamNonBlocking) != cudaSuccess) {
		snprintf(why, n, "the CUDA device could not be opened");
		return NULL;
	}
	cu.sms = pr.multiProcessorCount;
	if (cublasCreate(&cu.h) != CUBLAS_STATUS_SUCCESS) {
		snprintf(why, n, "cuBLAS could not start");
		return NULL;
	}
	CKB(cublasSetStream(cu.h, cu.s));
	CKB(cublasSetMathMode(cu.h, CUBLAS_PEDANTIC_MATH)); /* fp32 products in fp32: no TF32 */
	CKB(cublasSetAtomicsMode(cu.h, CUBLAS_ATOMICS_NOT_ALLOWED));
	void *ws = NULL; /* Hopper's products want a larger workspace than cuBLAS's default */
	CK(cudaMalloc(&ws, 32u << 20));
	CKB(cublasSetWorkspace(cu.h, ws, 32u << 20));
	CK(cudaMalloc(&cu.red, 64 * sizeof(double)));
	CK(cudaMallocHost(&cu.hred, 64 * sizeof(double)));
	ready = 1;
	return &nn_cuda;
}
