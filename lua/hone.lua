-- hone DSL runtime: loaded into every pipeline's Lua state before the script.
--
-- It runs with the full standard library (privileged) and hands the engine
-- back a table `H` with:
--   H.env            the sandboxed environment the pipeline script runs in
--   H.register(spec) turns a stdlib spec table into a stage constructor
--   H.finish()       checks that every --set override was used
--   H.fns            node index -> Lua function run by a Lua kernel
--   H.unchanged(n)   whether H.fns[n] still has the digest its key was made
--                    with (a state reused for several stage bodies)
--
-- Everything the script may touch goes through H.env: the safe parts of the
-- base library, string, table, math (seeded), utf8, and the stage
-- constructors. io, os, require, load, dofile, debug are absent: a pipeline
-- reads files only as declared stage inputs, so every dependency is in a key.

local C = ...                     -- engine bindings (dsl.c)
local getinfo, getupvalue, dgetmetatable, getlocal = debug.getinfo, debug.getupvalue, debug.getmetatable, debug.getlocal
local sdump, sformat, concat = string.dump, string.format, table.concat
-- the runtime never calls methods on strings: the string metatable is
-- handed to the sandbox below, so it uses these captured functions
local smatch, sfind = string.match, string.find
local strmeta = getmetatable("")

local H = { fns = {} }
local run_fn_hash = {}            -- node -> digest of H.fns[node] at H.finish
local info = setmetatable({}, { __mode = "k" }) -- handle -> fields
local HANDLE = {}
local builtins = {}               -- name -> value visible in the sandbox
local cnames = {}                 -- C function -> "string.lower"
local used = {}                   -- stage name -> where declared
local kind_count = {}
local overrides_used = {}

local function where(level)
  -- first stack frame that belongs to the pipeline script
  for l = level or 2, 40 do
    local i = getinfo(l, "Sl")
    if not i then break end
    if i.source == C.chunk then return C.script .. ":" .. (i.currentline or 0) end
  end
  return C.script
end

local function fail(w, msg, hint)
  if hint then msg = msg .. "\nhint: " .. hint end
  error(w .. ": " .. msg, 0)
end

