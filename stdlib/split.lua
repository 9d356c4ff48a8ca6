-- split { dataset, train = 0.70, val = 0.15, test = 0.15, seed = 42, stratify = "label" }
--
-- Native. Assigns every row to one named part; any names, any number of
-- parts (ratios add up to 1). Outputs are the parts: parts.train, ...
-- See docs/stages/split.md for the exact, stable assignment rule.
return {
  kind = "split",
  takes_each = "dataset",
  gives_parts = "dataset",
  kernel = "split",
  min_inputs = 1,
  max_inputs = 1,
  summary = "split a dataset into named parts",
  extra_params = "parts",
  extra_default = { train = 0.70, val = 0.15, test = 0.15 },
  extra_sum = 1, -- --set split.train=0.8 scales the other parts to fill the rest
  params = {
    seed = { type = "integer", default = 42 },
    stratify = { type = "string", doc = "field whose class proportions every part keeps" },
    group = { type = "string", doc = "field whose rows always share a part" },
    leak_near = { type = "number", default = 0.85, min = 0, max = 1,
                  doc = "report near duplicates across parts at this Jaccard similarity (0: off)" },
  },
  validate = function(p)
    local sum = 0
    for name, r in pairs(p.parts) do
      if r <= 0 or r > 1 then return string.format("part %s: ratio must be in (0, 1], got %s", name, tostring(r)) end
      sum = sum + r
    end
    if math.abs(sum - 1) > 1e-6 then return string.format("part ratios must add up to 1, they add up to %.6g", sum) end
  end,
}
