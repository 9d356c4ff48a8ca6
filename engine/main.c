/* hone — declarative fine-tuning pipelines. The only place that exits. */
#include <stdlib.h>

#include "cli.h"

int main(int argc, char **argv)
{
	exit(cli_main(argc, argv));
}
