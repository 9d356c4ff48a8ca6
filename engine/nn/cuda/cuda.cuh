/*
 * The CUDA backend's common parts: the process's stream and cuBLAS handle,
 * error checks, launch sizes, the fixed-order reductions every kernel that
 * sums uses, and the entry points of each layer family's file.
 *
 * Every kernel here sums in a fixed order (a block's tree, then blocks in
 * index order): no atomics in any reduction, so the same inputs give the
 * same bits on the same GPU and build. fp32 throughout (the checking mode).
 */
#ifndef HONE_NN_CUDA_CUH
#define HONE_NN_CUDA_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "../nn.h"
}

/* One stream and one cuBLAS handle for the process: kernels of every
 * context run in order on it. */
struct cu_state {
	cudaStream_t s;
	cublasHandle_t h;
	float *ones;   /* N ones, for bias gradients as a product */
	size_t nones;
	double *red;   /* small device results (losses, counts, sums) */
	double *hred;  /* their pinned host copy */
	int sms;
	void *bf[3];   /* bf16 copies of a product's inputs (precision NN_BF16) */
	size_t nbf[3];
};
extern cu_state cu;

void cu_fatal(const char *what, const char *why, const char *file, int line);
#define CK(x)                                                                      \
	do {                                                                           \
		cudaError_t e_ = (x);                                                      \
		if (e_ != cudaSuccess)                                                     \
			cu_fatal(#x, cudaGetErrorString(e_), __FILE__, __LINE__);              \
	} while (0)
#define CKB(x)                                                                     \
	do {                                                                           \
		cublasStatus_t s_ = (x);                                                   \
		if (s_ != CUBLAS_STATUS_SUCCESS)                                           \
			cu_fatal(#x, cublasGetStatusString(s_), __FILE__, __LINE__);           \
	} while (0)
#define CKL() CK(cudaGetLastError())

static inline unsigned cu_blocks(size_t n, unsigned threads)
{
	size_t b = (n + threads - 1) / threads;
	return (unsigned)(b < 1 ? 1 : b > 65535u * 16 ? 65535u * 16 : b);
}

/* Row-major C[m×n] = alpha·op(A)·op(B) + beta·C for `batch` products
 * strides sa, sb, sc apart (cuBLAS is column-major: it computes Cᵀ). */
void cu_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, long long sa, const float *b,
             int ldb, long long sb, float beta, float *c, int ldc, long long sc, int batch);
/* The same as one product in c's precision: with NN_BF16, from bf16 copies
 * of a and b (round to nearest), fp32 accumulation, fp32 c. */
void cu_gemm_p(nn_ctx *c, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
               int ldb, float beta, float *cm, int ldc);
/* `n` ones on the device (kept) */
const float *cu_ones(size_t n);
/* Copies the first k doubles of cu.red to the host (waits for the stream). */
const double *cu_red_get(int k);

/* Sum of a block's values in a fixed tree: every thread passes its value,
 * thread 0 gets the total. blockDim.x a power of two, at most 1024. */
template <typename T> __device__ inline T block_sum(T v, T *sh)
{
	sh[threadIdx.x] = v;
	__syncthreads();
	for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s)
			sh[threadIdx.x] += sh[threadIdx.x + s];
		__syncthreads();
	}
	T r = sh[0];
	__syncthreads();
	return r;
}
template <typename T> __device__ inline T block_max(T v, T *sh)
{
	sh[threadIdx.x] = v;
	__syncthreads();
	for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s)
			sh[threadIdx.x] = sh[threadIdx.x + s] > sh[threadIdx.x] ? sh[threadIdx.x + s] : sh[threadIdx.x];
		__syncthreads();
	}
	T r = sh[0];
	__syncthreads();
	return r;
}
/* A warp's sum in a fixed butterfly; every lane gets it. */
__device__ inline float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}
__device__ inline float warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1) {
		float u = __shfl_xor_sync(0xffffffffu, v, o);
		v = u > v ? u : v;
	}
	return v;
}

