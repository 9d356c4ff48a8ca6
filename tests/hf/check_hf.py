#!/usr/bin/env python3
"""hone's exports, read by the reference libraries (where they are installed).

  tests/hf/prepare.sh DIR && python3 tests/hf/check_hf.py DIR

- DIR/bundle (an unpacked hone export bundle) loads in transformers'
  GPT2LMHeadModel and gives hone's logits (hone_bundle_*.json);
- its tokenizer.json, in transformers' PreTrainedTokenizerFast, gives hone's
  token ids for the same texts;
- DIR/cls (hone's GPT-2 classifier) loads in GPT2ForSequenceClassification
  and gives hone's class probabilities for every test row (its token ids
  from tokens.u32 and rows.jsonl; hone's from hone_probs.jsonl);
- DIR/adapter (hone's LoRA, PEFT layout) loads with peft's
  PeftModel.from_pretrained on DIR/base and gives hone's logits with the
  adapter merged (hone_lora_*.json).
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


def compare(name, model, ref):
    ids = torch.tensor([ref["ids"]])
    with torch.no_grad():
        got = model(input_ids=ids).logits[0].reshape(-1).double()
    want = torch.tensor(ref["logits"], dtype=torch.float64)
    diff = (got - want).abs()
    bound = 1e-4 * want.abs() + 1e-4
    check(name, bool((diff <= bound).all()) and got.numel() == want.numel(),
          "%d logits, max |diff| %.3g (bound 1e-4 relative + 1e-4)" % (want.numel(), float(diff.max())))


model = transformers.GPT2LMHeadModel.from_pretrained(os.path.join(d, "bundle")).eval()
tok = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "bundle", "tokenizer.json"))
i = 0
while os.path.exists(os.path.join(d, "hone_bundle_%d.json" % i)):
    ref = json.load(open(os.path.join(d, "hone_bundle_%d.json" % i)))
    text = json.load(open(os.path.join(d, "text_%d.json" % i)))["text"]
    ids = tok(text)["input_ids"]
    check("tokenizer.json ids, text %d" % i, ids == ref["ids"], "%s vs hone %s" % (ids, ref["ids"]))
    compare("bundle logits, text %d" % i, model, ref)
    i += 1
check("texts found", i > 0, "%d" % i)

def compare_probs(name, clf, cdir, probs_file):
    import struct
    raw = open(os.path.join(cdir, "tokens.u32"), "rb").read()
    toks = struct.unpack("<%dI" % (len(raw) // 4), raw)
    rows = [json.loads(l) for l in open(os.path.join(cdir, "rows.jsonl"))]
    probs = [json.loads(l) for l in open(probs_file)]
    names = [clf.config.id2label[k] for k in range(clf.config.num_labels)]
    worst = 0.0
    for r, p in zip(rows, probs):
        ids = torch.tensor([toks[r["tok_off"]:r["tok_off"] + r["tok_len"]]])
        with torch.no_grad():
            got = torch.softmax(clf(input_ids=ids).logits[0].double(), -1)
        for k, n in enumerate(names):
            worst = max(worst, abs(float(got[k]) - p["prob_" + n]))
    check(name, len(rows) == len(probs) and len(rows) > 0 and worst < 1e-5,
          "%d rows, classes %s, max |diff| %.3g (bound 1e-5)" % (len(rows), names, worst))


cdir = os.path.join(d, "cls")
if os.path.isdir(cdir):
    clf = transformers.GPT2ForSequenceClassification.from_pretrained(cdir).eval()
    compare_probs("classifier probabilities", clf, cdir, os.path.join(cdir, "hone_probs.jsonl"))

try:
    import peft
except ImportError:
    peft = None
    print("skip  peft is not installed")
if peft:
    base = transformers.GPT2LMHeadModel.from_pretrained(os.path.join(d, "base")).eval()
    pm = peft.PeftModel.from_pretrained(base, os.path.join(d, "adapter")).eval()
    i = 0
    while os.path.exists(os.path.join(d, "hone_lora_%d.json" % i)):
        compare("peft adapter logits, text %d" % i, pm, json.load(open(os.path.join(d, "hone_lora_%d.json" % i))))
        i += 1
    # a classifier's adapter with its head (modules_to_save), on the language model it started from
    ldir = os.path.join(d, "cls_lora")
    if os.path.isdir(ldir):
        names = json.load(open(os.path.join(cdir, "config.json")))["id2label"]
        base = transformers.GPT2ForSequenceClassification.from_pretrained(
            os.path.join(ldir, "base"), num_labels=len(names), id2label={int(k): v for k, v in names.items()}).eval()
        pc = peft.PeftModel.from_pretrained(base, os.path.join(ldir, "adapter")).eval()
        compare_probs("peft classifier adapter (modules_to_save) probabilities", pc, cdir,
                      os.path.join(ldir, "hone_probs.jsonl"))
print("transformers %s, peft %s, torch %s: %d failed" %
      (transformers.__version__, peft.__version__ if peft else "-", torch.__version__, failed))
sys.exit(1 if failed else 0)
