"""Pure functions that build figures and tables for the pages (testable without a browser)."""
