-- examples/spam/bert.lua — the spam classifier of pipeline.lua as a
-- fine-tuned BERT: the same corpus, dedupe and split (the same cache
-- entries, the same test rows), then BertForSequenceClassification (the
-- pooler on [CLS], a classifier) on the base that pipelines/pretrain-bert.lua
-- pre-trained, every weight trained; and the same with LoRA.
--
--   make base-bert                     # pipelines/pretrain-bert.lua -> data/base-bert (or bring a BERT folder)
--   ./hone run examples/spam/bert.lua

local mail = ingest { "../../data/spam-assassin.tgz", format = "json",
                      members = "package/data/*/*.json",
                      fields = { text = "text", label = "group", id = "id" },
                      labels = { ["spam-1"] = "spam", ["spam-2"] = "spam", ["*"] = "ham" } }

local clean = dedupe { mail, key = "text", near = 0.85 }

local parts = split { clean, train = 0.70, val = 0.15, test = 0.15, seed = 42, stratify = "label" }

-- the base and the WordPiece vocabulary it was pre-trained with
local tok = tokenizer { from = "../../data/base-bert/tokenizer.json" }
local base = model { from = "../../data/base-bert" }

-- [CLS] + each email's first 126 tokens + [SEP]
local ids = tokenize { parts, tok, field = "text", max_len = 128 }

local clf = train { ids.train, val = ids.val, base = base, output = { label = "category" },
                    lr = 1e-4, batch = 16, epochs = 1, warmup = 20, schedule = "cosine", weight_decay = 0.01,
                    metric = "f1", seed = 1 }

local lora = train { ids.train, val = ids.val, base = base, output = { label = "category" },
                     method = "lora", rank = 16, alpha = 32, targets = { "query", "value", "dense" },
                     lr = 1e-3, batch = 16, epochs = 1, warmup = 20, metric = "f1", seed = 1, name = "lora" }

local score = evaluate { clf, ids.test }
evaluate { lora, ids.test, name = "evaluate_lora" }

export { clf, tok, score, to = "../../dist/spam-bert.tar.gz" }
