"""The inference stage: predicting images with a logged model, and where it looked (Grad-CAM)."""
