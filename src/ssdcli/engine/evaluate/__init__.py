"""Evaluation with the COCO and VOC evaluators, one entry per way in and one result type (``EvalOutcome``):
``run.run_eval`` for ``ssd eval`` (results files, or a model run over a split) and
``validation.evaluate_detections`` for detections of a data set held in memory (training's validation)."""
