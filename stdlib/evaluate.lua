-- evaluate { model, ids.test, compare = other_model }
--
-- Native. Scores a trained model on a split: accuracy, precision / recall /
-- F1 (per class, macro, micro, weighted), ROC-AUC, PR-AUC, log loss and the
-- confusion matrix (or MAE, RMSE, R² for a number), with a majority-class /
-- train-mean baseline and, with compare, another model on the same rows.
-- See docs/stages/evaluate.md.
return {
  kind = "evaluate",
  takes = { "model|file|bundle", "ids" },
  gives = "metrics",
  kernel = "evaluate",
  min_inputs = 2,
  max_inputs = 2,
  summary = "score a model on a split (metrics, baseline, predictions)",
  params = {
    compare = { type = "input", takes = "model|file|bundle", doc = "another model to score on the same rows" },
    quant = { type = "string", enum = { "f32", "f16", "q8_0", "q4_0", "q6_k", "q4_k_m", "q5_k_m" }, doc = "GPT-2 language models: score the weights as a GGUF of this type holds them (hone quantize), beside the unquantized ones (unquantized_perplexity)" },
  },
}
