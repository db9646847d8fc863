"""Per-engine edit settings as typed records. Field defaults are the paper's (the engines' own Config
defaults, checked by tests/test_pipeline.py); a model set replaces the fields it tunes. torch-free."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class OptimizePreset:
    """Latent optimization (OptimizationConfig)."""

    steps: int = 300
    lr: float = 0.1
    l2_lambda: float = 0.008
    id_lambda: float = 0.005
    clip_views: int = 0  # 0: CLIP scores the image as it is (the paper)
    init: str = "source"  # 'source' (the paper) or 'universal' (start from the universal mapper's edit)
    init_min_change: float = 0.0
    strength: float = 1.0  # the CLIP term's weight


@dataclass(frozen=True)
class GlobalPreset:
    """Global directions (GlobalDirectionsConfig): alpha, beta and the delta_s refinements (None: the paper's).
    keep_identity: `edit --engine global` picks alpha per face under an identity budget unless --fixed-strength,
    then with budget_strength / budget_beta where set."""

    strength: float = 4.1  # alpha
    beta: float = 0.15
    ridge: Optional[float] = None
    identity_damping: Optional[float] = None
    keep_identity: bool = False
    budget_strength: Optional[float] = None
    budget_beta: Optional[float] = None

    def alpha_beta(self, keep_identity: bool = False) -> tuple[float, float]:
        """(alpha, beta) for a fixed strength, or under an identity budget."""
        if keep_identity:
            return (self.strength if self.budget_strength is None else self.budget_strength,
                    self.beta if self.budget_beta is None else self.budget_beta)
        return self.strength, self.beta


@dataclass(frozen=True)
class MapperPreset:
    """Per-prompt mapper: the residual scale."""

    strength: float = 1.0


@dataclass(frozen=True)
class UniversalPreset:
    """The universal (text-conditioned) mapper (UniversalMapperConfig). beta None: the whole W+ edit."""

    strength: float = 1.0
    beta: Optional[float] = None
    min_change: float = 0.0


@dataclass(frozen=True)
class AutoStrengthPreset:
    """Per-face strength (AutoStrengthConfig): gain_scale multiplies the engine's target gain;
    measured_threshold: use the identity net's measured verification threshold (toy-faces)."""

    gain_scale: Optional[float] = None
    measured_threshold: bool = False


@dataclass(frozen=True)
class ProjectorPreset:
    """Photo inversion by the projector (InversionConfig; None: its default)."""

    steps: Optional[int] = None
    lr: Optional[float] = None

    def overrides(self) -> dict:
        return {k: v for k, v in (("steps", self.steps), ("lr", self.lr)) if v is not None}


@dataclass(frozen=True)
class PTIPreset:
    """Pivotal tuning (PTIConfig; None: its default)."""

    steps: Optional[int] = None
    lr: Optional[float] = None
    warmup: Optional[int] = None
    cosine: Optional[bool] = None
    locality_every: Optional[int] = None

    def overrides(self) -> dict:
        return {k: getattr(self, k) for k in ("steps", "lr", "warmup", "cosine", "locality_every")
                if getattr(self, k) is not None}


@dataclass(frozen=True)
class Presets:
    """Every engine's settings of one model set."""

    optimize: OptimizePreset = OptimizePreset()
    global_: GlobalPreset = GlobalPreset()
    mapper: MapperPreset = MapperPreset()
    universal: UniversalPreset = UniversalPreset()
    auto_strength: AutoStrengthPreset = AutoStrengthPreset()
    projector: ProjectorPreset = ProjectorPreset()
    pti: PTIPreset = PTIPreset()

    def engine(self, name: str):
        """The preset of engine `name` ('optimize', 'global', 'mapper', 'universal')."""
        return {"optimize": self.optimize, "global": self.global_, "mapper": self.mapper,
                "universal": self.universal}[name]


PAPER = Presets()
