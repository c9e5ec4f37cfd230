"""The durable inbox and the worker that runs the pipeline over it."""
