"""The jobs: one module per entry point (train, evaluate, register, sweep, pretrain, export, runs), each wiring the
library (`config`, `data`, `model`, `train`, `evaluation`, `serving`, `export`, `sweep`) to `tracking`. Only
`bertcls.cli` imports them."""
