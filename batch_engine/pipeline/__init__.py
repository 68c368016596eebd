"""The pipeline, in the order an item goes: plan (pure) -> engine (carries the plan out) ->
submit -> poll -> download, sharing one context; outcomes holds each stage's pure decisions."""
