/*
 * q8 — products with Q8_0 weights as they are (ggml's blocks of 32 int8
 * values and an fp16 scale, a weight row = cols/32 blocks), for decoding a
 * token at a time from a GGUF file without turning its weights back into
 * fp32: the activation is quantized the same way (blocks of 32, scale
 * max|x|/127, values rounded), each block's int8 dot product taken exactly
 * in int32 and scaled by both scales in fp32, as llama.cpp does it
 * (vec_dot_q8_0_q8_0). AVX-512 VNNI where the machine has it (chosen at
 * run time), else plain C; the two give the same bits (the int32 sums are
 * exact, and the fp32 arithmetic is the same, block by block in order).
 */
#ifndef HONE_Q8_H
#define HONE_Q8_H

#include <stddef.h>
#include <stdint.h>

#define Q8_BLOCK 32
#define Q8_BLOCK_BYTES 34 /* fp16 scale + 32 int8 */

/* x [n] (a multiple of 32) into int8 q [n] and a scale per block d [n/32] */
void q8_quantize(const float *x, int n, int8_t *q, float *d);
/* y [rows] = (acc ? y : 0) + W xq (+ bias), W rows of cols Q8_0 values
 * (cols/32 blocks each, rows contiguous); rows split over the crew's
 * threads (NULL: this one) */
struct crew;
void q8_matvec(float *y, const uint8_t *w, int rows, int cols, const int8_t *xq, const float *xd, const float *bias,
               int acc, struct crew *cw);
/* The plain C product of one row (the reference the tests hold the fast one to) */
float q8_dot_ref(const uint8_t *wrow, const int8_t *xq, const float *xd, int cols);
/* Whether the fast path is in use here (AVX-512 VNNI) */
int q8_fast(void);

#endif
