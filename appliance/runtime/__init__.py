"""Loaded models: backend choice, loading with warm-up, and the table of what is served."""
