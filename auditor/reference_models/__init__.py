"""Reference architectures (the seeds' ResNet50 head and lighter variants) and their registry."""

from auditor.reference_models.registry import ARCHITECTURES, build_model, list_architectures

__all__ = ["ARCHITECTURES", "build_model", "list_architectures"]
