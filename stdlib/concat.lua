-- concat { a, b, ..., output = "all.txt", sep = "\n" }
--
-- Native. Concatenates the files of its inputs, in input order (files of a
-- folder or stage output in byte order of their names), into one file.
return {
  kind = "concat",
  takes_each = "file|lines",
  gives = "lines",
  kernel = "concat",
  min_inputs = 1,
  summary = "concatenate the files of its inputs into one file",
  params = {
    output = { type = "string", default = "concat.txt", doc = "name of the output file" },
    sep = { type = "string", default = "", doc = "bytes written between two files" },
  },
}
