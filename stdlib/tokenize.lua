-- tokenize { parts, tok, field = "text", max_len = 256, truncation = "right", add_eos = true }
--
-- Native. Encodes a text field of a dataset, or of every part of split's
-- output, into token ids (tokens.u32 + data.rec with tok_off/tok_len and the
-- other fields). See docs/stages/tokenize.md.
return {
  kind = "tokenize",
  kernel = "tokenize",
  min_inputs = 2,
  max_inputs = 2,
  outputs_like_input = true,
  summary = "encode a dataset's text into token ids",
  params = {
    field = { type = "string", default = "text" },
    max_len = { type = "integer", default = 0, min = 0, doc = "cut rows to this many tokens (0: no limit)" },
    truncation = { type = "string", default = "right", enum = { "right", "left" } },
    add_eos = { type = "boolean", default = true, doc = "end every row with <|endoftext|>" },
  },
}
