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
  },
}
