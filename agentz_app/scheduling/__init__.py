"""Event-driven scheduling: gates, dependencies, fingerprint, Scheduler Agent."""
