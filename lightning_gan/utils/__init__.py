"""Small helpers shared by callbacks, metrics and the CLI (image conversion, grids, plots)."""
