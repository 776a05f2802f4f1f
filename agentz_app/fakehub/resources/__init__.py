"""The fake GitHub's resources: each owns its records and GitHub's refusal rules for them."""
