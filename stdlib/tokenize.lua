-- tokenize { parts, tok, field = "text", max_len = 256, truncation = "right", add_eos = true }
-- tokenize { parts, tok, max_len = 256, pack = true }                  -- LM blocks
-- tokenize { parts, tok, format = "instruction" }                      -- loss mask
-- tokenize { parts, tok, format = "prompt_completion", template = "Q: {prompt}\nA: " }
-- tokenize { parts, tok, format = "chat", template = "chatml" }       -- messages, loss on the assistant
-- tokenize { parts, bert_tok, fields = { "question", "passage" }, max_len = 128 }  -- WordPiece pairs
-- tokenize { parts, bert_tok, field = "words", tags = "ner", max_len = 128 }       -- tagging
--
-- Native. Encodes a text field of a dataset, or of every part of split's
-- output, into token ids (tokens.u32 + data.rec with tok_off/tok_len and the
-- other fields; mask.u8 for prompt/completion records). See
-- docs/stages/tokenize.md.
return {
  kind = "tokenize",
  takes = { "dataset|parts:dataset", "tokenizer|file" },
  gives = "ids",
  kernel = "tokenize",
  min_inputs = 2,
  max_inputs = 2,
  outputs_like_input = true,
  summary = "encode a dataset's text into token ids",
  params = {
    field = { type = "string", default = "text" },
    fields = { type = "list", doc = "WordPiece: one text field, or two for pairs ([CLS] A [SEP] B [SEP], token types in types.u8)" },
    max_len = { type = "integer", default = 0, min = 0, doc = "cut rows to this many tokens (0: no limit); with pack, the block length" },
    truncation = { type = "string", default = "right", enum = { "right", "left" } },
    add_eos = { type = "boolean", default = true, doc = "end every row with <|endoftext|> (WordPiece: add [CLS] ... [SEP])" },
    pack = { type = "boolean", default = false, doc = "concatenate rows (each ending in EOS) and cut blocks of max_len" },
    format = { type = "string", default = "text", enum = { "text", "prompt_completion", "instruction", "chat" },
               doc = "text: one field; prompt_completion / instruction: a prompt and a completion, with a loss mask; chat: OpenAI-style messages (a json field), the loss on the assistant's turns" },
    template = { type = "string", doc = "the prompt, with {field} placeholders (defaults: \"{prompt}\"; Alpaca's for instruction); chat: the chat template, chatml, llama3, mistral or zephyr (default: by the tokenizer's special tokens)" },
    completion = { type = "string", doc = "the completion field (default: completion; output for instruction)" },
    tags = { type = "string", doc = "WordPiece tagging: a field of tags, one per whitespace-separated word of the text (labels.i32: the tag on each word's first piece)" },
    spans = { type = "string", doc = "WordPiece tagging from entity spans: a field of [[start, end, \"TYPE\"], ...] in characters of the text (ingest it with types = { field = \"json\" }); words become B-/I-TYPE or O" },
  },
  validate = function(p)
    if p.pack and p.max_len == 0 then return "pack = true needs max_len, the block length" end
    if p.fields ~= nil then
      if #p.fields < 1 or #p.fields > 2 then return "fields: one text field, or two for a pair" end
      for i, f in ipairs(p.fields) do
        if type(f) ~= "string" then return string.format("fields[%d]: expected a field name", i) end
      end
      if p.format ~= "text" then return "fields goes with format = \"text\"" end
    end
    if p.format == "text" and (p.template or p.completion) then
      return "template and completion go with format = \"prompt_completion\" or \"instruction\""
    end
  end,
}
