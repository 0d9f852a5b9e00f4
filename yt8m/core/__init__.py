"""The lowest layer: what every tool shares, importing nothing else of the project.

- `options`: typed dataclass configs whose fields declare their absl flags (define_flags,
  from_flags); `option_groups`: the option groups several tools share and the feature-list parser;
  `config`: the records of training, evaluation and inference.
- `files`: atomic writes (files and directories), the one way results are written; link-safe
  removal; the checks that an output replaces no input and only what the tool wrote before.
- `errors`: `UserError` (bad input, told apart from bugs) and the TensorFlow errors of the readers'
  checks.
- `cli`: `run(main, program)`, bad input as one `<program>: error: ...` line, bugs with their
  traceback.
- `model_flags`: `train_dir/model_flags.json`, what model a train dir holds.
"""
