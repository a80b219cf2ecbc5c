"""Stage 3: latency against quality loss, reports."""
