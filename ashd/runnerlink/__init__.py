"""The runner link: one authenticated WebSocket per (coordinator, runner) that carries the
bridge's own NDJSON frames, multiplexed by channel (docs/architecture.md "Runner link")."""
