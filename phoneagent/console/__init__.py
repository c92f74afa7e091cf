"""The review console: calls, one call with its recording and latency waterfall, the calls in
progress, an overview. Served by the service's HTTP server (aiohttp), behind a token."""
