"""Tools the agent calls mid-call: declared HTTP JSON webhooks and spoken answer templates."""
