-- examples/spam/transformer.lua — the spam classifier of pipeline.lua, as a
-- fine-tuned GPT-2 instead of an embedding bag: the same corpus, dedupe and
-- split (the same cache entries, the same test rows), then a classification
-- head on the base model's last token, trained with every weight.
--
--   make base                                   # pipelines/pretrain.lua -> data/base (or bring your own GPT-2)
--   ./hone run examples/spam/transformer.lua

local mail = ingest { "../../data/spam-assassin.tgz", format = "json",
                      members = "package/data/*/*.json",
                      fields = { text = "text", label = "group", id = "id" },
                      labels = { ["spam-1"] = "spam", ["spam-2"] = "spam", ["*"] = "ham" } }

local clean = dedupe { mail, key = "text", near = 0.85 }

local parts = split { clean, train = 0.70, val = 0.15, test = 0.15, seed = 42, stratify = "label" }

-- the base model and the BPE it was trained with
local tok = tokenizer { from = "../../data/base/tokenizer.json" }
local base = model { from = "../../data/base" }

-- each email's first 128 tokens (mostly its headers)
local ids = tokenize { parts, tok, field = "text", max_len = 128 }

local clf = train { ids.train, val = ids.val, base = base, output = { label = "category" },
                    lr = 1e-4, batch = 16, epochs = 1, warmup = 20, schedule = "cosine", weight_decay = 0.01,
                    metric = "f1", seed = 1 }

local score = evaluate { clf, ids.test }

export { clf, tok, score, to = "../../dist/spam-transformer.tar.gz" }
