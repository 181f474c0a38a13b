"""Ray Train edge: the pretraining TorchTrainer."""
