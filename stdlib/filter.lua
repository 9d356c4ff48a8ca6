-- filter { input, fn = function(line) return #line > 0 end }
--
-- Keeps the lines (records) for which fn returns a true value. Output files
-- keep the input's file names.
return {
  kind = "filter",
  takes_each = "file|lines",
  gives = "lines",
  kernel = "lua-filter",
  min_inputs = 1,
  max_inputs = 1,
  run_fn = "fn",
  summary = "keep the records (lines) for which a Lua function returns true",
  params = {
    fn = { type = "function", required = true, doc = "function(line) -> boolean" },
  },
}
