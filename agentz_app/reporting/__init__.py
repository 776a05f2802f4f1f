"""Pure rendering of check runs and status comments."""
