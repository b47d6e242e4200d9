"""Load generators: each runs as its own process (`python -m bench.load.<name>`), pinned to the
load core, reads its JSON config from stdin and prints JSON lines (`bench.procs.LoadGen`)."""
