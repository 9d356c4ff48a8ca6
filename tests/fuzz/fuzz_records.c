/* libFuzzer target: opening a (damaged) dataset file and reading every
 * value; recr_open must reject what it cannot read safely. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "io/records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	static char path[64];
	if (!path[0])
		snprintf(path, sizeof path, "/tmp/hone-fuzz-%ld.rec", (long)getpid());
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, n, f);
	fclose(f);
	herr e;
	rec_reader r;
	if (recr_open(&e, &r, path) == 0) {
		for (uint64_t row = 0; row < r.rows && row < 4096; row++)
			for (uint32_t k = 0; k < r.nfields; k++) {
				size_t len;
				switch (r.fields[k].type) {
				case REC_STR:
				case REC_CAT: recr_str(&r, (int)k, row, &len); break;
				case REC_INT: recr_int(&r, (int)k, row); break;
				case REC_FLOAT: recr_float(&r, (int)k, row); break;
				default: recr_bool(&r, (int)k, row);
				}
			}
		recr_close(&r);
	}
	return 0;
}
