"""The views, one module per resource: each view is served as JSON under /api/v1 and, with a template, as
the page at the same path without the prefix (views.common.Views). The SQL lives in historyserver.queries."""
