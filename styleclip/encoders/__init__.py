"""What turns images and text into embeddings: CLIP, identity nets, reference targets, shifted views."""
