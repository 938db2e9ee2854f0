"""The caption stage: read an image-caption collection into the captions table."""
