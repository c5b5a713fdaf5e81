"""Export: a trained model as a Hugging Face directory, with its model card."""
