"""Task recipes' building blocks: one module per task (config, model,
export module) and its steps (data, fit, evaluate, export)."""
