/* libFuzzer target: the CSV reader with both delimiters. */
#include <stdint.h>
#include <stddef.h>

#include "io/csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	for (int d = 0; d < 2; d++) {
		csv c;
		csv_init(&c, (const char *)data, n, d ? '\t' : ',');
		for (int rows = 0; rows < 100000 && csv_next(&c) == 1; rows++)
			for (size_t k = 0; k < c.nf; k++) {
				size_t len;
				const char *f = csv_field(&c, k, &len);
				(void)f;
			}
		csv_free(&c);
	}
	return 0;
}
