-- stage "name" { inputs..., run = function(ctx, ...) ... end, outputs = {...}, param = value ... }
--
-- A custom stage written in Lua. Positional entries are inputs (stages or
-- file paths); `run` is called with a context and one artifact per
-- positional input; other named entries are parameters (ctx.params.NAME) or,
-- when they hold stages, named inputs (ctx.inputs.NAME). The function's
-- source, and what it closes over, are part of the stage key.
return {
  kind = "stage",
  kernel = "lua",
  named = true,
  run_fn = "run",
  outputs_param = "outputs",
  summary = "custom stage whose body is a Lua function",
}
