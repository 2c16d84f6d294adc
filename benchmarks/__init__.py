"""Shared harness: tasks, tiny denoiser, diffusion sampler, RL loop, runner and reports."""
