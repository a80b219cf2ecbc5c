"""Stage 0: train the model family (GAN objectives, VAE) on real data."""
