-- examples/wordfreq/pipeline.lua — the smallest end-to-end hone pipeline.
--
-- Two text files -> concatenated -> cleaned line by line -> word counts,
-- plus a native wc over the cleaned text. Try:
--   hone run examples/wordfreq/pipeline.lua
--   hone run examples/wordfreq/pipeline.lua --set top.n=3     (re-runs only `top`)
--   hone status examples/wordfreq/pipeline.lua

local text  = concat { "data/notes.txt", "data/more.txt", sep = "\n", output = "all.txt" }

local clean = map { text, fn = function(line)
  line = line:lower():gsub("[^%a%s'-]", " "):gsub("%s+", " ")
  line = line:match("^%s*(.-)%s*$")
  if line ~= "" then return line end
end }

local sizes = wc { clean }

local top = stage "top" { clean, n = 10, min_len = 3,
  run = function(ctx, lines)
    local counts = {}
    for line in lines:lines() do
      for word in line:gmatch("%S+") do
        if #word >= ctx.params.min_len then counts[word] = (counts[word] or 0) + 1 end
      end
    end
    local words = {}
    for w in pairs(counts) do words[#words + 1] = w end
    table.sort(words, function(a, b)
      if counts[a] ~= counts[b] then return counts[a] > counts[b] end
      return a < b
    end)
    local out = ctx:open("top.tsv")
    for i = 1, math.min(ctx.params.n, #words) do
      out:write(words[i], "\t", counts[words[i]], "\n")
    end
    out:close()
    ctx:metric("distinct_words", #words)
  end }
