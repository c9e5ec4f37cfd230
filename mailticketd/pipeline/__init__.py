"""The pipeline: an ordered list of small steps that turn one stored mail into decisions."""
