-- map { input, fn = function(line) return line:upper() end }
--
-- Record-wise transform: calls fn on every line of every file of its input
-- (files in byte order of their names, lines without their "\n"). fn returns
-- a string (the new line), nil (drop the line) or a list of strings (several
-- lines). Output files keep the input's file names.
return {
  kind = "map",
  takes_each = "file|lines",
  gives = "lines",
  kernel = "lua-map",
  min_inputs = 1,
  max_inputs = 1,
  run_fn = "fn",
  summary = "transform every record (line) with a Lua function",
  params = {
    fn = { type = "function", required = true, doc = "function(line) -> string | nil | {strings}" },
  },
}
