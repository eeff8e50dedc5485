"""Shared infrastructure for the stage scripts: settings, device, seeding,
checkpoints, the training loop and image/GIF writing. Written once, used by all."""
