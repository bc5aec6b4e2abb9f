"""Model files: safetensors weights + JSON metadata (weights), model directories (bundle)."""