/* Σ over n doubles (device) in a fixed order into cu.red[slot]. */
void cu_sum_into(const double *x, size_t n, int slot);

/* The layer families (norm.cu, attention.cu, elementwise.cu, loss.cu) */
void cu_embedding_forward(nn_ctx *c, float *out, const uint32_t *ids, const float *table, int N, int C, int V, int acc);
void cu_embedding_backward(nn_ctx *c, float *dtable, const uint32_t *ids, const float *dout, int N, int C, int V);
void cu_layernorm_forward(nn_ctx *c, float *out, float *mean, float *rstd, const float *x, const float *w,
                          const float *b, int N, int C, float eps);
void cu_layernorm_backward(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                           const float *mean, const float *rstd, int N, int C);
void cu_rmsnorm_forward(nn_ctx *c, float *out, float *rstd, const float *x, const float *w, int N, int C, float eps);
void cu_rmsnorm_backward(nn_ctx *c, float *dx, float *dw, const float *dy, const float *x, const float *w,
                         const float *rstd, int N, int C);
void cu_attention_forward(nn_ctx *c, float *y, const float *qkv, const uint8_t *mask, int B, int T, int C, int H,
                          int causal);
void cu_attention_backward(nn_ctx *c, float *dqkv, const float *dy, const float *qkv, const uint8_t *mask, int B, int T,
                           int C, int H, int causal);
/* flash.cu: the fused path (precision NN_BF16, head sizes 32, 64, 128) */
int cu_flash_ok(int C, int H);
void cu_flash_forward(nn_ctx *c, float *y, float *lse, const float *qkv, const uint8_t *mask, int B, int T, int C, int H,
                      int causal);
void cu_flash_backward(nn_ctx *c, float *dqkv, const float *dy, const float *qkv, const float *y, const float *lse,
                       const uint8_t *mask, int B, int T, int C, int H, int causal);
void cu_attention_decode(nn_ctx *c, float *y, const float *q, const float *K, const float *V, int ld, int n, int C,
                         int H);
void cu_gelu_forward(nn_ctx *c, float *y, const float *x, size_t n, int kind);
void cu_gelu_backward(nn_ctx *c, float *dx, const float *dy, const float *x, size_t n, int kind);
void cu_tanh_forward(nn_ctx *c, float *y, const float *x, size_t n);
void cu_tanh_backward(nn_ctx *c, float *dx, const float *dy, const float *y, size_t n);
void cu_dropout_forward(nn_ctx *c, float *y, const float *x, size_t n, float p, uint64_t seed, uint64_t stream);
void cu_dropout_backward(nn_ctx *c, float *dx, const float *dy, size_t n, float p, uint64_t seed, uint64_t stream);
void cu_rope(nn_ctx *c, float *x, const uint32_t *pos, const float *cs, int N, int ld, int nh, int D, int inverse);
void cu_swiglu_forward(nn_ctx *c, float *h, const float *gu, int N, int I);
void cu_swiglu_backward(nn_ctx *c, float *dgu, const float *dh, const float *gu, int N, int I);
void cu_kv_expand_forward(nn_ctx *c, float *out, const float *in, int N, int H, int Hk, int D);
void cu_kv_expand_backward(nn_ctx *c, float *din, const float *dout, int N, int H, int Hk, int D);
double cu_softmax_crossentropy(nn_ctx *c, float *dlogits, const float *logits, const int32_t *targets, int N, int V,
                               double *count);
double cu_bce_logits(nn_ctx *c, float *dlogits, const float *logits, const float *labels, const uint8_t *lmask,
                     size_t n, double *count);
double cu_mse(nn_ctx *c, float *dpred, const float *pred, const float *target, const uint8_t *lmask, size_t n,
              double *count);
double cu_sumsq(nn_ctx *c, const float *x, size_t n);
void cu_adamw(nn_ctx *c, float *p, float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
              float wd, long long t, float gscale);

#endif
