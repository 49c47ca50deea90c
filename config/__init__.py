"""Settings read from the environment: the bottom layer, which imports nothing of this project."""
