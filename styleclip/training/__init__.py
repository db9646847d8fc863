"""Trainers of the latent mappers (per prompt and universal) and their optimizer."""
