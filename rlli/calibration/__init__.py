"""Offline measurements the app's decisions are fitted from: the fork rule (:mod:`rlli.calibration.fork_rule`,
measured on generation runs by :mod:`rlli.calibration.pairs`) and the grouping threshold
(:mod:`rlli.calibration.grouping`). Above ``diffusion`` and ``policy``; nothing at run time imports it."""
