"""Runtime pipelines: what the Engine runs for a bundle, chosen by the bundle's meta.json (no torch)."""
