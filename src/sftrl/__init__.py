"""sftrl: SFT -> RL study pipeline."""
