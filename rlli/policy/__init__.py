"""Allocation policies: G-DDPG, DDPG, heuristic baselines and the oracle, plus training and evaluation.

Kept light on purpose (no torch import here): ``from rlli.policy.api import load_policy`` loads what a
round needs; ``rlli.policy.sharing`` holds the per-member fork decision (the sharing issue).
"""
