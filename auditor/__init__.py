"""xray-audit: adversarial robustness audits of chest X-ray classifiers delivered as ONNX files."""

__version__ = "0.1.0"
