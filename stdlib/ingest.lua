-- ingest { "data/mail.tgz", "data/more/", format = "json", members = "*/spam-*/*.json",
--          fields = { text = "text", label = "group" }, labels = { ["spam-1"] = "spam", ["*"] = "ham" } }
--
-- Native. Reads files, folders (recursively) and archives in place (tar,
-- tar.gz/tgz, tar.xz, tar.zst, tar.bz2, zip) in JSON Lines, JSON (one
-- document or an array), CSV/TSV or plain text, and writes a dataset.
-- See docs/stages/ingest.md.
local formats = { "auto", "jsonl", "json", "csv", "tsv", "text" }
return {
  kind = "ingest",
  takes_each = "file|lines",
  gives = "dataset",
  kernel = "ingest",
  min_inputs = 1,
  summary = "read files and archives into a dataset",
  params = {
    fields = { type = "table", doc = "dataset field -> dotted JSON path or CSV column (default { text = \"text\" })" },
    types = { type = "table", doc = "dataset field -> string | int | float | bool | category" },
    format = { type = "string", default = "auto", enum = formats },
    members = { type = "any", doc = "glob (or list of globs) selecting archive members and folder files" },
    label_from = { type = "string", enum = { "dirname" } },
    labels = { type = "table", doc = "label -> new label, with \"*\" for all others" },
    required = { type = "list", doc = "fields that must be present (default: all)" },
    utf8 = { type = "string", default = "error", enum = { "error", "replace", "drop" } },
    normalize = { type = "string", default = "nfc", enum = { "none", "nfc", "nfkc" } },
    lowercase = { type = "boolean", default = false },
    collapse_whitespace = { type = "boolean", default = false },
    drop_empty = { type = "boolean", default = true },
    on_error = { type = "string", default = "error", enum = { "error", "skip" } },
    max_bytes = { type = "number", default = 68719476736, min = 1 },
    delimiter = { type = "string" },
    text_unit = { type = "string", default = "line", enum = { "line", "file" } },
  },
  validate = function(p)
    if p.members ~= nil and type(p.members) ~= "string" and type(p.members) ~= "table" then
      return "parameter 'members' expects a glob or a list of globs"
    end
    for k, v in pairs(p.fields or {}) do
      if type(k) ~= "string" or type(v) ~= "string" then
        return "fields: expected { name = \"path\" } with strings, got " .. tostring(k) .. " = " .. tostring(v)
      end
    end
    for k, v in pairs(p.types or {}) do
      local ok = ({ string = 1, int = 1, float = 1, bool = 1, category = 1, json = 1 })[v]
      if not ok then return "types." .. tostring(k) .. ": expected string, int, float, bool, category or json (a JSON value kept as its text), got " .. tostring(v) end
      if p.fields and not p.fields[k] and k ~= "text" and k ~= "label" then return "types." .. k .. ": no such field in fields" end
    end
    if p.delimiter and #p.delimiter ~= 1 then return "parameter 'delimiter' must be one character" end
  end,
}
