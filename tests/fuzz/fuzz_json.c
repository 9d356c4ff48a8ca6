/* libFuzzer target: the JSON parser, and path lookups on what it accepts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	static jarena *a;
	if (!a)
		a = json_arena_new();
	json_arena_reset(a);
	jerror err;
	jnode *j = json_parse(a, (const char *)data, n, &err);
	if (j) {
		json_path(j, "a.b.0");
		json_path(j, "text");
	}
	size_t pos = 0;
	json_arena_reset(a);
	while (pos < n && json_parse_next(a, (const char *)data, n, &pos, &err))
		;
	return 0;
}
