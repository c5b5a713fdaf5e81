"""Training, never importing mlflow (it reports through `callbacks`): `fine_tune` (the library's whole
fine-tuning: prepare -> fit -> finish), `steps` (the fine-tuning `Trainer`: jitted sharded steps) on `state`
(the device state both trainers share), `loop` (the epochs), `inference`, `optim`, `strategy`, `resume`
(Orbax checkpoints of fit()'s state), `progress`, and masked-LM `pretraining` with its `pretrain_setup`."""
