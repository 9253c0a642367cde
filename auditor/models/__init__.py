"""Models: the input/output contract (ModelSpec), ONNX Runtime adapters, torch surrogates, devices."""
