"""Model sets as typed records: the weights they use (by store name), their tuned edit settings, example
prompts and what the front ends may offer. The one place that knows how model sets differ; torch-free."""
from styleclip.models.presets import (PAPER, AutoStrengthPreset, GlobalPreset, MapperPreset, OptimizePreset,
                                      Presets, PTIPreset, ProjectorPreset, UniversalPreset)
from styleclip.models.sets import (CHECKPOINT, DEBUG, DEFAULT_MODEL, ENGINES, FALLBACK_MODEL, FFHQ, MODEL_SETS,
                                   PAPER_ENGINE,
                                   TOY_FACES, Checkpoint, Examples, ModelSet, default_model_name, for_source, get)

__all__ = ["PAPER", "AutoStrengthPreset", "GlobalPreset", "MapperPreset", "OptimizePreset", "Presets", "PTIPreset",
           "ProjectorPreset", "UniversalPreset", "CHECKPOINT", "DEBUG", "DEFAULT_MODEL", "ENGINES", "FALLBACK_MODEL",
           "FFHQ", "MODEL_SETS", "PAPER_ENGINE", "TOY_FACES", "Checkpoint", "Examples", "ModelSet", "default_model_name",
           "for_source", "get"]
