#!/usr/bin/env python3
"""hone's BERT files, read by transformers and peft (where installed).

  tests/hf/prepare_bert.sh DIR && python3 tests/hf/check_bert_hf.py DIR

- DIR/mlm (hone's masked-LM pre-training) loads in BertForMaskedLM and
  DIR/cls (hone's fine-tuned classifier) in BertForSequenceClassification,
  each giving hone's logits (`hone forward`, DIR/*/hone.json) on the test rows;
- DIR/tagger (hone's BertForTokenClassification on its own WordPiece
  tokenizer) loads in transformers with hone's logits, and its
  tokenizer.json in PreTrainedTokenizerFast gives hone's ids;
- DIR/lora/adapter (hone's LoRA, PEFT's layout) loads with peft's
  PeftModel.from_pretrained on DIR/lora/base and gives hone's logits of the
  merged model (DIR/lora/hone.json).
Prints one line per check and exits non-zero on any mismatch.
"""
import json
import os
import sys

import torch
import transformers

d = sys.argv[1]
failed = 0


def check(name, ok, detail):
    global failed
    failed += not ok
    print(("ok    " if ok else "FAIL  ") + name + ": " + detail)


def batch(path):
    rows = [json.loads(l) for l in open(path)]
    T = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[i, :len(r["input_ids"])] = 1
    return ids, mask


def compare(name, model, sub):
    ids, mask = batch(os.path.join(d, sub, "rows.jsonl"))
    want = torch.tensor(json.load(open(os.path.join(d, sub, "hone.json")))["logits"]["data"], dtype=torch.float64)
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask).logits.reshape(-1).double()
    # padded positions of a masked LM are hone's too (both compute them), so all are compared
    diff = (got - want).abs()
    bound = 1e-4 * want.abs() + 1e-4
    check(name, got.numel() == want.numel() and bool((diff <= bound).all()),
          "%d logits, max |diff| %.3g (bound 1e-4 relative + 1e-4)" % (want.numel(), float(diff.max())))


compare("BertForMaskedLM.from_pretrained(hone's pre-trained MLM)",
        transformers.BertForMaskedLM.from_pretrained(os.path.join(d, "mlm")).eval(), "mlm")
compare("BertForSequenceClassification.from_pretrained(hone's classifier)",
        transformers.BertForSequenceClassification.from_pretrained(os.path.join(d, "cls")).eval(), "cls")
compare("BertForTokenClassification.from_pretrained(hone's tagger)",
        transformers.BertForTokenClassification.from_pretrained(os.path.join(d, "tagger")).eval(), "tagger")
# hone's WordPiece tokenizer.json in transformers: the ids hone's tokenize gave the same texts
tk = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tagger", "tokenizer.json"))
texts = [json.loads(l)["text"] for l in open(os.path.join(d, "tagger", "texts.jsonl"))]
want = [json.loads(l)["input_ids"] for l in open(os.path.join(d, "tagger", "rows.jsonl"))]
got = [tk(t, truncation=True, max_length=16)["input_ids"] for t in texts]
check("PreTrainedTokenizerFast(hone's WordPiece tokenizer.json)", got == want,
      "%d texts, %d ids, the same as hone's tokenize" % (len(texts), sum(len(x) for x in want)))

try:
    import peft
    base = transformers.BertForSequenceClassification.from_pretrained(os.path.join(d, "lora", "base"))
    pm = peft.PeftModel.from_pretrained(base, os.path.join(d, "lora", "adapter")).eval()
    compare("peft.PeftModel.from_pretrained(hone's BERT LoRA adapter)", pm, "lora")
except ImportError:
    print("skip  peft is not installed")
sys.exit(1 if failed else 0)
