"""Reference forward passes and variable shapes, written in numpy from the reference source code.

These modules are test oracles: each function re-states what one reference function computes
(google/youtube-8m, antoine77340/Youtube-8M-WILLOW, linrongc/youtube-8m,
linrongc/solution_youtube8m_v3, boliu61/youtube-8m; the docstrings name the file and function)
so that a test can feed a Keras model's own weights, renamed to the reference's variable names,
and compare predictions. They import nothing from the project.

Conventions shared by every module:
- Weights are a dict keyed by the reference's TF1 variable names, relative to the model's scope
  (the starter and linrongc build under `tower/`, MOD under `tower_<i>/`; Willow's names carry no
  prefix). Batch-norm scopes hold `beta`, `gamma`, `moving_mean`, `moving_variance`.
- Batch norm runs in inference mode (moving statistics) unless `bn_training=True`, which uses the
  batch moments as slim.batch_norm(is_training=True) does. Dropout is off.
- Computation is float64; the reference's constants (epsilons, offsets) are kept exactly.
- Random frame sampling is replaced by an explicit `frame_index` [B, n] (helpers in common.py turn
  uniform draws into the indices the reference would take).
"""
