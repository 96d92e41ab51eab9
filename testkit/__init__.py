"""What Mosaic's tests and benchmarks share, kept out of the installed package: generated scenes with ground truth
(`scenes`), stand-in small VLMs (`fake_vlm`, `stand_ins`, `dialects`), scoring against the ground truth (`score`),
bad inbox files (`inbox_files`) and the isolated environment a test session starts from (`isolation`).

It is imported from the checkout (the tests put its root on sys.path; subprocesses get PYTHONPATH)."""
