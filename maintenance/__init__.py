"""Keeping the archive bounded: retention (the planner decides, the cleaner applies, in two phases),
compaction (small parts rewritten into few large ones), the bucket's lifecycle backstop, and usage (du).

Each is its own class and runs alone, from the CLI, a Kubernetes CronJob or the server's maintenance
loop; all of them are idempotent, so a run killed at any moment and started again converges.
"""
