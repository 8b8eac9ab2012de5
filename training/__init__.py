"""Streaming data loader, 4D Gaussian model, renderers (gsplat on GPU, pure torch on CPU), trainer, evaluation."""
