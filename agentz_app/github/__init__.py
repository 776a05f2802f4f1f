"""GitHub App auth and API client."""
