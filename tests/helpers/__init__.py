"""Test helpers: tiny real models, fakes (each says what it fakes), a local Hub stand-in."""
