"""Projections: the shared fold and the projectors built on it."""

from .fold import Fold, apply, default_document, dumps, fold_all, should_apply
from .times import offer_score

__all__ = ["Fold", "apply", "default_document", "dumps", "fold_all", "offer_score", "should_apply"]
