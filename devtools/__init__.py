"""Development tooling, never imported by the product: the project's own Asterisk 22 test bed,
SIPp test calls, the caller emulator, espeak-ng caller speech, and the demo.

    python -m devtools asterisk ensure|start|stop|status|health|rx "core show channels"
    python -m devtools demo [--agent echo] [--json]
"""
