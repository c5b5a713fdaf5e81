"""The model: `config` (ModelConfig and its Hugging Face field table), `bert` (the Flax NNX encoder and heads),
`weights` (strict checkpoint loading by key table, our saved format), `mlm` (masked-LM head), `tokenizer`."""
