"""Worker-side code: data, models, one trial. Importable and runnable without Ray."""
