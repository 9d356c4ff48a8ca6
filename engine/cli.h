/*
 * cli — the `hone` command line: parses arguments, builds an engine, and
 * dispatches to run, status, dag, show, runs, diff, gc, verify and hash.
 *
 * Relies on: every other module.
 * Ownership: cli_main owns everything it creates and frees it before it
 * returns. It prints `hone: error: ...` (and `hint: ...`) on stderr.
 *
 * Exit codes: 0 success; 1 a stage failed, or verify found damage;
 * 2 usage error, or the pipeline script is wrong (syntax, unknown stage or
 * parameter, wrong type, cycle, missing input file).
 */
#ifndef HONE_CLI_H
#define HONE_CLI_H

int cli_main(int argc, char **argv);

#endif
