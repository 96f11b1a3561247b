"""The faust-streaming app: per-user buffering, folding through the model, publishing profiles."""
