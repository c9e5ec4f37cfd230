"""The pipeline steps, one module each; their order lives in ``mailticketd.pipeline.order``."""
