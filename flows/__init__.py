"""Prefect flows: thin wrappers that add retries, caching and scheduling to scot_data stages."""
