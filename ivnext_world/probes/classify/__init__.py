"""Video classification with frozen backbones: V-JEPA 2's attentive-probe protocol (``ivnext-classify``).

One concept per file: ``backbone`` (which frozen encoder: the toolkit's :mod:`ivnext_world.backbones`
loader plus the probe's ``frame:`` baseline and frame-index embedding; ``load_backbone(spec)`` -> tokens),
``heads`` (attentive probe, single cross-attention pooler, linear), ``grid`` (heads x lrs x weight
decays trained together), ``data`` (labelled manifests / LeRobot folders, label checks, clips x crops
views), ``features`` (token cache or on-the-fly), ``train`` (objective, per-head optimizer groups on
the shared Trainer), ``evaluate`` (view averaging, top-k, per-class, confusion), ``run`` (the job),
``config`` (typed settings; presets in ``configs/classify_preset/``), ``compare`` (backbones x head
kinds table), ``demo`` (the main job's section on the temporal benchmark: ``classification_section``).
"""
from .backbone import Backbone, BackboneInputError, load_backbone
from .compare import compare_backbones
from .demo import classification_section
from .config import ClassifyConfig, ClassifyDataConfig, HeadGridConfig
from .data import ClipViews, LabelError, load_splits, read_classes
from .evaluate import average_views, grid_view_logits, metrics, plot_confusion
from .grid import HeadGrid, HeadSpec
from .heads import HEAD_KINDS, AttentiveClassifier, LinearClassifier, build_head
from .run import run_classify
from .train import ClassifyObjective, GridTrainer

__all__ = [
    "HEAD_KINDS", "AttentiveClassifier", "Backbone", "BackboneInputError", "ClassifyConfig", "ClassifyDataConfig", "ClassifyObjective",
    "ClipViews", "GridTrainer", "HeadGrid", "HeadGridConfig", "HeadSpec", "LabelError", "LinearClassifier",
    "average_views", "build_head", "classification_section", "compare_backbones", "grid_view_logits", "load_backbone", "load_splits", "metrics", "plot_confusion",
    "read_classes", "run_classify",
]
