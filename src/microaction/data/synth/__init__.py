"""The synthetic micro-action benchmark: a seated 3-D mannequin performing MA-52's 52 classes.

``generate_dataset(out, "demo", seed=0, render=True)`` (or ``mar synth``) writes a dataset whose
ground truth is exact: which class, which body regions move, when. Modules, by concept:
``skeleton3d`` (body model and kinematics), ``motions`` (one primitive per class), ``nuisances``
(idle motion, distractors, observation noise, timing), ``camera``, ``render`` (mannequin video and
region masks), ``writer`` (files), ``generate`` (presets and the per-clip recipe).
"""

from microaction.data.synth.generate import PRESETS, Preset, generate_clip, generate_dataset, plan, split_counts
from microaction.data.synth.motions import DESCRIPTIONS, MOTIONS
from microaction.data.synth.writer import read_clip

__all__ = [
    "DESCRIPTIONS",
    "MOTIONS",
    "PRESETS",
    "Preset",
    "generate_clip",
    "generate_dataset",
    "plan",
    "read_clip",
    "split_counts",
]
