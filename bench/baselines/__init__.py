"""Bare baselines: the least code that does the same job, run on the same core as our server,
fed the same payloads by the same load generators, in the same run."""
