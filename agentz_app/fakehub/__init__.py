"""In-package fake GitHub for tests and the demo."""
