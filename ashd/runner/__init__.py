"""``runner`` mode: the runner's own HTTP server and its membership of the cluster (docs/scale-out.md)."""
