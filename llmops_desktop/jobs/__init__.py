"""Long work as child processes that speak JSON lines."""
