"""Models on the shared input contract.

``forward(batch) -> dict``. ``batch`` holds ``regions`` float [B, R, T, D_r], ``global`` float
[B, T, D_g], ``mask`` bool [B, T] (valid time steps) and ``region_valid`` bool [B, R]. Outputs:
``action`` logits [B, C]; ``body`` logits [B, C_body] when ``num_body`` > 0; ``features`` [B, d]
(pooled, for auxiliary losses); ``routing`` [B, R] for mixture models; ``saliency`` [B, T] where
defined; ``aux_losses`` (dict of unweighted scalar losses) for models with built-in auxiliary
objectives. Padded steps and invisible regions never change the outputs of the valid ones.
"""

from microaction.models import (  # noqa: F401  (importing a family registers its models)
    baselines,
    bmoe,
    bmoe_tridet,
    m3e,
    micro_dualnet,
    sliding_window,
    tridet,
)
from microaction.models.registry import create_model, list_models, model_entry, register_model

__all__ = ["create_model", "list_models", "model_entry", "register_model"]
