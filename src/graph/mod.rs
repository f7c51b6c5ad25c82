//! Pure dependency graph engine.