local function closest(name, candidates)
  local best, bd
  for _, c in ipairs(candidates) do
    local d = C.distance(name, c)
    if not bd or d < bd then best, bd = c, d end
  end
  if bd and bd <= math.max(2, #name // 3) then return best end
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

-- handles -------------------------------------------------------------------

local function new_handle(fields)
  local h = setmetatable({}, HANDLE)
  info[h] = fields
  return h
end

HANDLE.__index = function(h, k)
  local f = info[h]
  if f.output == nil and f.outputs and f.outputs[k] then
    f.subs = f.subs or {}
    f.subs[k] = f.subs[k] or new_handle { node = f.node, output = k, name = f.name, kind = f.part_kind, by = f.by, parent = h }
    return f.subs[k]
  end
  local outs = {}
  for o in pairs(f.outputs or {}) do outs[#outs + 1] = o end
  table.sort(outs)
  fail(where(3), sformat("stage '%s' has no output '%s'", f.name or "?", tostring(k)),
       #outs > 0 and ("its outputs are: " .. concat(outs, ", ")) or
       "it has a single output; pass the stage itself")
end
HANDLE.__newindex = function() error("stage handles are read-only", 2) end
HANDLE.__metatable = false
HANDLE.__tostring = function(h)
  local f = info[h]
  return "<stage " .. (f.name or f.ref or "?") .. (f.output and ("." .. f.output) or "") .. ">"
end

local function is_handle(v) return type(v) == "table" and rawequal(dgetmetatable(v), HANDLE) end

-- kinds of what stages take and give: a stage spec says `gives` (its
-- output's kind), `gives_parts` (the kind of each named output), `takes`
-- (one entry per positional input, in any order, each "kind|kind") or
-- `takes_each` (every positional input), and a named input parameter its
-- own `takes`. A whole multi-part output has kind "parts:<part kind>".
-- Handles of kind nil (Lua stages, forward refs) are not checked.
local KIND_TEXT = {
  file = "a file or folder path",
  lines = "text lines (a file, concat, map or filter)",
  dataset = "a dataset (ingest, dedupe, or a part of split)",
  tokenizer = "a tokenizer (tokenizer)",
  ids = "token ids (tokenize's output, or one of its parts)",
  model = "a model (model or train)",
  metrics = "metrics (evaluate)",
  bundle = "a bundle (export)",
  generations = "generations (generate)",
}
local function kind_text(k)
  local part = smatch(k, "^parts:(.*)$")
  if part then return "parts of " .. (KIND_TEXT[part] or part) end
  return KIND_TEXT[k] or k
end

-- the name the script gave v (a local of the calling chunk), if any
local function varname(v)
  for l = 3, 40 do
    local i = getinfo(l, "S")
    if not i then break end
    if i.source == C.chunk then
      for n = 1, 250 do
        local name, val = getlocal(l, n)
        if not name then break end
        if rawequal(val, v) and not smatch(name, "^%(") then return name end
      end
    end
  end
end

local function kind_of(v)
  if type(v) == "string" or (type(v) == "table" and not is_handle(v)) then return "file" end
  return info[v].kind
end

local function accepts(entry, k)
  for a in string.gmatch(entry, "[^|]+") do if a == k then return true end end
  return false
end

-- why v cannot be an input where `entry` kinds are expected
local function kind_error(spec, what, entry, v, w)
  local f = is_handle(v) and info[v] or {}
  local vn = varname(v)
  if not vn and f.parent then
    local pn = varname(f.parent)
    vn = (pn or tostring(f.name)) .. "." .. f.output
  end
  local shown = vn and ("`" .. vn .. "`") or (is_handle(v) and ("`" .. tostring(f.name) .. "`") or sformat("%q", v))
  local expect = {}
  for a in string.gmatch(entry, "[^|]+") do
    -- "text lines" already names files
    if not (a == "file" and accepts(entry, "lines")) then expect[#expect + 1] = kind_text(a) end
  end
  local msg = sformat("%s: %s must be %s; %s is ", spec.kind, what, concat(expect, " or "), shown)
  local k = kind_of(v)
  local part = k and smatch(k, "^parts:(.*)$")
  if part then
    local outs = sorted_keys(f.outputs or {})
    msg = msg .. sformat("%s's output with parts %s", f.by or f.name, concat(outs, ", "))
    if accepts(entry, part) and #outs > 0 then
      local base = vn or f.name
      -- the part that most likely fits: val for a val input, train for
      -- what trains, else the held-out test part
      local want = smatch(what, "val") and { "val" } or (spec.kind == "train" and { "train" }) or { "test", "train" }
      local pick = outs[1]
      for i = #want, 1, -1 do for _, o in ipairs(outs) do if o == want[i] then pick = o end end end
      fail(w, msg, sformat("use one part, e.g. %s.%s", base, pick))
    end
    fail(w, msg)
  end
  if k == "file" then msg = msg .. "a file path"
  elseif f.output then msg = msg .. sformat("part '%s' of %s's output, %s", f.output, f.by or "a stage", kind_text(k))
  else msg = msg .. sformat("%s's output, %s", f.by or "a stage", kind_text(k)) end
  fail(w, msg)
end

-- Checks the kinds of a stage's positional inputs (values as given).
local function check_kinds(spec, given, w)
  if spec.takes_each then
    for i, v in ipairs(given) do
      local k = kind_of(v)
      if k and not accepts(spec.takes_each, k) then kind_error(spec, "input " .. i, spec.takes_each, v, w) end
    end
  elseif spec.takes then
    local free = {}
    for i = 1, #spec.takes do free[i] = true end
    for i, v in ipairs(given) do
      local k = kind_of(v)
      if k then
        local hit
        for j = 1, #spec.takes do if free[j] and accepts(spec.takes[j], k) then hit = j; break end end
        if not hit then
          local left = {}
          for j = 1, #spec.takes do if free[j] then left[#left + 1] = spec.takes[j] end end
          kind_error(spec, "input " .. i, concat(left, "|"), v, w)
        end
        free[hit] = false
      end
    end
  end
end

local function input_of(v, w, what, hub)
  if is_handle(v) then
    local f = info[v]
    return { node = f.node, output = f.output, ref = f.ref }
  elseif type(v) == "string" then
    -- hub: a Hugging Face model id may stand for a folder (model's from)
    return { node = C.add_source(v, w, nil, hub) }
  elseif type(v) == "table" and type(v.path) == "string" and type(v.as) == "string" then
    -- a file the stdlib supplies (under the hone folder), named portably
    return { node = C.add_source(v.path, w, v.as) }
  end
  fail(w, sformat("%s: expected a stage or a file path, got %s", what, type(v)))
end

-- function digests: the source text of a function and of everything it
-- closes over, so that editing it changes the key ------------------------------

local value_digest

local function fn_digest(f, seen, deep)
  if seen[f] then return "<recursive>" end
  seen[f] = true
  local i = getinfo(f, "S")
  local parts = {}
  if i.what == "C" then
    parts[1] = "C:" .. (cnames[f] or "?")
  else
    local src = C.fnsrc(f)
    parts[1] = (src or "") .. "\nbytecode:" .. sdump(f, true)
    for u = 1, 255 do
      local name, v = getupvalue(f, u)
      if not name then break end
      if name ~= "_ENV" then parts[#parts + 1] = name .. "=" .. value_digest(v, seen, deep) end
    end
    -- globals the script defined that the function's text mentions
    if src then
      for _, k in ipairs(sorted_keys(H.env)) do
        if type(k) == "string" and sfind(src, "%f[%w_]" .. k .. "%f[^%w_]") then
          parts[#parts + 1] = "global " .. k .. "=" .. value_digest(rawget(H.env, k), seen, deep)
        end
      end
    end
  end
  return concat(parts, "\n")
end

-- deep (not for keys): metatables too, to notice any change a stage body
-- made to what another one reads (H.unchanged)
value_digest = function(v, seen, deep)
  local t = type(v)
  if t == "number" then return math.type(v) .. ":" .. sformat("%.17g", v)
  elseif t == "string" then return sformat("%q", v)
  elseif t == "function" then return fn_digest(v, seen, deep)
  elseif t == "table" then
    if is_handle(v) then local f = info[v]; return "handle:" .. tostring(f.node) .. "." .. tostring(f.output) end
    if seen[v] then return "<recursive>" end
    seen[v] = true
    local parts = {}
    for _, k in ipairs(sorted_keys(v)) do
      parts[#parts + 1] = value_digest(k, seen, deep) .. "=" .. value_digest(v[k], seen, deep)
    end
    local mt = deep and dgetmetatable(v)
    if mt then parts[#parts + 1] = "meta=" .. value_digest(mt, seen, deep) end
    return "{" .. concat(parts, ",") .. "}"
  end
  return tostring(v)
end

-- A function parameter is keyed by its digest, computed after the whole
-- script has run (H.finish), because a stage body sees the script's final
-- state of whatever it closes over.
local pending_fns = {}
local function fn_param(f) return setmetatable({ __hone_fn = "0" }, C.fnmeta) end

-- parameters ----------------------------------------------------------------

local function typename(v)
  if math.type(v) == "integer" then return "integer" end
  if math.type(v) == "float" then return "number" end
  if is_handle(v) then return "stage" end
  return type(v)
end

local function describe(v)
  if type(v) == "string" then return sformat("%q", v) end
  return tostring(v)
end

local function check_type(stage, name, p, v, w)
  local t = p.type or "any"
  local ok
  if t == "any" then ok = true
  elseif t == "number" then ok = type(v) == "number"
  elseif t == "integer" then ok = math.type(v) == "integer"
  elseif t == "string" then ok = type(v) == "string"
  elseif t == "boolean" then ok = type(v) == "boolean"
  elseif t == "list" then ok = type(v) == "table" and not is_handle(v) and #v == #sorted_keys(v)
  elseif t == "table" then ok = type(v) == "table" and not is_handle(v)
  elseif t == "function" then ok = type(v) == "function"
  elseif t == "input" then
    ok = is_handle(v) or type(v) == "string" or (type(v) == "table" and type(v.path) == "string" and type(v.as) == "string")
  end
  if not ok then
    fail(w, sformat("%s: parameter '%s' expects %s, got %s (%s)", stage, name,
         t == "input" and "a stage or file path" or ("a" .. (smatch(t, "^[aeiou]") and "n " or " ") .. t),
         typename(v), describe(v)))
  end
  if p.enum then
    local found = false
    for _, e in ipairs(p.enum) do if e == v then found = true end end
    if not found then
      local names = {}
      for _, e in ipairs(p.enum) do names[#names + 1] = describe(e) end
      fail(w, sformat("%s: parameter '%s' must be one of %s, got %s", stage, name,
           concat(names, ", "), describe(v)))
    end
  end
  if p.min and type(v) == "number" and v < p.min then
    fail(w, sformat("%s: parameter '%s' must be >= %s, got %s", stage, name, tostring(p.min), describe(v)))
  end
  if p.max and type(v) == "number" and v > p.max then
    fail(w, sformat("%s: parameter '%s' must be <= %s, got %s", stage, name, tostring(p.max), describe(v)))
  end
end

-- "--set stage.param=text": the text is converted by the type the parameter
-- has (declared by the stdlib, or the type of the script's value).
local function convert_override(stage, name, text, t, w)
  local flag = "--set " .. stage .. "." .. name .. "=" .. text
  if t == "number" or t == "integer" or t == "float" then
    local v = math.tointeger(text) or tonumber(text)
    if t == "integer" then v = math.tointeger(v) end
    if t == "float" and v then v = v + 0.0 end
    if v == nil then fail("command line", sformat("%s: expected %s", flag, t == "integer" and "an integer" or "a number")) end
    return v
  elseif t == "boolean" then
    if text == "true" then return true elseif text == "false" then return false end
    fail("command line", flag .. ": expected true or false")
  elseif t == "string" or t == "any" then
    return text
  elseif t == "list" or t == "table" then
    -- a flat list, as in Lua or JSON: {128, 64}, [128,64], {"c_attn", c_fc}
    local body = smatch(text, "^%s*[%[{](.*)[%]}]%s*$")
    if not body then fail("command line", flag .. ": expected a list, as in {128, 64} or [128,64]") end
    local out = {}
    for item in string.gmatch(body .. ",", "([^,]*),") do
      item = smatch(item, "^%s*(.-)%s*$")
      if item ~= "" then
        local q = smatch(item, '^"(.*)"$') or smatch(item, "^'(.*)'$")
        local v
        if q then v = q
        elseif item == "true" then v = true
        elseif item == "false" then v = false
        elseif math.tointeger(item) then v = math.tointeger(item)
        elseif tonumber(item) then v = tonumber(item)
        elseif smatch(item, "^[%w_%.%-]+$") then v = item
        else fail("command line", sformat("%s: list item %q: expected a number, true/false or a name", flag, item)) end
        out[#out + 1] = v
      elseif not smatch(body, "^%s*$") then
        fail("command line", flag .. ": an empty list item")
      end
    end
    return out
  end
  fail("command line", sformat("%s: parameter of type %s cannot be set from the command line", flag, t))
end

-- Limits any stage accepts besides its parameters. They bound how a stage
-- runs, never what it produces, so they are kept out of its parameters
-- (and so out of its key): raising a timeout re-runs nothing.
--   timeout  seconds of wall-clock time (any stage)
--   budget   millions of Lua instructions (stages with a Lua body)
local LIMITS = {
  timeout = { type = "number", min = 0, doc = "stop the stage after this many seconds" },
  budget = { type = "integer", min = 1, doc = "millions of Lua instructions the stage body may run" },
}

local function take_limits(stage, params, spec, w)
  local lim = {}
  local o = C.overrides[stage] or {}
  for _, k in ipairs(sorted_keys(LIMITS)) do
    local v = params[k]
    if o[k] ~= nil then
      overrides_used[stage] = true
      v = convert_override(stage, k, o[k], LIMITS[k].type, w)
    end
    params[k] = nil
    if v ~= nil then
      if k == "budget" and not spec.run_fn then
        fail(w, sformat("%s: parameter 'budget' applies only to stages with a Lua body (stage, map, filter)", spec.kind),
             "bound a native stage with timeout = SECONDS")
      end
      check_type(spec.kind, k, LIMITS[k], v, w)
      lim[k] = v
    end
  end
  return lim
end

local function apply_overrides(stage, params, spec, w)
  local o = C.overrides[stage]
  if not o then return {} end
  overrides_used[stage] = true
  local names = {}
  for _, k in ipairs(sorted_keys(o)) do if not LIMITS[k] then names[#names + 1] = k end end
  for _, name in ipairs(names) do
    local t
    if spec.params then
      local p = spec.params[name]
      if not p and spec.extra_params and (type(params[name]) == "number" or
                                          (spec.extra_default and spec.extra_default[name] ~= nil)) then
        p = { type = "number" }
      end
      if not p then
        local names = sorted_keys(spec.params)
        local c = closest(name, names)
        fail("command line", sformat("--set %s.%s: stage '%s' has no parameter '%s'", stage, name, stage, name),
             c and ("did you mean '" .. c .. "'?") or ("parameters: " .. concat(names, ", ")))
      end
      t = p.type or "any"
      if t == "number" and math.type(params[name] or p.default) == "float" then t = "float" end
    else
      local cur = params[name]
      if cur == nil then
        local names = {}
        for _, k in ipairs(sorted_keys(params)) do
          if type(params[k]) ~= "function" and not is_handle(params[k]) then names[#names + 1] = k end
        end
        local c = closest(name, names)
        fail("command line", sformat("--set %s.%s: stage '%s' has no parameter '%s'", stage, name, stage, name),
             c and ("did you mean '" .. c .. "'?") or nil)
      end
      t = math.type(cur) == "float" and "float" or typename(cur)
    end
    params[name] = convert_override(stage, name, o[name], t, w)
  end
  return o
end

function H.finish()
  for _, p in ipairs(pending_fns) do
    local h = C.hash(fn_digest(p.fn, {}))
    C.set_fn(p.node, p.key, h)
    if H.fns[p.node] == p.fn then run_fn_hash[p.node] = h end
  end
  for _, stage in ipairs(sorted_keys(C.overrides)) do
    if not overrides_used[stage] then
      local names = sorted_keys(used)
      local c = closest(stage, names)
      local param = next(C.overrides[stage])
      fail("command line", sformat("--set %s.%s: no stage named '%s'", stage, param, stage),
           c and ("did you mean '" .. c .. "'?") or ("stages: " .. concat(names, ", ")))
    end
  end
end

-- A state serves the Lua stages of a run one after another. H.baseline()
-- notes, right after the script ran, a deep digest of every stage function;
-- H.unchanged(node) says whether node's function still sees exactly that
-- (nothing an earlier body did reaches it), else the engine starts afresh.
local baseline = {}
local lib_proxies = {}

function H.baseline()
  for node, f in pairs(H.fns) do baseline[node] = fn_digest(f, {}, true) end
end

function H.unchanged(node)
  for _, p in ipairs(lib_proxies) do if next(p) ~= nil then return false end end
  local f = H.fns[node]
  return f ~= nil and baseline[node] ~= nil and fn_digest(f, {}, true) == baseline[node]
end

-- stage names: the kind, then kind_2, kind_3 ... unless `name` is given
local function claim_name(kind, explicit, w)
  local name = explicit
  if not name then
    local c = (kind_count[kind] or 0) + 1
    kind_count[kind] = c
    name = c == 1 and kind or (kind .. "_" .. c)
    while used[name] do c = c + 1; kind_count[kind] = c; name = kind .. "_" .. c end
  elseif not smatch(name, "^[%a_][%w_%-]*$") then
    fail(w, sformat("stage name %q: use letters, digits, '_' and '-', starting with a letter", name))
  elseif used[name] then
    fail(w, sformat("stage name '%s' is already used (declared at %s)", name, used[name]),
         "give this stage another name with name = \"...\"")
  end
  used[name] = w
  return name
end

-- constructors --------------------------------------------------------------

local function declare(spec, args, explicit_name, w)
  if type(args) ~= "table" or is_handle(args) then
    fail(w, sformat("%s: expected a table of inputs and parameters, as in %s { input, param = value }",
         spec.kind, spec.kind))
  end
  local name = claim_name(spec.kind, explicit_name or (spec.params and args.name), w)
  local params, inputs, outputs = {}, {}, nil
  local npos = 0
  for k, v in pairs(args) do
    if math.type(k) == "integer" then npos = math.max(npos, k)
    elseif type(k) ~= "string" then fail(w, spec.kind .. ": parameter names must be strings") end
  end
  local slot = 0
  for i = 1, npos do
    if args[i] == nil then fail(w, sformat("%s: input %d is nil", spec.kind, i)) end
    local v = args[i]
    -- a path with *, ? or [ is a glob: every match is an input
    local paths = (type(v) == "string" and sfind(v, "[%*%?%[]")) and C.glob(v, w) or { v }
    for _, p in ipairs(paths) do
      slot = slot + 1
      inputs[#inputs + 1] = input_of(p, w, sformat("%s: input %d", spec.kind, i))
      inputs[#inputs].slot = tostring(slot)
    end
  end
  local nargs = npos
  npos = slot
  local min_in, max_in = spec.min_inputs or 0, spec.max_inputs or math.huge
  if npos < min_in or npos > max_in then
    fail(w, sformat("%s: takes %s input%s, got %d", spec.kind,
         min_in == max_in and tostring(min_in) or (min_in .. " to " .. (max_in == math.huge and "any number of" or max_in)),
         max_in == 1 and "" or "s", npos))
  end
  for _, k in ipairs(sorted_keys(args)) do
    local v = args[k]
    if type(k) == "string" and k ~= "name" then params[k] = v end
  end
  local limits = take_limits(name, params, spec, w)
  if spec.resolve then spec.resolve(params, C.home) end
  if spec.params then
    local overridden = apply_overrides(name, params, spec, w)
    -- extra numeric parameters collected into one table (split's parts)
    local extras
    if spec.extra_params then
      extras = {}
      for _, k in ipairs(sorted_keys(params)) do
        if not spec.params[k] and type(params[k]) == "number" then
          extras[k] = params[k]
          params[k] = nil
        end
      end
    end
    -- declared parameters: unknown names, types, defaults, required
    for k in pairs(params) do
      if not spec.params[k] then
        local names = sorted_keys(spec.params)
        local c = closest(k, names)
        fail(w, sformat("%s: unknown parameter '%s'", spec.kind, k),
             c and ("did you mean '" .. c .. "'?") or ("parameters: " .. concat(names, ", ")))
      end
    end
    for _, k in ipairs(sorted_keys(spec.params)) do
      local p = spec.params[k]
      if params[k] == nil then
        if p.required then fail(w, sformat("%s: parameter '%s' is required", spec.kind, k)) end
        params[k] = p.default
        -- hone run --device cuda (cpu is the default already: keys stay as they were)
        if k == "device" and C.device and C.device ~= "cpu" then params[k] = C.device end
      end
      if params[k] ~= nil then check_type(spec.kind, k, p, params[k], w) end
    end
    if extras then
      -- the script gave no parts (only --set did, or nothing): the defaults,
      -- with what --set gave in their place
      local given = false
      for k in pairs(extras) do if not overridden[k] then given = true end end
      if not given and spec.extra_default then
        local set, fixed = extras, 0
        for _, v in pairs(set) do fixed = fixed + v end
        extras = {}
        for k, v in pairs(spec.extra_default) do
          if not (spec.extra_sum and math.abs(fixed - spec.extra_sum) < 1e-9) then extras[k] = v end
        end
        for k, v in pairs(set) do extras[k] = v end
      end
      if spec.extra_sum then
        -- parts set from the command line keep their value; the others are
        -- scaled to fill the rest, in their proportions
        local fixed, others = 0, 0
        for k, v in pairs(extras) do
          if overridden[k] then fixed = fixed + v else others = others + v end
        end
        if next(overridden) and others > 0 and fixed > 0 and fixed < spec.extra_sum then
          for k, v in pairs(extras) do
            if not overridden[k] then extras[k] = tonumber(sformat("%.12g", v * (spec.extra_sum - fixed) / others)) end
          end
        end
      end
      params[spec.extra_params] = extras
      for k in pairs(extras) do
        if type(k) ~= "string" or not smatch(k, "^[%w_%-]+$") then fail(w, sformat("%s: part name %q: use letters, digits, '_' and '-'", spec.kind, k)) end
      end
    end
    if spec.validate then
      local msg = spec.validate(params, npos)
      if msg then fail(w, spec.kind .. ": " .. msg) end
    end
    local given = {}
    for i = 1, nargs do given[i] = args[i] end
    check_kinds(spec, given, w)
  else
    apply_overrides(name, params, spec, w)
  end
  -- named inputs (stages passed as parameters), functions, outputs
  local fns = {}
  for _, k in ipairs(sorted_keys(params)) do
    local v = params[k]
    local p = spec.params and spec.params[k]
    if (p and p.type == "input") or is_handle(v) then
      local vk = kind_of(v)
      if p and p.takes and vk and not accepts(p.takes, vk) then kind_error(spec, "'" .. k .. "'", p.takes, v, w) end
      local inp = input_of(v, w, sformat("%s: input '%s'", spec.kind, k), p and p.hub)
      inp.slot = k
      inputs[#inputs + 1] = inp
      params[k] = nil
    elseif type(v) == "function" then
      fns[k] = v
      params[k] = fn_param(v)
    end
  end
  if spec.outputs_param then
    outputs = params[spec.outputs_param]
    if outputs ~= nil then
      if type(outputs) ~= "table" then fail(w, spec.kind .. ": outputs must be a list of names") end
      for _, o in ipairs(outputs) do
        if type(o) ~= "string" or not smatch(o, "^[%w_%-]+$") then
          fail(w, sformat("%s: output name %s: use letters, digits, '_' and '-'", spec.kind, describe(o)))
        end
      end
    end
  elseif spec.outputs then
    outputs = spec.outputs
  elseif spec.extra_params and spec.params then
    outputs = sorted_keys(params[spec.extra_params])
  elseif spec.outputs_like_input and is_handle(args[1]) and not info[args[1]].output and info[args[1]].outputs then
    -- one output per output of the first input (tokenize over split's parts)
    outputs = sorted_keys(info[args[1]].outputs)
  end
  if spec.run_fn and not fns[spec.run_fn] then
    fail(w, sformat("%s: parameter '%s' must be a function, as in %s = function(...) ... end",
         spec.kind, spec.run_fn, spec.run_fn))
  end
  local node = C.add_stage(name, spec.kind, spec.kernel, params, inputs, outputs or {}, w, limits)
  if spec.run_fn then H.fns[node] = fns[spec.run_fn] end
  for _, k in ipairs(sorted_keys(fns)) do pending_fns[#pending_fns + 1] = { node = node, key = k, fn = fns[k] } end
  local outset
  if outputs then outset = {}; for _, o in ipairs(outputs) do outset[o] = true end end
  local kind, part_kind = spec.gives, spec.gives_parts
  if spec.outputs_like_input and outputs and spec.gives and not spec.outputs then
    kind, part_kind = "parts:" .. spec.gives, spec.gives
  elseif part_kind then
    kind = "parts:" .. part_kind
  end
  return new_handle { node = node, name = name, outputs = outset, kind = kind, part_kind = part_kind, by = spec.kind }
end

function H.register(spec)
  assert(type(spec) == "table" and type(spec.kind) == "string", "stdlib file must return a stage spec")
  local ctor
  if spec.named then
    -- stage "name" { ... }
    ctor = function(name)
      local w = where(2)
      if type(name) ~= "string" then
        fail(w, sformat("%s: expected a name first, as in %s \"clean\" { input, run = function(ctx, input) ... end }",
             spec.kind, spec.kind))
      end
      return function(args) return declare(spec, args, name, where(2)) end
    end
  else
    ctor = function(args) return declare(spec, args, nil, where(2)) end
  end
  builtins[spec.kind] = ctor
  return ctor
end

-- builtins that are not stages ----------------------------------------------

-- ref "stage[.output]": a forward reference resolved after the script ran
builtins.ref = function(target)
  local w = where(2)
  if type(target) ~= "string" then fail(w, "ref: expected a stage name, as in ref \"train\"") end
  return new_handle { ref = target, name = target }
end

-- file "path": declares a source file or folder explicitly
builtins.file = function(path)
  local w = where(2)
  if type(path) ~= "string" then fail(w, "file: expected a path, as in file \"data/train.jsonl\"") end
  return new_handle { node = C.add_source(path, w), name = path }
end

-- the sandbox ----------------------------------------------------------------

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local safe = { "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber",
               "tostring", "type", "xpcall", "rawequal", "rawlen", "rawget", "rawset",
               "setmetatable", "getmetatable", "print" }
for _, k in ipairs(safe) do builtins[k] = _G[k]; cnames[_G[k]] = k end
-- finalizers run with hooks off, so an endless one could not be stopped:
-- the sandbox has none (Lua 5.4 marks a finalizer only at setmetatable)
local raw_setmetatable = setmetatable
builtins.setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    fail(where(2), "setmetatable: __gc finalizers are not available in a pipeline")
  end
  return raw_setmetatable(t, mt)
end
cnames[builtins.setmetatable] = "setmetatable"
math.randomseed(0x686f6e65) -- deterministic
local function readonly(lib, t)
  return setmetatable({}, {
    __index = t,
    __newindex = function(_, k) fail(where(3), sformat("cannot modify %s.%s: library tables are read-only", lib, tostring(k))) end,
    __pairs = function() return next, t, nil end,
    __metatable = false,
  })
end
for _, lib in ipairs { "string", "table", "math", "utf8" } do
  local c = copy(_G[lib])
  if lib == "string" then c.dump = nil end
  for k, v in pairs(c) do if type(v) == "function" then cnames[v] = lib .. "." .. k end end
  builtins[lib] = readonly(lib, c)
  lib_proxies[#lib_proxies + 1] = builtins[lib]
end
-- methods on strings ("x"):upper() reach the sandbox's read-only string
-- table, and getmetatable("") reveals nothing
strmeta.__index = builtins.string
strmeta.__metatable = false
builtins._VERSION = _VERSION

-- why each denied name is out of reach: what it would break
local function why_denied(name)
  if smatch(name, "^os%.") and (name == "os.time" or name == "os.clock" or name == "os.date" or name == "os.getenv") then
    return name .. " is not available in a pipeline: its value would differ from run to run (or machine to machine) "
           .. "without the stage's key changing, so cached results would be wrong",
           "pass what you need as a parameter (--set stage.param=VALUE), or use the seed parameters for randomness"
  elseif name == "require" or name == "dofile" or name == "loadfile" or smatch(name, "^package%.") then
    return name .. " is not available in a pipeline: code loaded from other files would not be in any stage's key, "
           .. "so editing it would not re-run what depends on it",
           "put the code in the pipeline file itself (functions are keyed by their source)"
  elseif name == "load" or smatch(name, "^debug%.") or name == "collectgarbage" then
    return name .. " is not available in a pipeline: it reaches past the sandbox that keeps runs reproducible", nil
  end
  return name .. " is not available in a pipeline: files reach stages only as declared inputs, so that "
         .. "every file a result depends on is in its key",
         "pass the path as a stage input, e.g. stage \"x\" { \"data/a.txt\", run = function(ctx, a) ... a:read() ... end }, or declare it with file \"data/a.txt\""
end
local function denied(name)
  return function()
    local msg, hint = why_denied(name)
    fail(where(3), msg, hint)
  end
end
local function denied_lib(name)
  return setmetatable({}, { __index = function(_, k) return denied(name .. "." .. tostring(k)) end })
end
for _, k in ipairs { "io", "os", "package", "debug" } do builtins[k] = denied_lib(k) end
for _, k in ipairs { "require", "dofile", "loadfile", "load", "collectgarbage" } do builtins[k] = denied(k) end

H.env = setmetatable({}, {
  __index = function(_, k)
    local v = builtins[k]
    if v ~= nil then return v end
    local names = {}
    for n, b in pairs(builtins) do if type(b) == "function" then names[#names + 1] = n end end
    table.sort(names)
    local c = closest(tostring(k), names)
    fail(where(3), sformat("unknown stage or global '%s'", tostring(k)),
         c and ("did you mean '" .. c .. "'?") or nil)
  end,
  __newindex = function(t, k, v)
    if builtins[k] ~= nil then fail(where(3), sformat("cannot redefine built-in '%s'", tostring(k))) end
    rawset(t, k, v)
  end,
  __metatable = false,
})

return H
