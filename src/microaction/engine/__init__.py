"""Configs, training loop, checkpoints, evaluation, prediction."""
