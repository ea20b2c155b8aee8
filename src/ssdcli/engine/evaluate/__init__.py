"""Evaluation: results files and models scored with the COCO and VOC evaluators, validation, pictures."""
