"""Pacing: how fast the engine may call the provider, decided by pure policies told the time.

create_gate (the create cap, learnt from 429s), poll_pace (the polite poll rate), poll_schedule
(when to look at each task), limiter (one adaptive aiolimiter bucket), policy (retries and pauses
as data), waits (cancellation-safe waiting).
"""
