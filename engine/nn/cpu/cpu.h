/*
 * Internals of the CPU backend shared between its files (cpu.c, attn.c),
 * and the one switch the tests use. Not part of the nn.h interface.
 */
#ifndef HONE_NN_CPU_H
#define HONE_NN_CPU_H

#include <stddef.h>
#include <stdint.h>

/* Whether the fused attention kernel (attn.c, AVX-512F) runs on this
 * machine; else cpu.c's sgemm-per-head path does. */
int cpu_attn_fused(void);

/* Floats of scratch one thread needs for one head (backward: 1, forward: 0) */
size_t cpu_attn_scratch(int T, int hd, int backward);

/* One head of one sequence. q: the head's first query (row 0 of the
 * sequence's qkv [T, 3C], column h·hd); k, v are C and 2C floats further.
 * km: the sequence's key mask (NULL: none). Forward writes y (row stride C);
 * backward adds into dq (the head's column of dqkv, same layout as q). */
void cpu_attn_fwd_head(float *y, const float *q, const uint8_t *km, int T, int C, int hd, int causal, float scale,
                       float *scratch);
void cpu_attn_bwd_head(float *dq, const float *dy, const float *q, const uint8_t *km, int T, int C, int hd, int causal,
                       float scale, float *scratch);

/* The keys a row's mask lets through when they are a prefix 0..L-1 (a
 * padded row: the usual case), L; T without a mask; -1 for any other mask
 * (or none visible), which takes the general path. */
static inline int prefix_len(const uint8_t *km, int T)
{
	if (!km)
		return T;
	int L = 0;
	while (L < T && km[L])
		L++;
	for (int x = L; x < T; x++)
		if (km[x])
			return -1;
	return L > 0 ? L : -1;
}

/* Tests: 0 makes attention take the sgemm path even where the fused kernel
 * could run, 1 (the default) lets it choose. Set it while no attention call
 * is running. */
void nn_cpu_attention_fused(int allow);

#endif
