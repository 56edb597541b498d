"""The pipeline's stages, one package each, in pipeline order: search, distill, prune, quantize, lower,
profile, report. Each ``stage.py`` holds its pass; a stage never imports another."""
