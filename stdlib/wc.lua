-- wc { input }
--
-- Native. Counts lines, words (runs of non-whitespace bytes) and bytes of
-- every file of its input. Writes counts.tsv (file, lines, words, bytes, and
-- a "total" row) and reports the totals as metrics.
return {
  kind = "wc",
  takes_each = "file|lines",
  gives = "lines",
  kernel = "wc",
  min_inputs = 1,
  max_inputs = 1,
  summary = "count lines, words and bytes",
  params = {},
}
