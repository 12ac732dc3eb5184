"""Thin experiment scripts over tfvae; each reproduces a classic VAE walkthrough (see README.md)."""
