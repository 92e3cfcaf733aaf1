"""The JSON API under /api/v1: one router per resource, each thin; the SQL lives in historyserver.queries."""
